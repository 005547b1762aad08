"""Training noise and evaluation noise combined (issue 30): Table 1d, the claim and the fit under both.

At 29-58 examples a finetune's score moves with its training seed (data order, LoRA init) as much as
with the evaluation's; Table 1 (the paper's statistic) sees only the evaluation seeds of the first
training seed. train.seeds adds runs `<config>@tseed<k>` (elicit/variants.py); here they are combined.

Point estimate of a configuration: the mean over its training seeds of each run's Table 1 score
(base and skyline, never trained, have one run).

Interval: a hierarchical bootstrap, paired like bootstrap_ci's. Per size and benchmark, a replicate
  1. resamples every task's problems (and the evaluation seeds where resample_seeds; Table 1b keeps
     them, so does Table 1d by default): one draw for every configuration AND every training seed,
     bootstrap_ci's own stream, so gains stay paired by problem;
  2. resamples each trained configuration's training seeds with replacement (multinomial counts over
     the runs it has; its own stream, independent between configurations: distinct trainings);
  a configuration's replicate = the count-weighted mean of its runs' replicates under the draw of 1.
A configuration with one run keeps its replicates as they are: with no extra seeds, or with runs
that agree exactly, the intervals are Table 1b's. With 2-3 training seeds the training level is a
coarse distribution (2 runs: both, either alone): read the interval as a lower bound of the spread.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from elicit.report import bootstrap_ci
from elicit.report.bootstrap_ci import Replicates
from elicit.report.stats import order
from elicit.report.tables import _ci, md_escape, row_label

COLUMNS = [*bootstrap_ci.KEY, "train_seeds", "mean", "ci_lo", "ci_hi", "first_mean", "first_ci_lo", "first_ci_hi",
           "widening", "recovered_pct", "rec_ci_lo", "rec_ci_hi"]  # Table 1d (table1_train_seeds.csv)
FIRST = ""  # train_run of the first training seed's runs (and of base and skyline)
METHOD = ("Problems (and evaluation seeds as Table 1b does) resampled with one draw shared by every run of a "
          "size; each trained configuration's training seeds resampled with replacement, independently; a "
          "replicate's score is the mean of the drawn runs' scores. Point: mean over training seeds.")


def _world(samples: pd.DataFrame, run: str) -> pd.DataFrame:
    """The answers of one training seed: base and skyline (the first run's) and the trained runs of
    that seed, in the input's order (so every world factorizes problems alike: base's rows first)."""
    trained = samples["configuration"].isin(["lora", "full"])
    return samples[(samples["train_run"] == run) | (~trained & (samples["train_run"] == FIRST))]


def replicates(samples: pd.DataFrame, benchmarks: dict[str, list[str]], n_boot: int = 2000, seed: int = 0,
               *, resample_seeds: bool = False) -> dict[tuple[str, str], Replicates]:
    """{(size, benchmark): Replicates} combining the training seeds (column train_run: FIRST or the
    variant `tseed<k>`) with the evaluation's noise (module docstring)."""
    runs = [FIRST] + sorted(set(samples["train_run"]) - {FIRST})
    worlds = {r: bootstrap_ci.replicates(_world(samples, r), benchmarks, n_boot, seed, resample_seeds=resample_seeds)
              for r in runs}
    out = {}
    for key, first in worlds[FIRST].items():
        size, bench = key
        configs = list(first.configs) + [c for r in runs[1:] if key in worlds[r] for c in worlds[r][key].configs
                                         if c not in first.configs]
        configs = list(dict.fromkeys(configs))
        point, reps = np.zeros(len(configs)), np.zeros((n_boot, len(configs)))
        for j, c in enumerate(configs):
            have = [(w[key].point[i], w[key].reps[:, i]) for r in runs if key in (w := worlds[r])
                    and c in w[key].configs for i in [w[key].configs.index(c)]]
            if c[0] not in ("lora", "full"):
                have = have[:1]  # base, skyline: one run, the same in every world
            point[j] = np.mean([p for p, _ in have])
            if len(have) == 1:
                reps[:, j] = have[0][1]
                continue
            rng = np.random.default_rng([seed, zlib.crc32(size.encode()), zlib.crc32(bench.encode()),
                                         zlib.crc32(f"{c[0]}-{c[1]}".encode()), 1])
            w = rng.multinomial(len(have), np.full(len(have), 1 / len(have)), size=n_boot).astype(float)
            reps[:, j] = sum(w[:, t] * r for t, (_, r) in enumerate(have)) / len(have)
        out[key] = Replicates(configs, point, reps)
    return out


