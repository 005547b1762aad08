"""Paired bootstrap confidence intervals for Table 1 scores, gains, Recovered % and LoRA vs full.

Point estimates (the definitions of aggregate.py):
  score(config, task, seed) = 100 * mean of `score` over the task's problems;
  score(config, task)       = mean over the seeds the configuration has for that task;
  score(config, benchmark)  = sum_t n_t * score(config, t) / sum_t n_t, n_t = problems of task t;
  gain        = score(trained) - score(base)                                  (lora, full)
  Recovered % = (score(trained) - score(base)) / (score(skyline) - score(base)) * 100
  LoRA vs full = (score(lora) - score(base)) / (score(full, largest n) - score(base)) * 100.

Bootstrap (after Miller 2024, "Adding Error Bars to Evals", arXiv 2411.00640: resample the
questions, and compare models on the same questions). Per size and benchmark, one replicate draws
the seeds with replacement (counts W_seed [R, S] over the seed values of the size) and, for each
task, its problems with replacement (counts W_prob [R, P]); the SAME draws serve every
configuration of the size, so differences and ratios are paired by problem and by seed value.
A replicate's task score is sum_s W_seed[s] * sum_p W_prob[p] * X[c, s, p] / (P * sum_s W_seed[s])
(= einsum('rs,csp,rp->rc') / (S*P) when every seed is there), 100 * that in %; every statistic
above is then computed on the replicate scores, and its interval is the (1-level)/2 and
(1+level)/2 percentile of the replicates (percentile bootstrap).

Choices:
- Missing seeds: a configuration lacking some seed values of its size uses the same multinomial
  seed counts restricted to the seeds it has (its seed-weighted mean renormalised by those counts).
  A replicate that drew none of its seeds leaves it undefined (NaN) and that replicate is dropped
  from its statistics: its interval is the bootstrap distribution conditional on at least one of
  its seeds being drawn (with 3 of 4 seeds that drops 0.4% of the replicates, with 1 of 4, 32%).
- A configuration lacking a whole task of a benchmark has no row for that benchmark.
- Every (configuration, task, seed) present must have every problem of the task (the union of the
  doc_ids seen for that size and task) exactly once; otherwise ValueError (average repeated
  generations of a problem before calling).
- A ratio whose denominator interval contains 0 (or whose point denominator is 0) is
  `undefined_ci` with a NaN interval and a `reason`; its point estimate is still reported.
  Replicates with a denominator of exactly 0 are dropped from a defined ratio's interval.
- LoRA vs full uses the full finetune with the most train_examples (and, if a size had several
  LoRAs, the one with the most).
- Random streams: numpy Generator seeded by (seed, crc32(size), crc32(benchmark)), so a size's
  intervals do not depend on which other sizes are in the input.
- Calibration (tests/test_bootstrap_ci.py, 300 simulated 30-problem x 4-seed evaluations with a
  known expected score): resampling problems AND seeds counts the per-answer noise twice (in the
  problems' means and in the seeds' means), so it is conservative: coverage 0.98-0.99, scores'
  intervals ~1.2x, gains' ~1.5x the ideal width. resample_seeds=False (problems only, every seed
  kept once) is about right: coverage 0.92-0.96, width 0.95-0.98x; the percentile interval over
  ~30 problems is a little anti-conservative ((P-1)/P variance, normal not t quantiles).
"""
from __future__ import annotations

import warnings
import zlib
from typing import NamedTuple

import numpy as np
import pandas as pd

from elicit import grid

CONFIG_ORDER = grid.ORDER
REQUIRED = ["size", "configuration", "train_examples", "task", "seed", "doc_id", "score"]
KEY = ["size", "configuration", "train_examples", "benchmark"]
RATIO = ["ci_lo", "ci_hi", "denom_lo", "denom_hi", "undefined_ci", "reason"]
COLUMNS = {
    "scores": KEY + ["mean", "ci_lo", "ci_hi"],
    "gains": KEY + ["gain", "ci_lo", "ci_hi"],
    "recovered": KEY + ["recovered_pct", "ci_lo", "ci_hi", "denom", "denom_lo", "denom_hi", "undefined_ci",
                        "reason"],
    "lora_vs_full": ["size", "benchmark", "full_train_examples", "lora_vs_full_pct"] + RATIO,
}
NO_N = -1  # train_examples of base / skyline (NA) inside this module
SHIFT = 2 ** 40  # configuration key inside this module: CONFIG_ORDER code * SHIFT + train_examples + 1


