#!/usr/bin/env python
"""Figures of the paper from the aggregated tables (called by aggregate.py; importable).

  recovered          Figure 1: Recovered % of every full finetune against training-set size, one
                     line per model size, one panel per benchmark; bars = 95 % paired-bootstrap
                     intervals; a size whose skyline − base interval contains 0 is drawn dashed
                     (uncertain denominator), only skyline == base is left out
  claim              the paper's claim as a statistic (elicit/report/claim.py): the smallest subset
                     with a positive gain per size, and Recovered % at the smallest subset
  scaling_fit        exploratory: the fitted line Recovered % = a + b log2(examples) per size, and b against
                     the parameter count (elicit/report/scaling.py)
  val_loss_gain      Figure 2: validation-loss decrease against performance gain (trained − base)
                     of every full finetune; × marks each size's centroid
  bars               Figure 3: base, skyline, full finetune on the largest subset and LoRA per size
  absolute           Figure 4: every configuration, one panel per size and benchmark
  paper_comparison   ours against the paper's Table 1, y = x dashed
  training_curves    validation loss against step of every full finetune, one panel per size: the
                     selected checkpoint (★), its 0.1-nat band (shaded), early stops (×)

Every figure is written as PNG (150 dpi) and PDF. Colours are colour-blind safe (Okabe & Ito);
sizes keep one colour and the config's order everywhere. Figures 3, 4 and the comparison show
mean ± Table 1's standard error (per task across seeds, pooled by the paper's rule).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from elicit import grid  # noqa: E402
from elicit.atomic import atomic_path  # noqa: E402
from elicit.report.figure_names import NAMES  # noqa: E402  (the registry: what all_figures draws)
from elicit.report.stats import NEEDS_SUBSETS  # noqa: E402

# Okabe & Ito (2008), distinguishable under every common colour-vision deficiency
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442", "#000000"]
COLOURS = {"base": "#999999", "skyline": "#0072B2", "full": "#E69F00", "lora": "#009E73"}
def kind_label(kind: str) -> str:
    """The legend's name of a configuration kind: grid.LABELS (the config's `labels`), read at draw time."""
    return grid.LABELS[kind].replace("$", r"\$") + (", largest subset" if kind == "full" else "")  # no mathtext


def _style() -> None:
    plt.rcParams.update({"axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 10, "legend.frameon": False})


def palette(sizes: list[str]) -> dict[str, str]:
    """One colour per model size, the same in every figure."""
    return {s: OKABE_ITO[i % len(OKABE_ITO)] for i, s in enumerate(sizes)}


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


def _panels(n: int, w: float = 5.0, h: float = 4.0, rows: int = 1, sharey=False):
    _style()
    return plt.subplots(rows, n, figsize=(w * n, h * rows), squeeze=False, sharey=sharey)


def _log2_x(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(values))
    ax.get_xaxis().set_major_formatter(ScalarFormatter())
    ax.minorticks_off()


def recovered(rec: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 1. Every size with a Recovered % is drawn; one whose denominator is uncertain (the 95 %
    interval of skyline − base contains 0; without intervals: the gap is within one combined
    standard error) is drawn dashed with hollow markers and named in the panel's title. Only a size
    whose skyline equals its base (no denominator at all) is left out, and named."""
    pal = palette(sizes)
    full = rec[rec["configuration"] == "full"]
    fig, axes = _panels(len(benchmarks))
    for ax, bench in zip(axes[0], benchmarks):
        b = full[full["benchmark"] == bench]
        if b["train_examples"].nunique() < 2:  # a pilot: one subset is no curve
            _empty(ax, f"{NEEDS_SUBSETS} (this run: {', '.join(map(str, sorted(b['train_examples'].unique())))})"
                   "\nRecovered % of its finetunes: recovered.csv")
            ax.set_title(bench, fontsize=11)
            continue
        has_ci = "undefined_ci" in b and b["ci_lo"].notna().any()
        none = b["undefined"].astype(bool)
        shaky = ~none & (b["undefined_ci"].astype(bool) if has_ci else b["gap_z"].abs() <= 1)
        sub = b[~none]
        present = _present(sizes, sub)
        for k, size in enumerate(present):
            g = sub[sub["size"] == size].sort_values("train_examples")
            uncertain = bool(shaky[g.index].any())
            # a small multiplicative dodge per size (log axis) keeps equal values apart
            x = g["train_examples"].astype(int) * 2 ** (0.06 * (k - (len(present) - 1) / 2))
            yerr = ([g["recovered_pct"] - g["ci_lo"], g["ci_hi"] - g["recovered_pct"]]
                    if has_ci and g["ci_lo"].notna().any() else None)
            ax.errorbar(x, g["recovered_pct"], yerr=yerr, color=pal[size], marker="o", ms=5, capsize=3, lw=1.6,
                        ls="--" if uncertain else "-", mfc="white" if uncertain else pal[size],
                        label=size + (" (uncertain denominator)" if uncertain else ""))
        if sub.empty:
            _empty(ax, "no size whose skyline differs from its base")
        else:
            _log2_x(ax, sub["train_examples"].astype(int).unique())
            ax.axhline(0, color="grey", lw=0.8)
            ax.axhline(100, color="grey", lw=0.8, ls=":")
            ax.legend(title="Model size", fontsize=9, title_fontsize=9)
        notes = []
        if shaky.any():
            notes.append("dashed, skyline − base interval contains 0: "
                         + ", ".join(s for s in sizes if s in set(b.loc[shaky, "size"])))
        if none.any():
            notes.append("left out, skyline = base: " + ", ".join(s for s in sizes if s in set(b.loc[none, "size"])))
        ax.set_title(bench + "".join(f"\n({n})" for n in notes), fontsize=11)
        ax.set_xlabel("Training examples (log₂ scale)")
        ax.set_ylabel("Recovered (% of skyline − base)")
    return save(fig, path)


