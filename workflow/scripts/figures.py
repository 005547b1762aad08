#!/usr/bin/env python
"""Figures of the paper from the aggregated tables (called by aggregate.py; importable).

  recovered.png        Figure 1: Recovered % of every full finetune against training-set size,
                       one line per model size, one panel per benchmark
  val_loss_gain.png    Figure 2: validation-loss decrease (selection.json) against performance
                       gain (trained − base, percentage points) of every full finetune; × marks
                       each size's centroid
  bars.png             Figure 3: base, skyline, full finetune on the largest subset and LoRA per
                       size, mean ± s.e. across seeds
  absolute.png         Figure 4: every absolute value (mean ± s.e.), one panel per size and benchmark
  paper_comparison.png ours against the paper's Table 1 (mean ± s.e. both ways), y = x dashed

Every figure is written as PNG (150 dpi) and PDF next to it. Error bars are Table 1's standard
errors: per task across seeds, combined over a benchmark's tasks by the paper's rule
(aggregate.pool).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from atomic import atomic_path  # noqa: E402

KIND_LABELS = {"base": "Base (Qwen2.5-Instruct)", "skyline": "Skyline (R1-Distill)",
               "full": "Full finetune, largest subset", "lora": "LoRA (rank 1)"}


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def palette(sizes: list[str]) -> dict[str, tuple]:
    """One colour per model size, the same in every figure."""
    return dict(zip(sizes, sns.color_palette("colorblind", max(len(sizes), 1))))


def save(fig, path: Path) -> list[Path]:
    """PNG and PDF of one figure, each written atomically."""
    out = []
    for suffix in (".png", ".pdf"):
        target = Path(path).with_suffix(suffix)
        with atomic_path(target, suffix=suffix) as tmp:
            fig.savefig(tmp, dpi=150, format=suffix[1:], bbox_inches="tight")
        out.append(target)
    plt.close(fig)
    return out


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _present(sizes: list[str], df: pd.DataFrame) -> list[str]:
    have = set(df["size"]) if not df.empty else set()
    return [s for s in sizes if s in have]


def recovered(rec: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 1. Like the paper, a size is left out of a panel (and named in its title) where its
    skyline does not measurably beat its base: Recovered % undefined (skyline == base), or the gap
    within one combined standard error (|gap_z| <= 1; NaN gap_z, i.e. one seed, counts as measurable)."""
    _theme()
    pal = palette(sizes)
    full = rec[rec["configuration"] == "full"]
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4.4), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        b = full[full["benchmark"] == bench]
        omit = b["undefined"] | (b["gap_z"].abs() <= 1) if "gap_z" in b else b["undefined"]
        sub = b[~omit]
        if sub.empty:
            _empty(ax, "no size whose skyline beats its base")
        else:
            sub = sub.assign(train_examples=sub["train_examples"].astype(int))
            sns.lineplot(data=sub, x="train_examples", y="recovered_pct", hue="size",
                         hue_order=_present(sizes, sub), palette=pal, marker="o", ax=ax)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(sub["train_examples"].unique()))
            ax.get_xaxis().set_major_formatter(ScalarFormatter())
            ax.minorticks_off()
            ax.axhline(0, color="grey", lw=0.8)
            ax.legend(title="Model size", fontsize=9, title_fontsize=9)
        dropped = [s for s in sizes if s in set(b.loc[omit, "size"])]
        title = bench + (f"\n(omitted, skyline ≈ base: {', '.join(dropped)})" if dropped else "")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("Training examples (log scale)")
        ax.set_ylabel("Recovered %")
    fig.tight_layout()
    return save(fig, path)