class Replicates(NamedTuple):
    """One size and benchmark: configurations in row order, point estimates [C] and replicates [R, C]
    (in %); a replicate is NaN where the configuration drew none of its seeds."""
    configs: list[tuple[str, int]]  # (configuration, train_examples or NO_N)
    point: np.ndarray
    reps: np.ndarray


def _validate(samples: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in samples.columns]
    if missing:
        raise ValueError(f"bootstrap: samples lack columns {missing}")
    df = samples[REQUIRED].copy()
    df["size"], df["configuration"] = df["size"].astype(str), df["configuration"].astype(str)
    df["train_examples"] = df["train_examples"].astype("Int64").fillna(NO_N).astype(np.int64)
    df["score"] = df["score"].astype(float)
    unknown = set(df["configuration"]) - set(CONFIG_ORDER)
    if unknown:
        raise ValueError(f"bootstrap: unknown configurations {sorted(unknown)}; expected {list(CONFIG_ORDER)}")
    if not df["score"].between(0, 1).all():
        raise ValueError("bootstrap: score must be in [0, 1] (and not NaN)")
    dup = df.duplicated(REQUIRED[:-1])
    if dup.any():
        raise ValueError(f"bootstrap: a problem appears twice for one cell, e.g. {df[dup].iloc[0].to_dict()}; "
                         "average repeated generations first")
    df["_k"] = df["configuration"].map(CONFIG_ORDER).astype(np.int64) * SHIFT + df["train_examples"] + 1
    return df


