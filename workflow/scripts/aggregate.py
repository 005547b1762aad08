#!/usr/bin/env python
"""Collect evaluation results into a tidy table, the paper's Table 1, Recovered %, 95 % intervals,
a comparison with the paper, and figures.

  tidy.parquet        one row per (size, configuration, train_examples, task, seed): score (%),
                      n_samples and the effective generation settings
  samples.parquet     one row per problem and seed (0/1 score): what the intervals resample; also
                      n_new_tokens, stop_reason, the second scorer's score_robust/answer_robust,
                      upstream's filtered answer (elicit/eval/answers.py)
  summary.csv         mean ± standard error per (size, configuration, train_examples, benchmark):
                      per task the mean and s.e. across seeds, then, for a benchmark pooling tasks
                      (AIME = aime24 + aime25), the n-weighted mean of the task means and
                      s.e. = sqrt(sum((n_t/N)^2 se_t^2)) -- the rule that reproduces the paper's
                      cells -- and ci_lo/ci_hi, the 95 % paired-bootstrap interval of the score
  summary_tasks.csv   the per-task means and standard errors behind it
  table1.csv/md/tex   the paper's Table 1 layout: "mean ± s.e." cells (Markdown and LaTeX show the
                      size on its first row only, like the paper); table1.md adds Table 1b, the
                      intervals of every score, gain over base and Recovered %
  recovered.csv       Recovered % = (trained − base) / (skyline − base) × 100 per LoRA and full
                      finetune, with its interval; rows `lora_vs_full`: (LoRA − base) / (full with
                      the most examples − base) × 100 (the paper's "70–80 %"). undefined = skyline
                      == base; undefined_ci = the denominator's interval contains 0 (not plotted)
  gains.csv           trained − base with its interval, per LoRA/full finetune and benchmark
  paper_comparison.csv/md   ours against resources/paper/table1.csv per cell: difference and
                      z = (ours − paper) / sqrt(se_ours² + se_paper²); sizes the paper has not
                      (e.g. the demo's) are listed with in_paper = False and no z
  val_loss_gain.csv   per full finetune: validation-loss decrease and performance gain
  variants.csv        per variant (config `variants`): its cells' scores and Recovered % beside the
                      defaults' (table1.md, Table 1c)
  stop_reasons.csv/md why the answers stopped (eos, a stop string, max_gen_toks) and their new
                      tokens, per (size, configuration, benchmark)
  table1_robust.csv/md  Table 1 under the second scorer (elicit/eval/robust.py), same answers, same rules
  scorer_agreement.csv  per cell (size, configuration, task): answers where the two scorers disagree
  table1_train_seeds.csv/md   Table 1d: every configuration's mean over its training seeds (train.seeds:
                      cells <config>@tseed<k>, passed as --variants tseed<k>=...) with a 95 % interval of
                      training and evaluation noise combined, beside the first seed's (Table 1 does not
                      change); claim_train_seeds.csv and scaling_fit_train_seeds.csv: the claim and the fit
                      on the same replicates (elicit/report/train_seeds.py)
  claim.csv           the paper's claim as a statistic (elicit/report/claim.py): per benchmark and size
                      the smallest subset whose gain over base is positive (fixed-sequence rule), the
                      gain there, Recovered % at the smallest subset, censored n50; a verdict row per
                      benchmark (does that subset fall as the model grows)
  scaling_fit.csv     exploratory: Recovered % = a + b log2(examples) per size: slope b with its bootstrap interval,
                      examples for 50 % recovery, b against ln(parameters) (elicit/report/scaling.py)
  figures/            recovered, val_loss_gain, bars, absolute, paper_comparison, training_curves,
                      claim, scaling_fit (.png and .pdf); see figures.py

Intervals: bootstrap_ci.py, a paired bootstrap over problems (Miller 2024, "Adding Error Bars to
Evals"): each replicate resamples every task's problems, each problem carrying its answers under
all seeds, and the same resampled problems serve base, skyline and every finetune of the size.

Only the sizes, configurations and seeds asked for are read, and only what exists: a partial grid
(one size, some seeds) is reported as it stands; a seed counts for a benchmark once every task of
the benchmark is done for it.

Usage (a hand-run writes to <results>/adhoc, never over the workflow's own tables):
  python workflow/scripts/aggregate.py --results results --sizes 1.5B 7B 14B 32B \\
      --benchmarks AIME=aime24,aime25 GPQA=gpqa_diamond_cot_zeroshot \\
      [--configs base skyline lora full-928 ...] [--seeds 0 1 2 3] [--paper resources/paper/table1.csv]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from elicit import grid, repo_path
from elicit.atomic import atomic_path, read_json, read_jsonl, write_text
from elicit.eval import answers
from elicit.report import bootstrap_ci, claim, scaling, stats, tables, train_seeds
from elicit.variants import train_seed

ROOT = Path(__file__).resolve().parents[2]
PAPER_TABLE = ROOT / grid.PAPER_TABLE
GENERATION = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_gen_toks", "do_sample"]
CELL = ["size", "configuration", "train_examples"]


def _cells(results: Path, sizes, configs, tasks, seeds):
    for size, config_name, task, seed, f in grid.eval_cells(results):
        wanted = config_name in configs if configs is not None else "@" not in config_name  # no variant cells
        if size in sizes and wanted and (tasks is None or task in tasks) and (seeds is None or seed in seeds):
            yield size, config_name, task, seed, f


def collect(results: Path, sizes: list[str], configs: list[str] | None = None,
            tasks: list[str] | None = None, seeds: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tidy, samples): a row per cell seed (results/eval/{size}/{config}/{task}/seed{k}.json) and a
    row per problem and seed from its samples file (empty where a cell has none)."""
    manifest = Path(grid.data_manifest(results))
    n_all = read_json(manifest).get("n_rows") if manifest.exists() else None
    rows, per_problem = [], []
    for size, config_name, task, seed, f in _cells(results, sizes, configs, tasks, seeds):
        d = read_json(f, keys=("score",))
        cfg, n = grid.parse(config_name)
        key = {"size": size, "configuration": cfg, "train_examples": n_all if cfg == "lora" else n,
               "task": task, "seed": seed}
        gen = d.get("generation") or {}
        rows.append({**key, "score": float(d["score"]), "n_samples": int(d.get("n_samples") or 1),
                     **{k: gen.get(k) for k in GENERATION}, "model": d.get("model"),
                     "adapter": d.get("adapter"), "task_version": d.get("task_version")})
        samples = grid.samples_path(f)
        if samples.exists():
            per_problem += [{**key, "doc_id": s["doc_id"], **answers.sample_row(s)} for s in read_jsonl(samples)]
    tidy = pd.DataFrame(rows, columns=[*CELL, "task", "seed", "score", "n_samples", *GENERATION, "model",
                                       "adapter", "task_version"])
    samples = pd.DataFrame(per_problem, columns=[*CELL, "task", "seed", "doc_id", *answers.COLUMNS])
    for df in (tidy, samples):
        df["train_examples"] = df["train_examples"].astype("Int64")
    return tidy, samples


