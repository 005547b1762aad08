"""The paper's claim as a statistic (results/claim.csv): does the smallest training set that gives a
positive gain fall as the model grows ("the minimum dataset size required for positive performance
gains appears to decrease"), and how much of the skyline does the smallest set recover.

Per size and benchmark, from the replicates of bootstrap_ci (problems resampled, paired: the same
draws serve base, skyline and every finetune) or, for a table of mean ± s.e. only (the paper's
Table 1), from independent normal draws per cell (`table_replicates`: unpaired, so conservative):
  smallest_positive  the smallest subset n* such that the gain over base (full(n) − base) has a 95 %
                     interval above 0 for n* AND every larger subset ("none" if the largest has not).
                     The rule for the six nested comparisons is the fixed-sequence test: test from the
                     largest subset down, each at one-sided 2.5 %, stop at the first that is not
                     positive. It controls the family-wise error at 2.5 % with no adjustment, because
                     the order is fixed before the data (more data is expected to help more).
                     positive_subsets lists every subset positive on its own (unadjusted), for reference.
  gain, gain_lo/hi   the gain at n* with its interval
  recovered_at_min   Recovered % at the smallest subset trained, with its interval; undefined (blank,
                     with recovered_note saying why) where the skyline − base interval contains 0:
                     such a cell leaves every fit (also elicit/report/scaling.py)
  n50                censored: "<= n_min" (>= 50 % from the smallest subset on), "> n_max" (the
                     largest subset is below 50 %), else the first subset from which every larger one
                     recovers >= 50 % (point estimates)
  verdict (row "verdict", size "all") per benchmark: sizes by parameter count, "none" counting as
                     above every subset: "falls" (never rises, falls at least once), "stays", or
                     "rises" (against the claim), with the sequence as evidence.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from elicit.report import bootstrap_ci
from elicit.report.bootstrap_ci import NO_N, Replicates

COLUMNS = ["benchmark", "row", "size", "params", "subsets", "smallest_positive", "gain", "gain_lo", "gain_hi",
           "positive_subsets", "n_min", "recovered_at_min", "rec_lo", "rec_hi", "recovered_note", "n50",
           "verdict", "evidence"]
RULE = ("fixed sequence: from the largest subset down, each gain's 95 % interval above 0, "
        "stop at the first that is not")
NONE = "none"


def _interval(r: np.ndarray, level: float) -> tuple[float, float]:
    (lo,), (hi,) = bootstrap_ci._interval(r[:, None], level)
    return float(lo), float(hi)


def table_replicates(paper: pd.DataFrame, n_draws: int = 20000, seed: int = 0) -> dict[tuple[str, str], Replicates]:
    """{(size, benchmark): Replicates} from mean ± s.e. (tables.load_paper's long frame): each cell an
    independent normal N(mean, se²) — the unpaired normal approximation, conservative for gains
    against a base evaluated on the same problems."""
    rng = np.random.default_rng(seed)
    out = {}
    for (size, bench), g in paper.groupby(["size", "benchmark"], sort=False):
        configs = [(c, NO_N if pd.isna(n) else int(n)) for c, n in zip(g["configuration"], g["train_examples"])]
        mean, se = g["paper_mean"].to_numpy(float), g["paper_stderr"].to_numpy(float)
        out[(str(size), str(bench))] = Replicates(configs, mean, mean + se * rng.standard_normal((n_draws, len(g))))
    return out


def _n50(ns: list[int], rec: list[float]) -> str:
    """Censored examples for 50 % recovery from point estimates (ns ascending)."""
    first = None
    for n, r in sorted(zip(ns, rec), reverse=True):
        if not r >= 50:
            break
        first = n
    if first is None:
        return f"> {max(ns)}"
    return f"<= {first}" if first == min(ns) else str(first)


def size_row(rep: Replicates, level: float = 0.95) -> dict | None:
    """The claim's row of one size and benchmark (None without a base or a full finetune)."""
    idx = {c: i for i, c in enumerate(rep.configs)}
    base = [i for (k, _), i in idx.items() if k == "base"]
    sky = [i for (k, _), i in idx.items() if k == "skyline"]
    full = sorted((n, i) for (k, n), i in idx.items() if k == "full")
    if not base or not full:
        return None
    b, pt, R = base[0], rep.point, rep.reps
    gains = {n: (pt[i] - pt[b], *_interval(R[:, i] - R[:, b], level)) for n, i in full}
    smallest = None
    for n, _ in reversed(full):
        if not gains[n][1] > 0:
            break
        smallest = n
    row = {"subsets": " ".join(str(n) for n, _ in full), "n_min": full[0][0],
           "smallest_positive": NONE if smallest is None else str(smallest),
           "positive_subsets": " ".join(str(n) for n, _ in full if gains[n][1] > 0) or NONE}
    if smallest is not None:
        row["gain"], row["gain_lo"], row["gain_hi"] = gains[smallest]
    if not sky:
        return row | {"recovered_note": "no skyline", "n50": "undefined"}
    s = sky[0]
    den, (dlo, dhi) = pt[s] - pt[b], _interval(R[:, s] - R[:, b], level)
    if not (dlo > 0 or dhi < 0):
        return row | {"n50": "undefined", "recovered_note": f"undefined: skyline − base = {den:.2f}, 95 % interval "
                      f"[{dlo:.2f}, {dhi:.2f}] contains 0 (left out of every fit)"}
    i0 = full[0][1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (R[:, i0] - R[:, b]) / (R[:, s] - R[:, b]) * 100
    lo, hi = _interval(np.where(np.isfinite(ratio), ratio, np.nan), level)
    rec = [(pt[i] - pt[b]) / den * 100 for _, i in full]
    return row | {"recovered_at_min": rec[0], "rec_lo": lo, "rec_hi": hi, "recovered_note": "",
                  "n50": _n50([n for n, _ in full], rec)}


def verdict(rows: pd.DataFrame) -> tuple[str, str]:
    """(verdict, evidence) of one benchmark's size rows, in order of size."""
    rows = rows[rows["smallest_positive"].notna()]
    seq = [(s, v) for s, v in zip(rows["size"], rows["smallest_positive"])]
    evidence = " → ".join(f"{s} {v}" for s, v in seq) + f" ({RULE})"
    if len(seq) < 2:
        return "needs >= 2 sizes", evidence
    vals = [np.inf if v == NONE else int(v) for _, v in seq]
    if all(v == np.inf for v in vals):
        return "no size has a positive gain", evidence
    rises = any(b > a for a, b in zip(vals, vals[1:]))
    falls = any(b < a for a, b in zip(vals, vals[1:]))
    return ("rises (against the claim)" if rises else "falls" if falls else "stays"), evidence


def claim(reps: dict[tuple[str, str], Replicates], benchmarks: list[str], sizes: list[str],
          params: dict[str, float] | None = None, level: float = 0.95) -> pd.DataFrame:
    """results/claim.csv: a row per size and benchmark, then the benchmark's verdict row. Sizes are
    ordered by parameter count where every size has one, else as given."""
    params = params or {}
    order = sorted(sizes, key=lambda s: params[s]) if all(s in params for s in sizes) else list(sizes)
    rows = []
    for bench in benchmarks:
        part = []
        for size in order:
            r = size_row(reps[(size, bench)], level) if (size, bench) in reps else None
            if r is not None:
                part.append({"benchmark": bench, "row": "size", "size": size, "params": params.get(size, np.nan)} | r)
        if not part:
            continue
        v, ev = verdict(pd.DataFrame(part))
        rows += part + [{"benchmark": bench, "row": "verdict", "size": "all", "verdict": v, "evidence": ev}]
    return pd.DataFrame(rows, columns=COLUMNS)


def from_samples(samples: pd.DataFrame, benchmarks: dict[str, list[str]], sizes: list[str],
                 params: dict[str, float] | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The claim on saved answers: bootstrap_ci's paired replicates (problems resampled, seeds kept)."""
    if samples.empty:
        return pd.DataFrame(columns=COLUMNS)
    reps = bootstrap_ci.replicates(samples, benchmarks, n_boot=n_boot, seed=seed, resample_seeds=False)
    return claim(reps, list(benchmarks), [s for s in sizes if any(k[0] == s for k in reps)], params)