def _task_tensor(sub: pd.DataFrame, keys: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X [C, S, P] (0 where a run is absent) and has [C, S] (the run is there) for one task."""
    ci = np.searchsorted(keys, sub["_k"].to_numpy())
    si = np.searchsorted(seeds, sub["seed"].to_numpy())
    pi, docs = pd.factorize(sub["doc_id"])
    X = np.zeros((len(keys), len(seeds), len(docs)))
    X[ci, si, pi] = sub["score"].to_numpy()
    count = np.zeros(X.shape[:2], int)
    np.add.at(count, (ci, si), 1)
    bad = np.argwhere((count > 0) & (count < len(docs)))
    if len(bad):
        c, s = bad[0]
        raise ValueError(f"bootstrap: {sub['size'].iloc[0]} {_decode(keys[c])} task {sub['task'].iloc[0]} seed "
                         f"{seeds[s]} has {count[c, s]} of the task's {len(docs)} problems")
    return X, count > 0


def _task_means(X: np.ndarray, has: np.ndarray, w_seed: np.ndarray, w_prob: np.ndarray) -> np.ndarray:
    """Task scores [R, C] in %: 100 * sum_s w_s sum_p w_p X[c,s,p] / (P * sum of w_s over c's seeds).

    The sums come first and the division last, so 0/1 scores give exact integer sums: two
    configurations with the same samples get bit-identical replicates (gain exactly 0)."""
    C, S, P = X.shape
    per_seed = (X.reshape(C * S, P) @ w_prob.T).reshape(C, S, -1)  # [C, S, R]
    num = np.einsum("csr,rs->rc", per_seed, w_seed)
    den = P * (w_seed @ has.T.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 100 * num / np.where(den > 0, den, 1), np.nan)


def _decode(key: int) -> tuple[str, int]:
    return list(CONFIG_ORDER)[int(key) // SHIFT], int(key) % SHIFT - 1


def _bench_replicates(parts: list[pd.DataFrame], size: str, bench: str, n_boot: int, seed: int,
                      resample_seeds: bool) -> Replicates:
    """Replicates of every configuration of one size on one benchmark, from its tasks' samples."""
    keys = np.unique(np.concatenate([p["_k"].to_numpy() for p in parts]))
    seeds = np.unique(np.concatenate([p["seed"].to_numpy() for p in parts]))
    S, C = len(seeds), len(keys)
    rng = np.random.default_rng([seed, zlib.crc32(size.encode()), zlib.crc32(bench.encode())])
    w_seed = rng.multinomial(S, np.full(S, 1 / S), size=n_boot).astype(float)
    if not resample_seeds:
        w_seed = np.ones_like(w_seed)
    point, reps, total, complete = np.zeros(C), np.zeros((n_boot, C)), 0, np.ones(C, bool)
    for sub in parts:
        X, has = _task_tensor(sub, keys, seeds)
        P = X.shape[2]
        w_prob = rng.multinomial(P, np.full(P, 1 / P), size=n_boot).astype(float)
        complete &= has.any(axis=1)
        point += P * _task_means(X, has, np.ones((1, S)), np.ones((1, P)))[0]
        reps += P * _task_means(X, has, w_seed, w_prob)
        total += P
    keep = np.flatnonzero(complete)
    return Replicates([_decode(k) for k in keys[keep]], point[keep] / total, reps[:, keep] / total)


def replicates(samples: pd.DataFrame, benchmarks: dict[str, list[str]], n_boot: int = 2000, seed: int = 0,
               *, resample_seeds: bool = True) -> dict[tuple[str, str], Replicates]:
    """{(size, benchmark): Replicates}, sizes in order of first appearance, benchmarks in dict order.
    A size lacking a whole task of a benchmark has no entry for that benchmark."""
    if n_boot < 1:
        raise ValueError("bootstrap: n_boot must be >= 1")
    df = _validate(samples)
    out = {}
    for size, ds in df.groupby("size", sort=False):
        by_task = dict(iter(ds.groupby("task", sort=False)))
        for bench, tasks in benchmarks.items():
            if all(t in by_task for t in tasks):
                out[(size, bench)] = _bench_replicates([by_task[t] for t in tasks], size, bench, n_boot, seed,
                                                       resample_seeds)
    return out


def _interval(reps: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of [R, K], ignoring NaN replicates (NaN if all are)."""
    q = 50 * (1 - level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(reps, [q, 100 - q], axis=0)
    return lo, hi


def _ratio(num_pt: float, den_pt: float, num_r: np.ndarray, den_r: np.ndarray, level: float,
           what: str) -> dict:
    """Point ratio (%), its interval, the denominator's interval; undefined if that contains 0."""
    (dlo,), (dhi,) = _interval(den_r[:, None], level)
    pct = num_pt / den_pt * 100 + 0.0 if den_pt != 0 else np.nan  # + 0.0: no -0.0
    if not (dlo > 0 or dhi < 0) or den_pt == 0:
        reason = f"{what} = {den_pt:.2f}, {level:.0%} interval [{dlo:.2f}, {dhi:.2f}] not clear of 0"
        return {"pct": pct, "ci_lo": np.nan, "ci_hi": np.nan, "denom_lo": dlo, "denom_hi": dhi,
                "undefined_ci": True, "reason": reason}
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = num_r / den_r * 100
    (lo,), (hi,) = _interval(np.where(np.isfinite(ratio), ratio, np.nan)[:, None], level)
    return {"pct": pct, "ci_lo": lo, "ci_hi": hi, "denom_lo": dlo, "denom_hi": dhi, "undefined_ci": False,
            "reason": ""}


def _find(configs: list, name: str) -> list[int]:
    return [i for i, k in enumerate(configs) if k[0] == name]


def _rows(rep: Replicates, size: str, bench: str, level: float, rows: dict) -> None:
    """Append this size and benchmark's rows of every frame to rows[frame]."""
    pt, R, cfg = rep.point, rep.reps, rep.configs
    lo, hi = _interval(R, level)
    key = [{"size": size, "configuration": c, "train_examples": n, "benchmark": bench} for c, n in cfg]
    for i in range(len(cfg)):
        rows["scores"].append(key[i] | {"mean": pt[i], "ci_lo": lo[i], "ci_hi": hi[i]})
    base, sky, lora, full = (_find(cfg, c) for c in CONFIG_ORDER)
    if len(base) > 1 or len(sky) > 1:
        raise ValueError(f"bootstrap: {size} has more than one base or skyline configuration")
    if not base:
        return
    b = base[0]
    for i in lora + full:
        glo, ghi = _interval(R[:, [i]] - R[:, [b]], level)
        rows["gains"].append(key[i] | {"gain": pt[i] - pt[b], "ci_lo": glo[0], "ci_hi": ghi[0]})
        if sky:
            s = sky[0]
            r = _ratio(pt[i] - pt[b], pt[s] - pt[b], R[:, i] - R[:, b], R[:, s] - R[:, b], level, "skyline - base")
            rows["recovered"].append(key[i] | {"recovered_pct": r.pop("pct"), "denom": pt[s] - pt[b]} | r)
    if lora and full:
        i, f = lora[-1], full[-1]  # the LoRA and the full finetune with the most examples
        r = _ratio(pt[i] - pt[b], pt[f] - pt[b], R[:, i] - R[:, b], R[:, f] - R[:, b], level,
                   f"full({cfg[f][1]}) - base")
        rows["lora_vs_full"].append({"size": size, "benchmark": bench, "full_train_examples": cfg[f][1],
                                     "lora_vs_full_pct": r.pop("pct")} | r)


def _frame(rows: list[dict], name: str, sizes: list, benches: list) -> pd.DataFrame:
    """Rows in the documented order and dtypes (train_examples Int64, NA for base/skyline)."""
    df = pd.DataFrame(rows, columns=COLUMNS[name])
    for col in ("train_examples", "full_train_examples"):
        if col in df:
            df[col] = df[col].astype("Int64").mask(df[col] == NO_N)
    if "configuration" in df and len(df):
        order = pd.DataFrame({"s": df["size"].map(sizes.index), "c": df["configuration"].map(CONFIG_ORDER),
                              "n": df["train_examples"].fillna(NO_N), "b": df["benchmark"].map(benches.index)})
        df = df.iloc[np.lexsort([order[k].to_numpy() for k in "bncs"])].reset_index(drop=True)
    floats = [c for c in df.columns if c not in KEY + ["full_train_examples", "undefined_ci", "reason"]]
    df[floats] = df[floats].astype(float)
    for col, dtype in (("undefined_ci", bool), ("reason", str), ("size", str), ("configuration", str),
                       ("benchmark", str)):
        if col in df:
            df[col] = df[col].astype(dtype)
    return df


def bootstrap(samples: pd.DataFrame, benchmarks: dict[str, list[str]], n_boot: int = 2000,
              seed: int = 0, level: float = 0.95, *, resample_seeds: bool = True) -> dict[str, pd.DataFrame]:
    """Point estimates and paired percentile-bootstrap intervals (see the module docstring).

    Returns frames "scores", "gains", "recovered", "lora_vs_full" (columns in COLUMNS); rows by size
    (first seen), configuration (base, skyline, lora, full), train_examples, then benchmark.
    resample_seeds=False keeps every seed once (problems only are resampled, seeds averaged)."""
    if not 0 < level < 1:
        raise ValueError("bootstrap: level must be in (0, 1)")
    reps = replicates(samples, benchmarks, n_boot, seed, resample_seeds=resample_seeds) if len(samples) else {}
    return frames(reps, list(benchmarks), level)


def frames(reps: dict[tuple[str, str], Replicates], benchmarks: list[str], level: float = 0.95) -> dict[str, pd.DataFrame]:
    """bootstrap()'s frames from replicates already drawn (e.g. elicit/report/train_seeds.py's)."""
    rows = {name: [] for name in COLUMNS}
    for (size, bench), rep in reps.items():
        _rows(rep, size, bench, level, rows)
    sizes = list(dict.fromkeys(s for s, _ in reps))
    return {name: _frame(r, name, sizes, list(benchmarks)) for name, r in rows.items()}