def selections(results: Path, sizes: list[str], configs: list[str] | None = None) -> pd.DataFrame:
    """val_loss_decrease of each full finetune from results/models/{size}/full-{n}/selection.json."""
    rows = []
    for size in sizes:
        for f in sorted((results / "models" / size).glob("full-*/selection.json")):
            if configs is not None and f.parent.name not in configs or "@" in f.parent.name:
                continue
            d = read_json(f)
            dec = d.get("val_loss_decrease")
            if dec is None and d.get("base_val_loss") is not None and d.get("selected_val_loss") is not None:
                dec = d["base_val_loss"] - d["selected_val_loss"]
            rows.append({"size": size, "configuration": "full", "train_examples": grid.parse(f.parent.name)[1],
                         "val_loss_decrease": dec, "selected_step": d.get("selected_step"),
                         "tolerance": d.get("tolerance")})
    df = pd.DataFrame(rows, columns=[*CELL, "val_loss_decrease", "selected_step", "tolerance"])
    df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def curves(results: Path, sizes: list[str], configs: list[str] | None = None) -> pd.DataFrame:
    """Validation loss against step of every full finetune (results/train/{size}/full-{n}/metrics.jsonl)."""
    rows = []
    for size in sizes:
        for run in grid.train_runs(results, size, "full-*"):
            if configs is not None and run.name not in configs or "@" in run.name:
                continue
            n = grid.parse(run.name)[1]
            rows += [{"size": size, "train_examples": n, "step": r["step"], "val_loss": r["val_loss"]}
                     for r in read_jsonl(grid.run_outputs(run)[grid.METRICS]) if r.get("val_loss") is not None]
    return pd.DataFrame(rows, columns=["size", "train_examples", "step", "val_loss"])


