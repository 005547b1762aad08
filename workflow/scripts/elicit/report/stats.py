"""The numbers of Table 1, Recovered % and the gains, from the tidy per-seed scores.

  task_stats   per (cell, task): mean and s.e. over the seeds (sample s.d. / sqrt(k))
  pool         the paper's rule for a benchmark pooling tasks: n-weighted mean of the task means,
               s.e. = sqrt(sum((n_t/N)^2 se_t^2))
  recovered    (trained - base) / (skyline - base) x 100, and LoRA vs full: (lora - base) /
               (full with the most examples - base) x 100 (the paper's "70-80 %")
  gains        trained - base per full finetune, beside its validation-loss decrease
  with_intervals   the paired-bootstrap 95 % intervals of bootstrap_ci.py merged in
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from elicit import grid

KEYS = ["size", "configuration", "train_examples", "benchmark"]
REC_COLS = KEYS + ["recovered_pct", "undefined", "gap", "gap_z"]


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
    return pd.DataFrame(rows, columns=REC_COLS)


def order(df: pd.DataFrame, sizes: list[str]) -> pd.DataFrame:
    df = df.assign(_s=df["size"].map({s: i for i, s in enumerate(sizes)}),
                   _c=df["configuration"].map(grid.ORDER))
    return df.sort_values(["_s", "_c", "train_examples"]).drop(columns=["_s", "_c"]).reset_index(drop=True)


def gains(summary: pd.DataFrame, sel: pd.DataFrame) -> pd.DataFrame:
    """Per full finetune and benchmark: gain = mean(trained) − mean(base), with its val_loss_decrease."""
    cols = ["size", "train_examples", "benchmark", "gain", "val_loss_decrease"]
    if summary.empty or sel.empty:
        return pd.DataFrame(columns=cols)
    base = summary[summary["configuration"] == "base"][["size", "benchmark", "mean"]].rename(columns={"mean": "base"})
    full = summary[summary["configuration"] == "full"].merge(base, on=["size", "benchmark"])
    full["gain"] = full["mean"] - full["base"]
    return full.merge(sel, on=["size", "configuration", "train_examples"])[cols]


NEEDS_SUBSETS = "needs >= 2 subsets"


def _keys_as_objects(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({k: object for k in ("size", "configuration", "benchmark") if k in df.columns})
    return df.assign(train_examples=df["train_examples"].astype("Int64")) if "train_examples" in df else df


def with_intervals(summary: pd.DataFrame, rec: pd.DataFrame, boot: dict | None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Merge bootstrap_ci's intervals in: every score (summary.ci_lo/ci_hi), every Recovered %
    (its interval, its denominator's, undefined_ci, reason), the LoRA-vs-full rows appended to
    `rec` (configuration "lora_vs_full", train_examples = the full finetune's), and the gains."""
    nan = float("nan")
    gains_cols = KEYS + ["gain", "ci_lo", "ci_hi"]
    extra = {"ci_lo": nan, "ci_hi": nan, "denom_lo": nan, "denom_hi": nan, "undefined_ci": False,
             "reason": "no per-problem samples: no interval"}
    if boot is None:
        return summary.assign(ci_lo=nan, ci_hi=nan), rec.assign(**extra), pd.DataFrame(columns=gains_cols)
    scores = _keys_as_objects(boot["scores"])[KEYS + ["ci_lo", "ci_hi"]]
    summary = _keys_as_objects(summary).merge(scores, on=KEYS, how="left")
    ci = _keys_as_objects(boot["recovered"])[KEYS + list(extra)]
    rec = _keys_as_objects(rec).merge(ci, on=KEYS, how="left")
    lvf = _keys_as_objects(boot["lora_vs_full"].rename(columns={"full_train_examples": "train_examples",
                                                                "lora_vs_full_pct": "recovered_pct"}))
    lvf = lvf.assign(configuration="lora_vs_full", undefined=lvf["recovered_pct"].isna(), gap=nan, gap_z=nan)
    # one subset (a pilot): the only full finetune is no stand-in for the full finetune on the whole data
    n_full = summary[summary["configuration"] == "full"].groupby(["size", "benchmark"])["train_examples"].nunique()
    one = [n_full.get((s, b), 0) < 2 for s, b in zip(lvf["size"], lvf["benchmark"])]
    if any(one):
        lvf = lvf.astype({"reason": object})
        lvf.loc[one, ["recovered_pct", "ci_lo", "ci_hi"]] = nan
        lvf.loc[one, ["undefined", "undefined_ci"]] = True
        lvf.loc[one, "reason"] = NEEDS_SUBSETS + ": LoRA (every row) against a full finetune on one subset only"
    rec = pd.concat([rec, lvf[rec.columns]], ignore_index=True) if not lvf.empty else rec
    gains_ci = _keys_as_objects(boot["gains"])[gains_cols]
    return summary, rec, gains_ci