LINES = ["-", (0, (5, 2)), (0, (1, 1.5)), "-.", (0, (3, 1, 1, 1, 1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def _params_label(n: float) -> str:
    return next(f"{n / u:.3g}{s}" for u, s in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"), (1, ""))
                if n >= u or u == 1)


def scaling_fit(table: pd.DataFrame, points: dict, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    return save(scaling_fit_figure(table, points, sizes, benchmarks), path)


def scaling_fit_figure(table: pd.DataFrame, points: dict, sizes: list[str], benchmarks: list[str]):
    """Recovered % against log2(examples) per size with its fitted line (slope and 95 % interval in the
    legend, 50 % dotted); below, each size's slope against its parameter count (log scale, a tick per
    size). Sizes that tie stay visible: each has its own dash pattern and marker, its points dodged
    sideways by a few % of a doubling."""
    pal = palette(sizes)
    style = {s: (LINES[i % len(LINES)], MARKERS[i % len(MARKERS)]) for i, s in enumerate(sizes)}
    fig, axes = _panels(len(benchmarks), rows=2, h=3.6)
    for j, bench in enumerate(benchmarks):
        ax, ax2 = axes[0][j], axes[1][j]
        t = table[table["benchmark"] == bench] if not table.empty else table
        left = t["left_out"].fillna("").tolist() if "left_out" in t else []
        t = t[t["slope"].notna()] if not t.empty else t  # left out: Recovered % undefined (its row says why)
        for k, (_, r) in enumerate(t.iterrows()):
            n, y = points[(r["size"], bench)]
            ls, marker = style[r["size"]]
            dodge = 2 ** (0.04 * (k - (len(t) - 1) / 2))
            xs = np.linspace(np.log2(n.min()), np.log2(n.max()), 20)
            ax.plot(np.asarray(n) * dodge, y, marker, color=pal[r["size"]], ms=5, mfc="none", mew=1.4)
            ax.plot(2 ** xs, r["intercept"] + r["slope"] * xs, color=pal[r["size"]], lw=1.6, ls=ls,
                    label=f"{r['size']}: {r['slope']:+.1f} [{r['slope_lo']:+.1f}, {r['slope_hi']:+.1f}] / doubling")
        if t.empty:
            _empty(ax, NEEDS_SUBSETS if NEEDS_SUBSETS in " ".join(left) else
                   "no size with two full finetunes and a defined Recovered %")
            _empty(ax2, "no slopes")
            ax.set_title(bench, fontsize=11)
            continue
        _log2_x(ax, sorted({int(v) for k, (n, _) in points.items() if k[1] == bench for v in n}))
        ax.axhline(50, color="grey", lw=0.8, ls=":")
        ax.legend(fontsize=8)
        ax.set_title(f"{bench}: Recovered % = a + b·log₂(examples)", fontsize=11)
        ax.set_xlabel("Training examples (log₂ scale)")
        ax.set_ylabel("Recovered (%)")
        p = t.dropna(subset=["params"])
        for _, r in p.iterrows():
            ax2.errorbar([r["params"]], [r["slope"]], yerr=[[r["slope"] - r["slope_lo"]], [r["slope_hi"] - r["slope"]]],
                         color=pal[r["size"]], marker=style[r["size"]][1], capsize=3)
        if not p.empty:
            ax2.set_xscale("log")
            ticks = p.drop_duplicates("size").sort_values("params")
            ax2.set_xticks(ticks["params"].astype(float), [f"{s}\n{_params_label(v)}" for s, v in
                                                            zip(ticks["size"], ticks["params"].astype(float))])
            ax2.minorticks_off()
            lo, hi = float(p["params"].min()), float(p["params"].max())
            ax2.set_xlim(lo / 1.5, hi * 1.5)
        if p["size"].nunique() >= 2:  # scaling.slope_vs_params: slope = c + d ln(parameters)
            d, c = np.polyfit(np.log(p["params"].astype(float)), p["slope"].astype(float), 1)
            xs = np.geomspace(p["params"].min(), p["params"].max(), 20)
            ax2.plot(xs, c + d * np.log(xs), color="grey", lw=1, ls="--", label=f"{d:+.1f} per ln(parameters)")
            ax2.legend(fontsize=8)
        ax2.set_xlabel("Parameters (log scale)")
        ax2.set_ylabel("Slope b (points per doubling)")
    return fig


def claim(table: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """The paper's claim (elicit/report/claim.py): per benchmark, the smallest subset whose gain over
    base is positive (fixed-sequence rule) against model size, "none" drawn above every subset
    (hollow); the gain there and its interval as a label; below, Recovered % at the smallest subset
    with its interval (undefined sizes named in the title)."""
    pal = palette(sizes)
    fig, axes = _panels(len(benchmarks), rows=2, h=4.0)
    rows = table[table["row"] == "size"] if not table.empty else table
    for j, bench in enumerate(benchmarks):
        ax, ax2 = axes[0][j], axes[1][j]
        t = rows[rows["benchmark"] == bench] if not rows.empty else rows
        v = table[(table["benchmark"] == bench) & (table["row"] == "verdict")] if not table.empty else table
        if t.empty:
            _empty(ax, "no size with a base and a full finetune")
            _empty(ax2, "no Recovered %")
            ax.set_title(bench, fontsize=11)
            continue
        subsets = sorted({int(n) for s in t["subsets"] for n in str(s).split()})
        top = subsets[-1] * 2
        for k, (_, r) in enumerate(t.iterrows()):
            none = r["smallest_positive"] == "none"
            y = top if none else int(r["smallest_positive"])
            ax.plot([k], [y], "o", ms=9, color=pal[r["size"]], mfc="white" if none else pal[r["size"]])
            if not none:
                ax.annotate(f"+{r['gain']:.1f} [{r['gain_lo']:.1f}, {r['gain_hi']:.1f}]", (k, y), fontsize=8,
                            xytext=(6, 4), textcoords="offset points")
            if pd.notna(r["recovered_at_min"]):
                ax2.errorbar([k], [r["recovered_at_min"]], yerr=[[r["recovered_at_min"] - r["rec_lo"]],
                             [r["rec_hi"] - r["recovered_at_min"]]], color=pal[r["size"]], marker="o", capsize=3)
        ax.set_yscale("log", base=2)
        ax.set_yticks(subsets + [top], [str(n) for n in subsets] + ["none"])
        ax.minorticks_off()
        for a in (ax, ax2):
            a.set_xticks(range(len(t)), list(t["size"]))
            a.set_xlim(-0.5, len(t) - 0.5)
        verdict = v["verdict"].iloc[0] if len(v) else ""
        ax.set_title(f"{bench}: smallest subset with a positive gain\n(verdict: {verdict})", fontsize=11)
        ax.set_ylabel("Training examples")
        undefined = [s for s, n in zip(t["size"], t["recovered_at_min"]) if pd.isna(n)]
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.axhline(100, color="grey", lw=0.8, ls=":")
        n_min = int(t["n_min"].min())
        ax2.set_title(f"Recovered % at {n_min} examples" + (f"\n(undefined: {', '.join(undefined)})"
                                                           if undefined else ""), fontsize=10)
        ax2.set_xlabel("Model size")
        ax2.set_ylabel("Recovered (%)")
    return save(fig, path)


def val_loss_gain(gain: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 2. `gain`: size, train_examples, benchmark, val_loss_decrease, gain (points)."""
    pal = palette(sizes)
    fig, axes = _panels(len(benchmarks))
    for ax, bench in zip(axes[0], benchmarks):
        sub = gain[gain["benchmark"] == bench].dropna(subset=["val_loss_decrease", "gain"]) if not gain.empty else gain
        ax.set_title(bench, fontsize=11)
        ax.set_xlabel("Validation-loss decrease (nats per token)")
        ax.set_ylabel("Gain over base (percentage points)")
        if sub.empty:
            _empty(ax, "no full finetune with both a selection and an evaluation")
            continue
        order = _present(sizes, sub)
        for size in order:
            g = sub[sub["size"] == size]
            ax.scatter(g["val_loss_decrease"], g["gain"], color=pal[size], s=40, alpha=0.85)
            ax.scatter(g["val_loss_decrease"].mean(), g["gain"].mean(), marker="X", s=170, color=pal[size],
                       edgecolor="black", linewidth=0.8, zorder=5)
        ax.axhline(0, color="grey", lw=0.8)
        ax.margins(x=0.1)
        handles = [Line2D([], [], marker="o", ls="", color=pal[s], label=s) for s in order]
        handles.append(Line2D([], [], marker="X", ls="", color="grey", markeredgecolor="black", markersize=10,
                              label="centroid of the size"))
        ax.legend(handles=handles, title="Model size", fontsize=9, title_fontsize=9, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=len(handles))
    return save(fig, path)


def _largest(summary: pd.DataFrame) -> pd.DataFrame:
    """base, skyline, LoRA and the full finetune with the most examples, per size."""
    rows = []
    for _, g in summary.groupby("size", sort=False):
        full = g[g["configuration"] == "full"]
        keep = g[g["configuration"] != "full"]
        if not full.empty:
            keep = pd.concat([keep, full[full["train_examples"] == full["train_examples"].max()]])
        rows.append(keep)
    return pd.concat(rows, ignore_index=True) if rows else summary


def bars(summary: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 3: base, skyline, full finetune on the largest subset and LoRA per size, mean ± s.e."""
    data = _largest(summary)
    order = _present(sizes, data)
    kinds = [k for k in ("base", "skyline", "full", "lora") if k in set(data["configuration"])]
    fig, axes = _panels(len(benchmarks), w=max(5.0, 1.5 * len(order) + 2))
    width = 0.8 / max(1, len(kinds))
    for ax, bench in zip(axes[0], benchmarks):
        sub = data[data["benchmark"] == bench]
        ax.set_title(bench, fontsize=11)
        if sub.empty:
            _empty(ax, "no results")
            continue
        for k, kind in enumerate(kinds):
            g = sub[sub["configuration"] == kind].set_index("size")
            xs = [i + (k - (len(kinds) - 1) / 2) * width for i, s in enumerate(order) if s in g.index]
            ax.bar(xs, [g.loc[s, "mean"] for s in order if s in g.index], width, color=COLOURS[kind],
                   label=kind_label(kind), yerr=[g.loc[s, "stderr"] for s in order if s in g.index],
                   capsize=3, error_kw={"linewidth": 1}, edgecolor="white")
        ax.set_xticks(range(len(order)), [_size_tick(s, sub) for s in order])
        ax.set_xlabel("Model size")
        ax.set_ylabel(f"{bench} score (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return save(fig, path)


def _size_tick(size: str, sub: pd.DataFrame) -> str:
    n = sub.loc[(sub["size"] == size) & (sub["configuration"] == "full"), "train_examples"]
    return f"{size}\n(full: {int(n.iloc[0])} ex.)" if len(n) else size


def absolute(summary: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> list[Path]:
    """Figure 4: every configuration's mean ± s.e., rows = benchmarks, columns = sizes."""
    order = _present(sizes, summary) or sizes[:1]
    data = summary.assign(label=[grid.label(c, n, short=True) for c, n in zip(summary["configuration"],
                                                                              summary["train_examples"])])
    fulls = sorted(data.loc[data["configuration"] == "full", "train_examples"].dropna().astype(int).unique())
    cmap = plt.get_cmap("viridis")
    colours = {grid.SHORT[k]: COLOURS[k] for k in ("base", "skyline", "lora")}
    colours.update({f"Full {n}": cmap(0.15 + 0.7 * i / max(1, len(fulls) - 1)) for i, n in enumerate(fulls)})
    labels = [x for x in ("Base", "Skyline", "LoRA") if x in set(data["label"])] + [f"Full {n}" for n in fulls]
    fig, axes = _panels(len(order), w=max(3.2, 8 / len(order)), h=3.4, rows=len(benchmarks), sharey="row")
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
            ax.set_ylabel(f"{bench} score (%)" if j == 0 else "")
    fig.tight_layout()
    return save(fig, path)


def paper_comparison(cmp: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path,
                     paper_sizes: list[str] | None = None) -> list[Path]:
    """Ours (y) against the paper (x), error bars = s.e. both ways; diagonal y = x."""
    both = cmp[cmp["in_paper"].astype(bool)] if not cmp.empty else cmp
    order = _present(sizes, both)
    pal = palette(sizes)
    markers = {"base": "o", "skyline": "s", "lora": "D", "full": "^"}
    fig, axes = _panels(len(benchmarks), w=5.0, h=4.8)
    for ax, bench in zip(axes[0], benchmarks):
        sub = both[both["benchmark"] == bench] if not both.empty else both
        ax.set_title(f"{bench}: ours vs the paper's Table 1", fontsize=11)
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
        lo, hi = min(sub["paper_mean"].min(), sub["mean"].min()), max(sub["paper_mean"].max(), sub["mean"].max())
        pad = max(2.0, 0.05 * (hi - lo))
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="grey", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        handles = [Line2D([], [], marker="o", ls="", color=pal[s], label=s) for s in order]
        handles += [Line2D([], [], marker=m, ls="", color="grey", label=c)
                    for c, m in markers.items() if c in set(sub["configuration"])]
        ax.legend(handles=handles, fontsize=8, loc="upper left")
    return save(fig, path)


def training_curves(curves: pd.DataFrame, sel: pd.DataFrame, sizes: list[str], path: Path) -> list[Path]:
    """Validation loss against step, one panel per size, one line per training-set size."""
    order = _present(sizes, curves) or sizes[:1]
    fig, axes = _panels(len(order), w=4.6, h=3.8)
    cmap = plt.get_cmap("viridis")
    for ax, size in zip(axes[0], order):
        c = curves[curves["size"] == size]
        ax.set_title(f"{size}: validation loss of the full finetunes", fontsize=10)
        ax.set_xlabel("Training step")
        ax.set_ylabel("Validation loss (nats per token, log scale)")
        if c.empty:
            _empty(ax, "no training metrics")
            continue
        ns = sorted(c["train_examples"].unique())
        last, early = c["step"].max(), False
        for i, n in enumerate(ns):
            g, colour = c[c["train_examples"] == n].sort_values("step"), cmap(0.1 + 0.8 * i / max(1, len(ns) - 1))
            ax.plot(g["step"], g["val_loss"], color=colour, lw=1.5, label=f"{n} examples")
            s = sel[(sel["size"] == size) & (sel["train_examples"] == n)]
            if not s.empty and pd.notna(s["selected_step"].iloc[0]):
                best, tol = g["val_loss"].min(), s["tolerance"].iloc[0]  # the one the selection used
                if pd.notna(tol):
                    ax.fill_between(g["step"], best, best + tol, color=colour, alpha=0.12, lw=0)
                pick = g[g["step"] == s["selected_step"].iloc[0]]
                ax.plot(pick["step"], pick["val_loss"], marker="*", ms=13, color=colour, markeredgecolor="black")
            if g["step"].max() < last:  # stopped early: patience ran out
                ax.plot(g["step"].iloc[-1], g["val_loss"].iloc[-1], marker="x", ms=9, color=colour, mew=2)
                early = True
        ax.set_yscale("log")
        extra = [Line2D([], [], marker="*", ls="", color="grey", markeredgecolor="black", ms=12,
                        label="selected (band: best + tolerance)")]
        if early:
            extra.append(Line2D([], [], marker="x", ls="", color="grey", mew=2, ms=8, label="stopped early"))
        ax.legend(handles=ax.get_legend_handles_labels()[0] + extra, fontsize=8)
    return save(fig, path)


def all_figures(fig_dir: Path, sizes: list[str], benchmarks: list[str], *, rec, gain, summary, cmp, paper_sizes,
                curves, selections, scaling=None, claim_table=None) -> None:
    """Every figure of the registry (figure_names.NAMES), in its order, drawn to <fig_dir>/<name>.png and .pdf."""
    table, points = scaling if scaling is not None else (pd.DataFrame(), {})
    draw = {
        "recovered": lambda p: recovered(rec, sizes, benchmarks, p),
        "val_loss_gain": lambda p: val_loss_gain(gain, sizes, benchmarks, p),
        "bars": lambda p: bars(summary, sizes, benchmarks, p),
        "absolute": lambda p: absolute(summary, sizes, benchmarks, p),
        "paper_comparison": lambda p: paper_comparison(cmp, sizes, benchmarks, p, paper_sizes),
        "training_curves": lambda p: training_curves(curves, selections, sizes, p),
        "claim": lambda p: claim(claim_table if claim_table is not None else pd.DataFrame(), sizes, benchmarks, p),
        "scaling_fit": lambda p: scaling_fit(table, points, sizes, benchmarks, p),
    }
    if set(draw) != set(NAMES):  # a registered figure without a drawer, or a drawer the registry lacks
        raise KeyError(f"figures: registry {sorted(NAMES)} != drawers {sorted(draw)}")
    for name in NAMES:
        draw[name](fig_dir / f"{name}.png")