def intervals(samples: pd.DataFrame, benchmarks: dict[str, list[str]], n_boot: int, seed: int) -> dict | None:
    """bootstrap_ci over problems (each carrying all its seeds); None without per-problem samples."""
    tasks = {t for ts in benchmarks.values() for t in ts}
    samples = samples[samples["task"].isin(tasks)]
    if samples.empty:
        return None
    return bootstrap_ci.bootstrap(samples, benchmarks, n_boot=n_boot, seed=seed, resample_seeds=False)


def table1_of(tidy: pd.DataFrame, samples: pd.DataFrame, sizes, benchmarks, n_boot: int, boot_seed: int):
    """(summary, recovered, gains with intervals, tasks summary, Table 1) of per-seed scores and their samples."""
    tasks_summary = stats.task_stats(tidy, benchmarks)
    summary = stats.pool(tasks_summary)
    boot = intervals(samples, benchmarks, n_boot, boot_seed)
    summary, rec, gain_ci = stats.with_intervals(summary, stats.recovered(summary), boot)
    return summary, rec, gain_ci, tasks_summary, tables.table1(summary, sizes, list(benchmarks))


def hidden(out: Path, tidy, samples, sizes, benchmarks, n_boot: int, boot_seed: int, params=None):
    """What a score hides: stop reasons, Table 1 under the second scorer, where the scorers disagree,
    and the scaling fit; returns (scaling table, fitted points) for the figure."""
    stops = answers.stop_table(samples, benchmarks)
    write_text(out / "stop_reasons.csv", stops.to_csv(index=False))
    write_text(out / "stop_reasons.md", tables.stops_markdown(stops, sizes))
    robust = samples.assign(score=samples["score_robust"])
    r_summary, r_rec, r_gain, _, r_t1 = table1_of(
        answers.robust_tidy(samples).merge(tidy[[*CELL, "task", "seed"]], on=[*CELL, "task", "seed"]),
        robust, sizes, benchmarks, n_boot, boot_seed)
    agree = answers.agreement(samples)
    write_text(out / "table1_robust.csv", r_t1.to_csv(index=False))
    write_text(out / "scorer_agreement.csv", agree.to_csv(index=False))
    write_text(out / "table1_robust.md", tables.robust_markdown(r_t1, r_rec, r_summary, r_gain, sizes, agree,
                                                                answers.examples(samples)))
    fit, points = scaling.fit(samples, benchmarks, params, n_boot=n_boot, seed=boot_seed)
    across = scaling.slope_vs_params(fit)
    fit = fit.merge(across[["benchmark", "slope_per_ln_params"]], on="benchmark", how="left")
    write_text(out / "scaling_fit.csv", fit.to_csv(index=False))
    return fit, points


