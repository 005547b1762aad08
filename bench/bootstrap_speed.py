#!/usr/bin/env python
"""Wall time of bootstrap_ci.bootstrap on a synthetic paper-sized grid. Goal: < 5 s for 2000 replicates.

Grid: 4 sizes x 10 configurations (base, skyline, lora, full with 29 ... 1856 examples: the paper's
nine plus one) x tasks aime24 (30 problems), aime25 (30), gpqa_diamond_cot_zeroshot (198) x 4 seeds,
0/1 scores drawn from per-problem solve rates (41,280 sample rows). The timing covers the whole
call: validation, tensor building, draws, percentiles and the four frames.

Usage:  python bench/bootstrap_speed.py [--n-boot 2000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from elicit.report import bootstrap_ci

BENCHMARKS = {"AIME": ["aime24", "aime25"], "GPQA": ["gpqa_diamond_cot_zeroshot"]}
PROBLEMS = {"aime24": 30, "aime25": 30, "gpqa_diamond_cot_zeroshot": 198}
SIZES = ["1.5B", "7B", "14B", "32B"]
CONFIGS = [("base", None), ("skyline", None), ("lora", 1000)] + [("full", 29 * 2 ** k) for k in range(7)]


def paper_grid(seeds: int = 4, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    parts = []
    for size in SIZES:
        for task, n in PROBLEMS.items():
            difficulty = rng.beta(0.5, 1.5, n)
            for cfg, te in CONFIGS:
                p = np.clip(difficulty + rng.normal(0, 0.1), 0, 1)
                score = (rng.random((seeds, n)) < p).astype(float)
                parts.append(pd.DataFrame({"size": size, "configuration": cfg, "train_examples": te, "task": task,
                                           "seed": np.repeat(np.arange(seeds), n), "doc_id": np.tile(np.arange(n), seeds),
                                           "score": score.ravel()}))
    df = pd.concat(parts, ignore_index=True)
    df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    samples = paper_grid()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = bootstrap_ci.bootstrap(samples, BENCHMARKS, n_boot=args.n_boot, seed=0)
        times.append(time.perf_counter() - t0)
    print(f"grid: {len(SIZES)} sizes x {len(CONFIGS)} configurations x {sum(PROBLEMS.values())} problems x 4 seeds "
          f"= {len(samples)} samples; {args.n_boot} replicates; rows: "
          + ", ".join(f"{k} {len(v)}" for k, v in out.items()))
    print(f"bootstrap seconds: best {min(times):.2f}, median {sorted(times)[len(times) // 2]:.2f} "
          f"over {args.repeat} runs (goal < 5)")


if __name__ == "__main__":
    main()