def runs_per_config(samples: pd.DataFrame) -> pd.DataFrame:
    """Per (size, configuration, train_examples): how many training seeds, and their scores' runs."""
    cells = samples.drop_duplicates(["size", "configuration", "train_examples", "train_run"])
    return (cells.groupby(["size", "configuration", "train_examples"], dropna=False)["train_run"]
            .agg(lambda r: sorted(r)).rename("train_runs").reset_index())


def table(samples: pd.DataFrame, benchmarks: dict[str, list[str]], eval_only: pd.DataFrame, n_boot: int = 2000,
          seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(Table 1d, the combined replicates): per size, configuration and benchmark the mean over
    training seeds with its combined 95 % interval, beside the first seed's (Table 1b: eval_only,
    bootstrap_ci's scores frame), and Recovered % with its combined interval."""
    reps = replicates(samples, benchmarks, n_boot, seed)
    fr = bootstrap_ci.frames(reps, list(benchmarks))
    keys = bootstrap_ci.KEY
    first = eval_only[keys + ["mean", "ci_lo", "ci_hi"]].rename(
        columns={"mean": "first_mean", "ci_lo": "first_ci_lo", "ci_hi": "first_ci_hi"})
    rec = fr["recovered"][keys + ["recovered_pct", "ci_lo", "ci_hi"]].rename(
        columns={"ci_lo": "rec_ci_lo", "ci_hi": "rec_ci_hi"})
    n = runs_per_config(samples)
    n["train_seeds"] = n.pop("train_runs").map(len)
    out = (fr["scores"].merge(n, on=keys[:3], how="left").merge(first, on=keys, how="left")
           .merge(rec, on=keys, how="left"))
    out["widening"] = (out["ci_hi"] - out["ci_lo"]) / (out["first_ci_hi"] - out["first_ci_lo"])
    return out[COLUMNS], reps


def markdown(t: pd.DataFrame, sizes: list[str]) -> str:
    """Table 1d: every configuration's score over its training seeds with the combined interval, beside
    the first seed's (Table 1b), and Recovered % under both noises; the method stated."""
    extra = not t.empty and (t["train_seeds"] > 1).any()
    lines = ["# Table 1d. Training and evaluation noise combined", "",
             "Table 1 is the paper's statistic on the first training seed; here every configuration trained "
             "with several seeds (train.seeds, cells `<configuration>@tseed<k>`) is the mean over its training "
             "seeds, with a 95 % interval of both noises. " + METHOD, "",
             "" if extra else "No configuration has a second training seed (train.seeds has one): the intervals "
             "are Table 1b's.", "",
             "| Model size | Configuration | Benchmark | Training seeds | Score (%), both noises | First seed (%), "
             "evaluation noise | Width ratio | Recovered %, both noises |", "|---|---|---|---|---|---|---|---|"]
    for _, r in order(t, sizes).iterrows() if not t.empty else []:
        rec = "—" if pd.isna(r["recovered_pct"]) else _ci(r["recovered_pct"], r["rec_ci_lo"], r["rec_ci_hi"], "{:.0f}")
        first = "—" if pd.isna(r["first_mean"]) else _ci(r["first_mean"], r["first_ci_lo"], r["first_ci_hi"])
        wide = "—" if pd.isna(r["widening"]) else f"{r['widening']:.2f}"
        lines.append(f"| {r['size']} | {md_escape(row_label(r))} | {r['benchmark']} | {r['train_seeds']} | "
                     f"{_ci(r['mean'], r['ci_lo'], r['ci_hi'])} | {first} | {wide} | {rec} |")
    return "\n".join(lines) + "\n"
