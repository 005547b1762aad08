#!/usr/bin/env python
"""Collect evaluation results into a tidy table, the paper's Table 1, Recovered % and figures.

  tidy.parquet   one row per (size, configuration, train_examples, task, seed): score (%)
  table1.csv/md  mean ± standard error across seeds per benchmark (AIME = aime24 + aime25
                 pooled per seed, weighted by problem count), laid out as the paper's Table 1
  recovered.csv  Recovered % = (trained − base) / (skyline − base) × 100; NaN where
                 skyline and base do not differ (footnoted in table1.md)
  figures/recovered.png  Figure 1: Recovered % against training-set size per model size

Usage:
  python workflow/scripts/aggregate.py --results results --sizes 1.5B 7B 14B 32B \\
      --benchmarks AIME=aime24,aime25 GPQA=gpqa_diamond_cot_zeroshot
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from atomic import atomic_path, write_text

CONFIG_ORDER = {"base": 0, "skyline": 1, "lora": 2, "full": 3}
LABELS = {"base": "Qwen2.5-Instruct (base)", "skyline": "DeepSeek-R1-Distill", "lora": "LoRA",
          "full": "Full finetune"}


def parse_config(name: str) -> tuple[str, int | None]:
    if name.startswith("full-"):
        return "full", int(name.split("-", 1)[1])
    return name, None


def collect(results: Path, sizes: list[str]) -> pd.DataFrame:
    """Tidy rows from results/eval/{size}/{config}/{task}/seed{k}.json."""
    manifest = results / "data" / "manifest.json"
    n_all = json.loads(manifest.read_text())["n_rows"] if manifest.exists() else None
    rows = []
    for size in sizes:
        for f in sorted((results / "eval" / size).glob("*/*/seed*.json")):
            d = json.loads(f.read_text())
            cfg, n = parse_config(f.parents[1].name)
            rows.append({"size": size, "configuration": cfg,
                         "train_examples": n_all if cfg == "lora" else n,
                         "task": f.parent.name, "seed": int(f.stem.removeprefix("seed")),
                         "score": float(d["score"]), "n_samples": int(d.get("n_samples") or 1),
                         "temperature": d.get("generation", {}).get("temperature"),
                         "max_gen_toks": d.get("generation", {}).get("max_gen_toks")})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def benchmark_scores(tidy: pd.DataFrame, benchmarks: dict[str, list[str]]) -> pd.DataFrame:
    """Per seed and benchmark: tasks pooled, weighted by their number of problems."""
    keys = ["size", "configuration", "train_examples", "seed"]
    out = []
    for name, tasks in benchmarks.items():
        sub = tidy[tidy["task"].isin(tasks)].copy()
        if sub.empty:
            continue
        sub["weighted"] = sub["score"] * sub["n_samples"]
        g = sub.groupby(keys, dropna=False).agg(weighted=("weighted", "sum"), n=("n_samples", "sum"),
                                                 tasks=("task", "nunique")).reset_index()
        g = g[g["tasks"] == len(tasks)]  # a seed counts only once every task of it is done
        g["benchmark"], g["score"] = name, g["weighted"] / g["n"]
        out.append(g[keys + ["benchmark", "score"]])
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=keys + ["benchmark", "score"])


def mean_se(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error (sample s.d. / sqrt(k)) across seeds."""
    keys = ["size", "configuration", "train_examples", "benchmark"]
    g = scores.groupby(keys, dropna=False)["score"]
    t = g.agg(mean="mean", n_seeds="count", sd=lambda s: s.std(ddof=1) if len(s) > 1 else math.nan)
    t["stderr"] = t["sd"] / np.sqrt(t["n_seeds"])
    return t.drop(columns="sd").reset_index()


def recovered(summary: pd.DataFrame, eps: float = 1e-9) -> pd.DataFrame:
    """(trained − base)/(skyline − base) × 100 per size, configuration and benchmark."""
    rows = []
    for (size, bench), g in summary.groupby(["size", "benchmark"]):
        ref = {c: g.loc[g["configuration"] == c, "mean"] for c in ("base", "skyline")}
        if any(r.empty for r in ref.values()):
            continue
        base, sky = float(ref["base"].iloc[0]), float(ref["skyline"].iloc[0])
        for _, r in g[g["configuration"].isin(["lora", "full"])].iterrows():
            gap = sky - base
            rows.append({"size": size, "configuration": r["configuration"],
                         "train_examples": r["train_examples"], "benchmark": bench,
                         "recovered_pct": (r["mean"] - base) / gap * 100 if abs(gap) > eps else math.nan,
                         "undefined": abs(gap) <= eps})
    return pd.DataFrame(rows, columns=["size", "configuration", "train_examples", "benchmark",
                                       "recovered_pct", "undefined"])


