"""The scaling law the paper argues but never fits: Recovered % against log2(training examples).

Per size and benchmark, an ordinary least-squares line through the full finetunes,
    Recovered % = a + b * log2(examples),
b in points per doubling of the data. Its 95 % interval is the percentile interval of b over the
paired bootstrap of bootstrap_ci.replicates (problems resampled, the same draws for base, skyline
and every finetune of the size), refitting the line on each replicate's Recovered %. From the line:
the examples for 50 % recovery, 2^((50 - a) / b), with the interval of the replicates; "not reached
within the data" where the line does not cross 50 % inside the examples trained on (or b <= 0),
"above 50 % at the smallest subset" where it is already there.
Across sizes: the slope b against log(parameters) (a line through the sizes' slopes).

Exploratory: the claim itself is tested in elicit/report/claim.py (results/claim.csv). A size whose
skyline − base interval contains 0 has no defined Recovered % and leaves the fit: its row says why
(`left_out`) and has no slope, so it cannot decide the line across sizes.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from elicit.report import bootstrap_ci

COLUMNS = ["size", "benchmark", "params", "points", "slope", "slope_lo", "slope_hi", "intercept",
           "examples_50", "examples_50_lo", "examples_50_hi", "examples_50_note", "left_out"]
NOT_REACHED = "not reached within the data"
ALREADY = "above 50 % at the smallest subset"
NEEDS = "needs >= 2 subsets"  # a pilot with one subset: no line to fit (its row says so)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS per row of y [R, K] (NaN rows give NaN): (intercepts [R], slopes [R])."""
    xm = x - x.mean()
    b = (y - y.mean(axis=1, keepdims=True)) @ xm / (xm @ xm)
    return y.mean(axis=1) - b * x.mean(), b


def _n50(a, b, lo_n: float, hi_n: float) -> np.ndarray:
    """2^((50 - a)/b) where the line crosses 50 % inside [lo_n, hi_n], else NaN."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.power(2.0, (50.0 - a) / b)
    return np.where((b > 0) & (n >= lo_n) & (n <= hi_n), n, np.nan)


def _undefined(rep: bootstrap_ci.Replicates, level: float = 0.95) -> str:
    """Why Recovered % is undefined (skyline − base interval contains 0), else ""."""
    idx = {k: i for i, (k, _) in enumerate(rep.configs) if k in ("base", "skyline")}
    if len(idx) < 2:
        return ""
    d = rep.reps[:, idx["skyline"]] - rep.reps[:, idx["base"]]
    lo, hi = np.nanpercentile(d, [50 * (1 - level), 50 * (1 + level)])
    den = rep.point[idx["skyline"]] - rep.point[idx["base"]]
    return "" if lo > 0 or hi < 0 else (f"Recovered % undefined: skyline − base = {den:.2f}, 95 % interval "
                                          f"[{lo:.2f}, {hi:.2f}] contains 0")


def _recovered(rep: bootstrap_ci.Replicates) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(examples [K], point Recovered % [K], replicates [R, K]) of the full finetunes, or None."""
    idx = {c: i for i, c in enumerate(rep.configs)}
    base = [i for (k, _), i in idx.items() if k == "base"]
    sky = [i for (k, _), i in idx.items() if k == "skyline"]
    full = sorted((n, i) for (k, n), i in idx.items() if k == "full")
    if not base or not sky or len(full) < 2:
        return None
    cols = [i for _, i in full]
    with np.errstate(divide="ignore", invalid="ignore"):
        point = (rep.point[cols] - rep.point[base[0]]) / (rep.point[sky[0]] - rep.point[base[0]]) * 100
        reps = ((rep.reps[:, cols] - rep.reps[:, [base[0]]]) / (rep.reps[:, [sky[0]]] - rep.reps[:, [base[0]]])
                * 100)
    reps[~np.isfinite(reps)] = np.nan
    return np.array([n for n, _ in full], float), point, reps


def fit(samples: pd.DataFrame, benchmarks: dict[str, list[str]], params: dict[str, float] | None = None,
        n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(the table of COLUMNS, {(size, benchmark): (examples, Recovered % point)} for the figure)."""
    if samples.empty:
        return pd.DataFrame(columns=COLUMNS), {}
    return fit_replicates(bootstrap_ci.replicates(samples, benchmarks, n_boot=n_boot, seed=seed,
                                                  resample_seeds=False), params)


def fit_replicates(reps: dict, params: dict[str, float] | None = None) -> tuple[pd.DataFrame, dict]:
    """fit() on {(size, benchmark): Replicates} (bootstrap_ci.replicates, or claim.table_replicates)."""
    params, rows, points = params or {}, [], {}
    for (size, bench), rep in reps.items():
        subsets = sorted(n for k, n in rep.configs if k == "full")
        why = _undefined(rep) or (NEEDS + f" (full finetunes: {', '.join(map(str, subsets)) or 'none'})"
                                  if len(subsets) < 2 else "")
        if why:
            rows.append({"size": size, "benchmark": bench, "params": params.get(size, math.nan), "left_out": why})
            continue
        got = _recovered(rep)
        if got is None or not np.isfinite(got[1]).all():
            continue
        n, point, r = got
        x = np.log2(n)
        (a,), (b,) = _fit(x, point[None, :])
        ok = np.isfinite(r).all(axis=1)
        ra, rb = _fit(x, r[ok]) if ok.any() else (np.array([np.nan]), np.array([np.nan]))
        n50, n50_r = _n50(a, b, n.min(), n.max()), _n50(ra, rb, n.min(), n.max())
        lo, hi = (np.nanpercentile(rb, [2.5, 97.5]) if np.isfinite(rb).any() else (np.nan, np.nan))
        reached = np.isfinite(n50_r)
        n50_lo, n50_hi = (np.percentile(n50_r[reached], [2.5, 97.5]) if reached.mean() >= 0.975 else (np.nan, np.nan))
        note = "" if np.isfinite(n50) else ALREADY if a + b * x.min() >= 50 else NOT_REACHED
        if np.isfinite(n50) and not reached.mean() >= 0.975:
            note = f"upper end {NOT_REACHED} ({100 * (1 - reached.mean()):.0f} % of replicates)"
        rows.append({"size": size, "benchmark": bench, "params": params.get(size, math.nan), "points": len(n),
                     "slope": b, "slope_lo": lo, "slope_hi": hi, "intercept": a, "examples_50": float(n50),
                     "examples_50_lo": n50_lo, "examples_50_hi": n50_hi, "examples_50_note": note,
                     "left_out": ""})
        points[(size, bench)] = (n, point)
    return pd.DataFrame(rows, columns=COLUMNS), points


def slope_vs_params(table: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: the line slope = c + d * ln(parameters) through the sizes (needs 2 sizes)."""
    rows = []
    for bench, g in table.dropna(subset=["params", "slope"]).groupby("benchmark", sort=False):
        if g["size"].nunique() < 2:
            continue
        (c,), (d,) = _fit(np.log(g["params"].to_numpy(float)), g["slope"].to_numpy(float)[None, :])
        rows.append({"size": "all", "benchmark": bench, "slope_per_ln_params": d, "intercept": c,
                     "points": len(g)})
    return pd.DataFrame(rows, columns=["size", "benchmark", "slope_per_ln_params", "intercept", "points"])