def val_loss_gain(gain: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 2. `gain`: size, train_examples, benchmark, val_loss_decrease, gain (pp)."""
    _theme()
    pal = palette(sizes)
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4.4), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        sub = gain[(gain["benchmark"] == bench)].dropna(subset=["val_loss_decrease", "gain"]) \
            if not gain.empty else gain
        ax.set_title(bench, fontsize=11)
        ax.set_xlabel("Validation loss decrease (nats)")
        ax.set_ylabel("Performance gain over base (points)")
        if sub.empty:
            _empty(ax, "no full finetune with both a selection and an evaluation")
            continue
        order = _present(sizes, sub)
        sns.scatterplot(data=sub, x="val_loss_decrease", y="gain", hue="size", hue_order=order,
                        palette=pal, s=45, alpha=0.8, ax=ax, legend=False)
        cent = sub.groupby("size")[["val_loss_decrease", "gain"]].mean()
        for size in order:
            ax.scatter(cent.loc[size, "val_loss_decrease"], cent.loc[size, "gain"], marker="X", s=160,
                       color=pal[size], edgecolor="black", linewidth=0.8, zorder=5)
        ax.axhline(0, color="grey", lw=0.8)
        ax.margins(x=0.1)
        handles = [Line2D([], [], marker="o", ls="", color=pal[s], label=s) for s in order]
        handles.append(Line2D([], [], marker="X", ls="", color="grey", markeredgecolor="black",
                              markersize=10, label="centroid per size"))
        ax.legend(handles=handles, title="Model size", fontsize=9, title_fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def _bar_group(ax, data: pd.DataFrame, groups: list[str], key: str, kinds: list[str], colours: dict) -> None:
    """Grouped bars of data['mean'] ± data['stderr']: x groups by `key`, one bar per kind."""
    width = 0.8 / max(1, len(kinds))
    for k, kind in enumerate(kinds):
        sub = data[data["kind"] == kind].set_index(key)
        xs = [i + (k - (len(kinds) - 1) / 2) * width for i, g in enumerate(groups) if g in sub.index]
        rows = [sub.loc[g] for g in groups if g in sub.index]
        ax.bar(xs, [r["mean"] for r in rows], width, color=colours[kind], label=kind,
               yerr=[0 if pd.isna(r["stderr"]) else r["stderr"] for r in rows], capsize=3,
               error_kw={"linewidth": 1})
    ax.set_xticks(range(len(groups)))


def bars(summary: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 3. `summary`: mean ± s.e. per (size, configuration, train_examples, benchmark), s.e. by
    the paper's rule (aggregate.pool). Full finetune = the largest subset evaluated for that size."""
    _theme()
    rows = []
    for size, g in summary.groupby("size"):
        full = g[g["configuration"] == "full"]
        largest = full["train_examples"].max() if not full.empty else None
        keep = g[g["configuration"].isin(["base", "skyline", "lora"])]
        if largest is not None:
            keep = pd.concat([keep, full[full["train_examples"] == largest]])
        rows.append(keep.assign(largest=largest))
    data = pd.concat(rows, ignore_index=True) if rows else summary.assign(largest=None)
    data = data.assign(kind=data["configuration"].map(KIND_LABELS))
    order = _present(sizes, data)
    kinds = [KIND_LABELS[k] for k in ("base", "skyline", "full", "lora") if KIND_LABELS[k] in set(data["kind"])]
    colours = dict(zip([KIND_LABELS[k] for k in ("base", "skyline", "full", "lora")], sns.color_palette("Set2", 4)))
    ticks = []
    for s in order:
        n = data.loc[data["size"] == s, "largest"].iloc[0]
        ticks.append(f"{s}\n(full: {int(n)} ex.)" if pd.notna(n) else s)
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(max(5.5, 1.6 * len(order) + 2) * len(benchmarks) / 1.2, 4.4),
                             squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        sub = data[data["benchmark"] == bench]
        ax.set_title(bench, fontsize=11)
        if sub.empty:
            _empty(ax, "no results")
            continue
        _bar_group(ax, sub, order, "size", [k for k in kinds if k in set(sub["kind"])], colours)
        ax.set_xticklabels(ticks)
        ax.set_xlabel("Model size")
        ax.set_ylabel(f"{bench} score (%)")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
    return save(fig, path)


def config_label(configuration: str, n) -> str:
    return {"base": "Base", "skyline": "Skyline", "lora": "LoRA"}.get(configuration) or f"Full {int(n)}"


def absolute(summary: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 4: every configuration's mean ± s.e., rows = benchmarks, columns = sizes."""
    _theme()
    order = _present(sizes, summary) or sizes[:1]
    data = summary.assign(label=[config_label(c, n) for c, n in zip(summary["configuration"], summary["train_examples"])])
    fulls = sorted(data.loc[data["configuration"] == "full", "train_examples"].dropna().astype(int).unique())
    labels = [x for x in ("Base", "Skyline", "LoRA") if x in set(data["label"])] + [f"Full {n}" for n in fulls]
    colours = dict(zip(["Base", "Skyline", "LoRA"], sns.color_palette("Set2", 4)[:2] + [sns.color_palette("Set2", 4)[3]]))
    blues = sns.color_palette("Blues", len(fulls) + 2)[2:]
    colours.update({f"Full {n}": c for n, c in zip(fulls, blues)})
    fig, axes = plt.subplots(len(benchmarks), len(order), figsize=(max(3.2 * len(order), 5), 3.3 * len(benchmarks)),
                             squeeze=False, sharey="row")
    for i, bench in enumerate(benchmarks):
        for j, size in enumerate(order):
            ax = axes[i][j]
            sub = data[(data["benchmark"] == bench) & (data["size"] == size)].set_index("label")
            ax.set_title(f"{size} — {bench}", fontsize=10)
            if sub.empty:
                _empty(ax, "no results")
                continue
            present = [x for x in labels if x in sub.index]
            ax.bar(range(len(present)), sub.loc[present, "mean"], color=[colours[x] for x in present],
                   yerr=sub.loc[present, "stderr"].fillna(0), capsize=3, error_kw={"linewidth": 1})
            ax.set_xticks(range(len(present)), present, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
            ax.set_xlabel("")
            ax.set_ylabel(f"{bench} score (%)" if j == 0 else "")
    fig.tight_layout()
    return save(fig, path)


def paper_comparison(cmp: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path,
                     paper_sizes: list[str] | None = None) -> list[Path]:
    """Ours (y) against the paper (x), error bars = s.e. both ways; diagonal y = x."""
    _theme()
    both = cmp[cmp["in_paper"]] if not cmp.empty else cmp
    order = _present(sizes, both)
    pal = palette(order or sizes)
    markers = {"base": "o", "skyline": "s", "lora": "D", "full": "^"}
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.2 * len(benchmarks), 4.8), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        sub = both[both["benchmark"] == bench] if not both.empty else both
        ax.set_title(f"{bench}: ours vs paper (Table 1)", fontsize=11)
        ax.set_xlabel("Paper score (%)")
        ax.set_ylabel("Our score (%)")
        if sub.empty:
            ours = list(dict.fromkeys(cmp["size"])) if not cmp.empty else []
            _empty(ax, "No size in common with the paper\n"
                       + (f"(ours: {', '.join(ours)}; paper: {', '.join(paper_sizes or ['none'])})" if ours else ""))
            continue
        for (size, conf), g in sub.groupby(["size", "configuration"]):
            ax.errorbar(g["paper_mean"], g["mean"], xerr=g["paper_stderr"], yerr=g["stderr"].fillna(0), ls="",
                        marker=markers.get(conf, "o"), color=pal[size], ms=6, capsize=2, lw=0.8, alpha=0.9)
        lo = min(sub["paper_mean"].min(), sub["mean"].min())
        hi = max(sub["paper_mean"].max(), sub["mean"].max())
        pad = max(2.0, 0.05 * (hi - lo))
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="grey", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        handles = [Line2D([], [], marker="o", ls="", color=pal[s], label=s) for s in order]
        handles += [Line2D([], [], marker=m, ls="", color="grey", label=c)
                    for c, m in markers.items() if c in set(sub["configuration"])]
        ax.legend(handles=handles, fontsize=8, loc="upper left")
    fig.tight_layout()
    return save(fig, path)
