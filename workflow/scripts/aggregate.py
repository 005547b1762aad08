#!/usr/bin/env python
"""Collect evaluation results into a tidy table, the paper's Table 1, Recovered %, a comparison
with the paper, and figures.

  tidy.parquet        one row per (size, configuration, train_examples, task, seed): score (%),
                      n_samples and the effective generation settings
  summary.csv         mean ± standard error per (size, configuration, train_examples, benchmark):
                      per task the mean and s.e. across seeds, then, for a benchmark pooling tasks
                      (AIME = aime24 + aime25), the n-weighted mean of the task means and
                      s.e. = sqrt(sum((n_t/N)^2 se_t^2)) -- the rule that reproduces the paper's cells
  summary_tasks.csv   the per-task means and standard errors behind it
  table1.csv/md/tex   the paper's Table 1 layout: per size base, skyline, LoRA, full finetunes by
                      increasing subset size; "mean ± s.e." cells (Markdown and LaTeX show the size
                      on its first row only, like the paper)
  recovered.csv       Recovered % = (trained − base) / (skyline − base) × 100; NaN where skyline
                      and base do not differ (footnoted in table1.md / table1.tex)
  paper_comparison.csv/md   ours against resources/paper/table1.csv per cell: difference and
                      z = (ours − paper) / sqrt(se_ours² + se_paper²); sizes the paper has not
                      (e.g. the demo's) are listed with in_paper = False and no z
  figures/            recovered, val_loss_gain, bars, absolute, paper_comparison (.png and .pdf);
                      see figures.py

Only the sizes, configurations and seeds asked for are read, and only what exists: a partial grid
(one size, some seeds) is reported as it stands; a seed counts for a benchmark once every task of
the benchmark is done for it.

Usage:
  python workflow/scripts/aggregate.py --results results --sizes 1.5B 7B 14B 32B \\
      --benchmarks AIME=aime24,aime25 GPQA=gpqa_diamond_cot_zeroshot \\
      [--configs base skyline lora full-928 ...] [--seeds 0 1 2 3] [--paper resources/paper/table1.csv]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from atomic import atomic_path, write_text

ROOT = Path(__file__).resolve().parents[2]
PAPER_TABLE = ROOT / "resources" / "paper" / "table1.csv"
CONFIG_ORDER = {"base": 0, "skyline": 1, "lora": 2, "full": 3}
LABELS = {"base": "Qwen2.5-Instruct (base)", "skyline": "DeepSeek-R1-Distill", "lora": "LoRA",
          "full": "Full finetune"}
GENERATION = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_gen_toks", "do_sample"]
KEYS = ["size", "configuration", "train_examples", "benchmark"]
SE_RULE = ("Mean ± standard error across seeds. Per task: mean and s.e. over the seeds; a benchmark "
           "that pools tasks (AIME = aime24 + aime25) takes the problem-weighted mean of the task means "
           "and s.e. = sqrt(Σ (n_t/N)² se_t²), the rule that reproduces the paper's Table 1.")
SE_RULE_TEX = (r"Per task: mean and s.e.\ over the seeds; a benchmark that pools tasks (AIME = aime24 + "
               r"aime25) takes the problem-weighted mean of the task means and "
               r"s.e.\ $=\sqrt{\sum_t (n_t/N)^2\,\mathrm{se}_t^2}$.")


def parse_config(name: str) -> tuple[str, int | None]:
    if name.startswith("full-"):
        return "full", int(name.split("-", 1)[1])
    return name, None


def collect(results: Path, sizes: list[str], configs: list[str] | None = None,
            tasks: list[str] | None = None, seeds: list[int] | None = None) -> pd.DataFrame:
    """Tidy rows from results/eval/{size}/{config}/{task}/seed{k}.json (only the selected cells)."""
    manifest = results / "data" / "manifest.json"
    n_all = json.loads(manifest.read_text()).get("n_rows") if manifest.exists() else None
    rows = []
    for size in sizes:
        for f in sorted((results / "eval" / size).glob("*/*/seed*.json")):
            config_name, task = f.parents[1].name, f.parent.name
            seed = int(f.stem.removeprefix("seed"))
            if (configs is not None and config_name not in configs) or (tasks is not None and task not in tasks) \
                    or (seeds is not None and seed not in seeds):
                continue
            d = json.loads(f.read_text())
            cfg, n = parse_config(config_name)
            gen = d.get("generation") or {}
            rows.append({"size": size, "configuration": cfg,
                         "train_examples": n_all if cfg == "lora" else n,
                         "task": task, "seed": seed,
                         "score": float(d["score"]), "n_samples": int(d.get("n_samples") or 1),
                         **{k: gen.get(k) for k in GENERATION},
                         "model": d.get("model"), "adapter": d.get("adapter"),
                         "task_version": d.get("task_version")})
    df = pd.DataFrame(rows, columns=["size", "configuration", "train_examples", "task", "seed", "score",
                                     "n_samples", *GENERATION, "model", "adapter", "task_version"])
    df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def task_stats(tidy: pd.DataFrame, benchmarks: dict[str, list[str]]) -> pd.DataFrame:
    """Per (cell, benchmark, task): mean and standard error (sample s.d. / sqrt(k)) over the
    seeds that every task of the benchmark has (a partial grid compares like with like); NaN
    s.e. for one seed. n = the task's problem count."""
    cell = ["size", "configuration", "train_examples"]
    out = []
    for name, tasks in benchmarks.items():
        sub = tidy[tidy["task"].isin(tasks)]
        if sub.empty:
            continue
        done = sub.groupby(cell + ["seed"], dropna=False)["task"].nunique().rename("n_tasks").reset_index()
        sub = sub.merge(done[done["n_tasks"] == len(tasks)].drop(columns="n_tasks"), on=cell + ["seed"])
        g = sub.groupby(cell + ["task"], dropna=False)
        t = g.agg(mean=("score", "mean"), n_seeds=("score", "count"), n=("n_samples", "max"),
                  sd=("score", lambda x: x.std(ddof=1) if len(x) > 1 else math.nan)).reset_index()
        t["stderr"] = t["sd"] / np.sqrt(t["n_seeds"])
        out.append(t.drop(columns="sd").assign(benchmark=name))
    cols = cell + ["benchmark", "task", "mean", "stderr", "n_seeds", "n"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def pool(tasks: pd.DataFrame) -> pd.DataFrame:
    """The paper's rule for a benchmark that pools tasks (AIME = aime24 + aime25): mean = the
    n-weighted mean of the task means, s.e. = sqrt(sum((n_t / N)^2 se_t^2)); for two 30-problem
    tasks sqrt(se24^2 + se25^2) / 2. A benchmark needs every one of its tasks."""
    if tasks.empty:
        return pd.DataFrame(columns=KEYS + ["mean", "n_seeds", "stderr"])
    t = tasks.assign(w=tasks["n"] / tasks.groupby(KEYS, dropna=False)["n"].transform("sum"))
    t = t.assign(wm=t["w"] * t["mean"], wv=(t["w"] * t["stderr"]) ** 2)
    out = t.groupby(KEYS, dropna=False).agg(
        mean=("wm", "sum"), n_seeds=("n_seeds", "min"),
        stderr=("wv", lambda v: math.sqrt(v.sum()) if v.notna().all() else math.nan)).reset_index()
    return out[KEYS + ["mean", "n_seeds", "stderr"]]


def recovered(summary: pd.DataFrame, eps: float = 1e-9) -> pd.DataFrame:
    """(trained − base)/(skyline − base) × 100 per size, configuration and benchmark.

    NaN with undefined = True where |skyline − base| <= eps (skyline == base: no denominator).
    gap_z = (skyline − base) / sqrt(se_skyline² + se_base²): where |gap_z| <= 1 the skyline does not
    measurably beat the base (the paper's 1.5B GPQA, omitted from its Figure 1); the value is still
    reported here, and figures.recovered leaves such sizes out of the panel and says so."""
    rows = []
    for (size, bench), g in summary.groupby(["size", "benchmark"]):
        ref = {c: g.loc[g["configuration"] == c] for c in ("base", "skyline")}
        if any(r.empty for r in ref.values()):
            continue
        base, sky = float(ref["base"]["mean"].iloc[0]), float(ref["skyline"]["mean"].iloc[0])
        gap = sky - base
        se = math.hypot(float(ref["base"]["stderr"].iloc[0]), float(ref["skyline"]["stderr"].iloc[0]))
        gap_z = gap / se if se > 0 else (0.0 if abs(gap) <= eps else math.copysign(math.inf, gap))
        for _, r in g[g["configuration"].isin(["lora", "full"])].iterrows():
            rows.append({"size": size, "configuration": r["configuration"],
                         "train_examples": r["train_examples"], "benchmark": bench,
                         "recovered_pct": (r["mean"] - base) / gap * 100 if abs(gap) > eps else math.nan,
                         "undefined": abs(gap) <= eps, "gap": gap, "gap_z": gap_z})
    return pd.DataFrame(rows, columns=["size", "configuration", "train_examples", "benchmark",
                                       "recovered_pct", "undefined", "gap", "gap_z"])


def _order(df: pd.DataFrame, sizes: list[str]) -> pd.DataFrame:
    df = df.assign(_s=df["size"].map({s: i for i, s in enumerate(sizes)}),
                   _c=df["configuration"].map(CONFIG_ORDER))
    return df.sort_values(["_s", "_c", "train_examples"]).drop(columns=["_s", "_c"]).reset_index(drop=True)


def fmt_cell(mean: float, se: float) -> str:
    return f"{mean:.2f} ± {se:.2f}" if not pd.isna(se) else f"{mean:.2f}"


def table1(summary: pd.DataFrame, sizes: list[str], benchmarks: list[str]) -> pd.DataFrame:
    """Wide Table 1: one row per (size, configuration, train_examples), 'mean ± se' per benchmark."""
    if summary.empty:
        return pd.DataFrame(columns=["size", "configuration", "train_examples"] + benchmarks)
    s = summary.copy()
    s["cell"] = [fmt_cell(m, e) for m, e in zip(s["mean"], s["stderr"])]
    wide = s.pivot_table(index=["size", "configuration", "train_examples"], columns="benchmark",
                         values="cell", aggfunc="first", dropna=False).reset_index()
    wide = wide.dropna(subset=[b for b in benchmarks if b in wide.columns], how="all")
    wide = _order(wide, sizes)
    wide.columns.name = None
    return wide[["size", "configuration", "train_examples"] + [b for b in benchmarks if b in wide.columns]]


def config_label(configuration: str, n) -> str:
    label = LABELS[configuration]
    if configuration in ("lora", "full") and not pd.isna(n):
        label += f" ({int(n)} examples)"
    return label


def footnotes(rec: pd.DataFrame) -> list[str]:
    undefined = rec.loc[rec["undefined"].astype(bool), ["size", "benchmark"]].drop_duplicates()
    return [f"Recovered % is undefined for {r['size']} {r['benchmark']}: skyline and base scores do not "
            "differ, so it is reported as NaN." for _, r in undefined.iterrows()]


def _bench_cols(t1: pd.DataFrame) -> list[str]:
    return [c for c in t1.columns if c not in ("size", "configuration", "train_examples")]


def markdown(t1: pd.DataFrame, rec: pd.DataFrame) -> str:
    """The paper's layout: the size on its first row only; '—' for a cell not (yet) evaluated."""
    cols = _bench_cols(t1)
    lines = ["| Model size | Configuration | " + " | ".join(f"{c} (%)" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    prev = None
    for _, r in t1.iterrows():
        size = r["size"] if r["size"] != prev else ""
        prev = r["size"]
        lines.append(f"| {size} | {config_label(r['configuration'], r['train_examples'])} | "
                     + " | ".join(str(r[c]) if not pd.isna(r[c]) else "—" for c in cols) + " |")
    lines.append("\n" + SE_RULE)
    lines += [f"\n¹ {f}" for f in footnotes(rec)]
    return "\n".join(lines) + "\n"


def tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        s = s.replace(a, b) if a != "\\" else s.replace(a, "\x00")
    return s.replace("\x00", r"\textbackslash{}")


def latex(t1: pd.DataFrame, rec: pd.DataFrame) -> str:
    """booktabs table in the paper's layout; cells '$m \\pm s$', '--' where missing."""
    cols = _bench_cols(t1)
    out = [r"% Generated by workflow/scripts/aggregate.py; needs \usepackage{booktabs}.",
           r"\begin{table}[t]", r"\centering",
           r"\caption{Performance on " + " and ".join(tex_escape(c) for c in cols)
           + r" across model sizes and training configurations, mean $\pm$ standard error across seeds. "
           + SE_RULE_TEX + "}",
           r"\label{tab:table1}",
           r"\begin{tabular}{ll" + "c" * len(cols) + "}", r"\toprule",
           "Model size & Configuration & " + " & ".join(f"{tex_escape(c)} (\\%)" for c in cols) + r" \\",
           r"\midrule"]
    prev = None
    for _, r in t1.iterrows():
        if prev is not None and r["size"] != prev:
            out.append(r"\midrule")
        size = tex_escape(str(r["size"])) if r["size"] != prev else ""
        prev = r["size"]
        cells = []
        for c in cols:
            v = r[c]
            cells.append("--" if pd.isna(v) else "$" + str(v).replace(" ± ", r" \pm ") + "$")
        out.append(f"{size} & {tex_escape(config_label(r['configuration'], r['train_examples']))} & "
                   + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    notes = footnotes(rec)
    if notes:
        out.append(r"\par\smallskip\footnotesize")
        out += [f"$^1$ {tex_escape(n)}" + (r"\\" if i < len(notes) - 1 else "") for i, n in enumerate(notes)]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the paper's Table 1
def load_paper(path: Path) -> pd.DataFrame:
    """resources/paper/table1.csv (wide: {bench}_mean, {bench}_stderr) -> long KEYS + paper_mean/se."""
    wide = pd.read_csv(path, dtype={"size": str})
    rows = []
    for col in wide.columns:
        if col.endswith("_mean"):
            bench = col.removesuffix("_mean")
            part = wide[["size", "configuration", "train_examples"]].copy()
            part["benchmark"] = bench.upper()
            part["paper_mean"], part["paper_stderr"] = wide[col], wide[f"{bench}_stderr"]
            rows.append(part)
    out = pd.concat(rows, ignore_index=True)
    out["train_examples"] = out["train_examples"].astype("Int64")
    return out


def compare_paper(summary: pd.DataFrame, paper: pd.DataFrame, sizes: list[str]) -> pd.DataFrame:
    """One row per cell of ours: paper's mean/se where the paper has the cell, diff and
    z = diff / sqrt(se² + se_paper²). LoRA is matched by configuration alone (its training-set
    size is the whole dataset, 1000 in the paper). z is NaN where the combined s.e. is 0 or
    unknown (one seed) and the difference is not 0; 0 where both means agree exactly."""
    cols = KEYS + ["mean", "stderr", "n_seeds", "in_paper", "paper_mean", "paper_stderr", "diff",
                   "combined_se", "z"]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    ours = summary.copy()
    ours["_n"] = ours["train_examples"].where(ours["configuration"] != "lora", pd.NA).astype("Int64")
    ref = paper.assign(_n=paper["train_examples"].where(paper["configuration"] != "lora", pd.NA).astype("Int64"),
                       benchmark=paper["benchmark"].str.upper()).drop(columns="train_examples")
    ours["_b"] = ours["benchmark"].str.upper()
    m = ours.merge(ref.rename(columns={"benchmark": "_b"}), on=["size", "configuration", "_n", "_b"], how="left")
    m["in_paper"] = m["paper_mean"].notna()
    m["diff"] = m["mean"] - m["paper_mean"]
    m["combined_se"] = np.sqrt(m["stderr"].astype(float) ** 2 + m["paper_stderr"].astype(float) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = m["diff"] / m["combined_se"]
    z = z.where(m["combined_se"] > 0, np.where(m["diff"] == 0, 0.0, np.nan))
    m["z"] = z.where(m["in_paper"], np.nan)
    return _order(m[cols], sizes)


def comparison_markdown(cmp: pd.DataFrame, paper_sizes: list[str]) -> str:
    lines = ["# Ours vs the paper's Table 1", "",
             "z = (ours − paper) / sqrt(se_ours² + se_paper²); |z| > 2 is marked **bold**.", ""]
    both = cmp[cmp["in_paper"]] if not cmp.empty else cmp
    if both.empty:
        lines.append("No cell in common with the paper: none of our sizes ("
                     + (", ".join(dict.fromkeys(cmp["size"])) or "none") + ") is one of the paper's ("
                     + ", ".join(paper_sizes) + "). Nothing to compare.")
    else:
        lines += ["| Model size | Configuration | Benchmark | Ours | Paper | Ours − paper | z |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in both.iterrows():
            z = "—" if pd.isna(r["z"]) else (f"**{r['z']:+.2f}**" if abs(r["z"]) > 2 else f"{r['z']:+.2f}")
            lines.append(f"| {r['size']} | {config_label(r['configuration'], r['train_examples'])} | {r['benchmark']} | "
                         f"{fmt_cell(r['mean'], r['stderr'])} | {fmt_cell(r['paper_mean'], r['paper_stderr'])} | "
                         f"{r['diff']:+.2f} | {z} |")
    missing = [s for s in dict.fromkeys(cmp["size"])] if not cmp.empty else []
    missing = [s for s in missing if not cmp.loc[cmp["size"] == s, "in_paper"].any()]
    if missing:
        lines += ["", f"Not in the paper (no comparison, in_paper = False in the CSV): {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- validation loss
def selections(results: Path, sizes: list[str], configs: list[str] | None = None) -> pd.DataFrame:
    """val_loss_decrease of each full finetune from results/models/{size}/full-{n}/selection.json."""
    rows = []
    for size in sizes:
        for f in sorted((results / "models" / size).glob("full-*/selection.json")):
            if configs is not None and f.parent.name not in configs:
                continue
            d = json.loads(f.read_text())
            dec = d.get("val_loss_decrease")
            if dec is None and d.get("base_val_loss") is not None and d.get("selected_val_loss") is not None:
                dec = d["base_val_loss"] - d["selected_val_loss"]
            rows.append({"size": size, "configuration": "full", "train_examples": parse_config(f.parent.name)[1],
                         "val_loss_decrease": dec, "selected_step": d.get("selected_step")})
    df = pd.DataFrame(rows, columns=["size", "configuration", "train_examples", "val_loss_decrease", "selected_step"])
    df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def gains(summary: pd.DataFrame, sel: pd.DataFrame) -> pd.DataFrame:
    """Per full finetune and benchmark: gain = mean(trained) − mean(base), with its val_loss_decrease."""
    cols = ["size", "train_examples", "benchmark", "gain", "val_loss_decrease"]
    if summary.empty or sel.empty:
        return pd.DataFrame(columns=cols)
    base = summary[summary["configuration"] == "base"][["size", "benchmark", "mean"]].rename(columns={"mean": "base"})
    full = summary[summary["configuration"] == "full"].merge(base, on=["size", "benchmark"])
    full["gain"] = full["mean"] - full["base"]
    return full.merge(sel, on=["size", "configuration", "train_examples"])[cols]


# ---------------------------------------------------------------- driver
def run(results: Path, sizes: list[str], benchmarks: dict[str, list[str]], configs: list[str] | None = None,
        seeds: list[int] | None = None, paper: Path | None = PAPER_TABLE, figures: bool = True
        ) -> dict[str, pd.DataFrame]:
    tasks = sorted({t for ts in benchmarks.values() for t in ts})
    tidy = collect(results, sizes, configs, tasks, seeds)
    if tidy.empty:
        raise SystemExit(f"aggregate: no evaluation results under {results}/eval for sizes {sizes}")
    tasks_summary = task_stats(tidy, benchmarks)
    summary = pool(tasks_summary)
    rec = recovered(summary)
    t1 = table1(summary, sizes, list(benchmarks))
    paper_df = load_paper(paper) if paper is not None and Path(paper).exists() else None
    cmp = compare_paper(summary, paper_df, sizes) if paper_df is not None else compare_paper(
        summary, pd.DataFrame(columns=KEYS + ["paper_mean", "paper_stderr"]), sizes)
    sel = selections(results, sizes, configs)
    gain = gains(summary, sel)

    with atomic_path(results / "tidy.parquet", suffix=".parquet") as tmp:
        tidy.to_parquet(tmp, index=False)
    for name, df in (("table1.csv", t1), ("summary.csv", summary), ("summary_tasks.csv", tasks_summary),
                     ("recovered.csv", rec),
                     ("paper_comparison.csv", cmp), ("val_loss_gain.csv", gain)):
        write_text(results / name, df.to_csv(index=False))
    write_text(results / "table1.md", markdown(t1, rec))
    write_text(results / "table1.tex", latex(t1, rec))
    paper_sizes = list(dict.fromkeys(paper_df["size"])) if paper_df is not None else []
    write_text(results / "paper_comparison.md", comparison_markdown(cmp, paper_sizes))
    if figures:
        import figures as fg

        bench = list(benchmarks)
        fig_dir = results / "figures"
        fg.recovered(rec, sizes, bench, fig_dir / "recovered.png")
        fg.val_loss_gain(gain, sizes, bench, fig_dir / "val_loss_gain.png")
        fg.bars(summary, sizes, bench, fig_dir / "bars.png")
        fg.absolute(summary, sizes, bench, fig_dir / "absolute.png")
        fg.paper_comparison(cmp, sizes, bench, fig_dir / "paper_comparison.png", paper_sizes)
    return {"tidy": tidy, "tasks": tasks_summary, "summary": summary, "recovered": rec, "table1": t1,
            "comparison": cmp, "gain": gain}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--sizes", nargs="+", required=True)
    ap.add_argument("--benchmarks", nargs="+", required=True, help="NAME=task1,task2 ...")
    ap.add_argument("--configs", nargs="+", default=None,
                    help="configurations to read (base skyline lora full-N ...); default: all found")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds to read; default: all found")
    ap.add_argument("--paper", default=str(PAPER_TABLE), help="the paper's Table 1 as CSV ('' = none)")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)
    benchmarks = dict((b.split("=", 1)[0], b.split("=", 1)[1].split(",")) for b in args.benchmarks)
    out = run(Path(args.results), args.sizes, benchmarks, args.configs, args.seeds,
              Path(args.paper) if args.paper else None, figures=not args.no_figures)
    print(out["table1"].to_string(index=False))
    print(f"\nTable 1: {args.results}/table1.csv, .md, .tex; paper comparison: "
          f"{args.results}/paper_comparison.md; figures: {args.results}/figures/")


if __name__ == "__main__":
    main()