def table1(summary: pd.DataFrame, sizes: list[str], benchmarks: list[str]) -> pd.DataFrame:
    """Wide Table 1: one row per (size, configuration, train_examples), 'mean ± se' per benchmark."""
    if summary.empty:
        return pd.DataFrame(columns=["size", "configuration", "train_examples"] + benchmarks)
    s = summary.copy()
    s["cell"] = [f"{m:.2f} ± {e:.2f}" if not math.isnan(e) else f"{m:.2f}"
                 for m, e in zip(s["mean"], s["stderr"])]
    wide = s.pivot_table(index=["size", "configuration", "train_examples"], columns="benchmark",
                         values="cell", aggfunc="first", dropna=False).reset_index()
    wide = wide.dropna(subset=[b for b in benchmarks if b in wide.columns], how="all")
    wide["_s"] = wide["size"].map({s: i for i, s in enumerate(sizes)})
    wide["_c"] = wide["configuration"].map(CONFIG_ORDER)
    wide = wide.sort_values(["_s", "_c", "train_examples"]).drop(columns=["_s", "_c"])
    wide.columns.name = None
    return wide[["size", "configuration", "train_examples"] + [b for b in benchmarks if b in wide.columns]]


def markdown(t1: pd.DataFrame, rec: pd.DataFrame) -> str:
    cols = [c for c in t1.columns if c not in ("size", "configuration", "train_examples")]
    lines = ["| Model size | Configuration | " + " | ".join(f"{c} (%)" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for _, r in t1.iterrows():
        label = LABELS[r["configuration"]]
        if r["configuration"] in ("lora", "full") and not pd.isna(r["train_examples"]):
            label += f" ({int(r['train_examples'])} examples)"
        lines.append(f"| {r['size']} | {label} | " + " | ".join(str(r[c]) if not pd.isna(r[c]) else "—"
                                                              for c in cols) + " |")
    lines.append("\nMean ± standard error across seeds.")
    undefined = rec[rec["undefined"]][["size", "benchmark"]].drop_duplicates()
    for _, r in undefined.iterrows():
        lines.append(f"\n¹ Recovered % is undefined for {r['size']} {r['benchmark']}: skyline and "
                     "base scores do not differ, so it is reported as NaN.")
    return "\n".join(lines) + "\n"


def figure_recovered(rec: pd.DataFrame, sizes: list[str], benchmarks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    full = rec[(rec["configuration"] == "full") & ~rec["undefined"]].copy()
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        sub = full[full["benchmark"] == bench]
        if not sub.empty:
            sub = sub.assign(train_examples=sub["train_examples"].astype(int))
            sns.lineplot(data=sub, x="train_examples", y="recovered_pct", hue="size",
                         hue_order=[s for s in sizes if s in set(sub["size"])], marker="o", ax=ax)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(sub["train_examples"].unique()))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.legend(title="Model size")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(bench)
        ax.set_xlabel("Training examples")
        ax.set_ylabel("Recovered %")
    fig.tight_layout()
    for suffix in (".png", ".pdf"):
        with atomic_path(path.with_suffix(suffix), suffix=suffix) as tmp:
            fig.savefig(tmp, dpi=150, format=suffix[1:])
    plt.close(fig)


def run(results: Path, sizes: list[str], benchmarks: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
    tidy = collect(results, sizes)
    if tidy.empty:
        raise SystemExit(f"aggregate: no evaluation results under {results}/eval for sizes {sizes}")
    summary = mean_se(benchmark_scores(tidy, benchmarks))
    rec = recovered(summary)
    t1 = table1(summary, sizes, list(benchmarks))
    with atomic_path(results / "tidy.parquet", suffix=".parquet") as tmp:
        tidy.to_parquet(tmp, index=False)
    for name, df in (("table1.csv", t1), ("summary.csv", summary), ("recovered.csv", rec)):
        write_text(results / name, df.to_csv(index=False))
    write_text(results / "table1.md", markdown(t1, rec))
    figure_recovered(rec, sizes, list(benchmarks), results / "figures" / "recovered.png")
    return {"tidy": tidy, "summary": summary, "recovered": rec, "table1": t1}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--sizes", nargs="+", required=True)
    ap.add_argument("--benchmarks", nargs="+", required=True, help="NAME=task1,task2 ...")
    args = ap.parse_args(argv)
    benchmarks = dict((b.split("=", 1)[0], b.split("=", 1)[1].split(",")) for b in args.benchmarks)
    out = run(Path(args.results), args.sizes, benchmarks)
    print(out["table1"].to_string(index=False))
    print(f"\nTable 1: {args.results}/table1.csv, {args.results}/table1.md; "
          f"figures: {args.results}/figures/")


if __name__ == "__main__":
    main()