def variant_rows(results: Path, sizes, benchmarks, tidy, samples, summary, rec, variants: dict[str, list[str]],
                 seeds, n_boot: int, boot_seed: int) -> pd.DataFrame:
    """Per variant (elicit/variants.py), its cells as extra rows: the default grid with the cells the
    variant re-ran replaced by its own, so its Recovered % uses its own base/skyline where it re-ran them."""
    tasks = sorted({t for ts in benchmarks.values() for t in ts})
    out = []
    for v, configs in variants.items():
        vt, vs = collect(results, sizes, [f"{c}@{v}" for c in configs], tasks, seeds)
        if vt.empty:
            continue
        cells = vt[CELL].drop_duplicates()
        world = [pd.concat([df.merge(cells, on=CELL, how="left", indicator=True).query("_merge == 'left_only'")
                            .drop(columns="_merge"), new], ignore_index=True)
                 for df, new in ((tidy, vt), (samples, vs))]
        v_sum, v_rec, *_ = table1_of(*world, sizes, benchmarks, n_boot, boot_seed)
        keys = stats.KEYS
        rows = v_sum.merge(cells, on=CELL)[keys + ["mean", "stderr", "ci_lo", "ci_hi"]]
        rows = rows.merge(summary[keys + ["mean"]].rename(columns={"mean": "default_mean"}), on=keys, how="left")
        r = v_rec[v_rec["configuration"].isin(["lora", "full"])][keys + ["recovered_pct", "ci_lo", "ci_hi"]]
        rows = rows.merge(r.rename(columns={"ci_lo": "rec_ci_lo", "ci_hi": "rec_ci_hi"}), on=keys, how="left")
        d = rec[rec["configuration"].isin(["lora", "full"])][keys + ["recovered_pct"]]
        rows = rows.merge(d.rename(columns={"recovered_pct": "default_recovered_pct"}), on=keys, how="left")
        out.append(rows.assign(variant=v, diff=rows["mean"] - rows["default_mean"]))
    cols = ["variant", *stats.KEYS, "mean", "stderr", "ci_lo", "ci_hi", "default_mean", "diff", "recovered_pct",
            "rec_ci_lo", "rec_ci_hi", "default_recovered_pct"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def train_seed_tables(out: Path, results: Path, sizes, benchmarks, samples, summary, runs: dict[str, list[str]],
                      seeds, params, n_boot: int, boot_seed: int) -> None:
    """Table 1d, the claim and the scaling fit under training and evaluation noise combined
    (elicit/report/train_seeds.py): the first training seed's answers plus the extra seeds' runs
    (`runs`: variant tseed<k> -> the configurations it retrained)."""
    tasks = sorted({t for ts in benchmarks.values() for t in ts})
    extra = [collect(results, sizes, [f"{c}@{v}" for c in cfgs], tasks, seeds)[1].assign(train_run=v)
             for v, cfgs in runs.items()]
    both = pd.concat([samples.assign(train_run=train_seeds.FIRST), *extra], ignore_index=True)
    both = both[both["task"].isin(tasks)]
    if both.empty:
        t, claim_df, fit = pd.DataFrame(columns=train_seeds.COLUMNS), pd.DataFrame(columns=claim.COLUMNS), None
    else:
        t, reps = train_seeds.table(both, benchmarks, summary, n_boot, boot_seed)
        found = [s for s in sizes if any(k[0] == s for k in reps)]
        claim_df = claim.claim(reps, list(benchmarks), found, params)
        fit = scaling.fit_replicates(reps, params)[0]
    write_text(out / "table1_train_seeds.csv", t.to_csv(index=False))
    write_text(out / "table1_train_seeds.md", train_seeds.markdown(t, sizes))
    write_text(out / "claim_train_seeds.csv", claim_df.to_csv(index=False))
    write_text(out / "scaling_fit_train_seeds.csv", (fit if fit is not None else pd.DataFrame()).to_csv(index=False))


def run(results: Path, sizes: list[str], benchmarks: dict[str, list[str]], configs: list[str] | None = None,
        seeds: list[int] | None = None, paper: Path | None = PAPER_TABLE, figures: bool = True,
        out: Path | None = None, n_boot: int = 2000, boot_seed: int = 0, labels: dict | None = None,
        params: dict | None = None, variants: dict[str, list[str]] | None = None) -> dict[str, pd.DataFrame]:
    """Read results/{eval,models,train} for `sizes` (what exists), write the tables and figures to
    `out` (default: `results`, the workflow's own; a hand-run uses its own directory)."""
    out = Path(out) if out is not None else results
    grid.set_labels(labels or {})
    tidy, samples = collect(results, sizes, configs, sorted({t for ts in benchmarks.values() for t in ts}), seeds)
    if tidy.empty:
        raise SystemExit(f"aggregate: no evaluation results under {results}/eval for sizes {sizes}")
    summary, rec, gain_ci, tasks_summary, t1 = table1_of(tidy, samples, sizes, benchmarks, n_boot, boot_seed)
    paper_df = tables.load_paper(paper) if paper is not None and Path(paper).exists() else None
    cmp = tables.compare_paper(summary, paper_df if paper_df is not None else
                               pd.DataFrame(columns=stats.KEYS + ["paper_mean", "paper_stderr"]), sizes)
    gain = stats.gains(summary, selections(results, sizes, configs))
    curve = curves(results, sizes, configs)

    for name, df in (("tidy.parquet", tidy), ("samples.parquet", samples)):
        with atomic_path(out / name, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
    for name, df in (("table1.csv", t1), ("summary.csv", summary), ("summary_tasks.csv", tasks_summary),
                     ("recovered.csv", rec), ("gains.csv", gain_ci), ("paper_comparison.csv", cmp),
                     ("val_loss_gain.csv", gain)):
        write_text(out / name, df.to_csv(index=False))
    var = variant_rows(results, sizes, benchmarks, tidy, samples, summary, rec, variants or {}, seeds, n_boot,
                       boot_seed)
    write_text(out / "variants.csv", var.to_csv(index=False))
    write_text(out / "table1.md", tables.markdown(t1, rec) + tables.intervals_markdown(summary, gain_ci, rec, sizes)
               + tables.variants_markdown(var, sizes))
    write_text(out / "table1.tex", tables.latex(t1, rec))
    fit = hidden(out, tidy, samples, sizes, benchmarks, n_boot, boot_seed, params)
    claim_df = claim.from_samples(samples, benchmarks, sizes, params, n_boot=n_boot, seed=boot_seed)
    write_text(out / "claim.csv", claim_df.to_csv(index=False))
    train_seed_tables(out, results, sizes, benchmarks, samples, summary,
                      {v: c for v, c in (variants or {}).items() if train_seed(v) is not None}, seeds, params,
                      n_boot, boot_seed)
    paper_sizes = list(dict.fromkeys(paper_df["size"])) if paper_df is not None else []
    write_text(out / "paper_comparison.md", tables.comparison_markdown(cmp, paper_sizes))
    if figures:
        from elicit.report import figures as fg

        fg.all_figures(out / "figures", sizes, list(benchmarks), rec=rec, gain=gain, summary=summary, cmp=cmp,
                       paper_sizes=paper_sizes, curves=curve, selections=selections(results, sizes, configs),
                       scaling=fit, claim_table=claim_df)
    return {"tidy": tidy, "samples": samples, "tasks": tasks_summary, "summary": summary, "recovered": rec,
            "gains": gain_ci, "table1": t1, "comparison": cmp, "gain": gain, "curves": curve,
            "claim": claim_df}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="the workflow's results directory (read)")
    ap.add_argument("--sizes", nargs="+", required=True)
    ap.add_argument("--benchmarks", nargs="+", required=True, help="NAME=task1,task2 ...")
    ap.add_argument("--configs", nargs="+", default=None,
                    help="configurations to read (base skyline lora full-N ...); default: all found")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds to read; default: all found")
    ap.add_argument("--paper", default=str(PAPER_TABLE), help="the paper's Table 1 as CSV ('' = none)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates of the 95 %% intervals")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--labels-json", default="{}", help="table/figure names of the configurations, e.g. "
                    "'{\"base\": \"Tiny base (demo)\"}' (the config's `labels`; default: the paper's)")
    ap.add_argument("--params", nargs="*", default=[], help="SIZE=N parameter counts (the scaling fit's x)")
    ap.add_argument("--variants", nargs="*", default=[],
                    help="NAME=config1,config2: a variant and the configurations it re-ran (cells <config>@<NAME>)")
    ap.add_argument("--out", default=None, help="where the tables and figures go (default: <results>/adhoc, "
                    "so a hand-run never overwrites the workflow's own results/table1.*; the workflow "
                    "passes --out results)")
    args = ap.parse_args(argv)
    benchmarks = dict((b.split("=", 1)[0], b.split("=", 1)[1].split(",")) for b in args.benchmarks)
    dest = Path(args.out) if args.out else Path(args.results) / "adhoc"
    out = run(Path(args.results), args.sizes, benchmarks, args.configs, args.seeds,
              Path(repo_path(args.paper)) if args.paper else None, figures=not args.no_figures, out=dest,
              n_boot=args.bootstrap, labels=json.loads(args.labels_json),
              params={p.split("=", 1)[0]: float(p.split("=", 1)[1]) for p in args.params},
              variants={v.split("=", 1)[0]: v.split("=", 1)[1].split(",") for v in args.variants})
    print(out["table1"].to_string(index=False))
    print(f"\nTable 1: {dest}/table1.csv, .md, .tex; paper comparison: "
          f"{dest}/paper_comparison.md; figures: {dest}/figures/")


if __name__ == "__main__":
    main()
