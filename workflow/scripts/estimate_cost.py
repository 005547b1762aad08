#!/usr/bin/env python
"""Estimate GPU-hours per stage and model size before launching the grid.

Upper bounds from the config: every finetune runs `train.max_steps` steps of
`train.global_batch` sequences of `cost.mean_train_tokens` tokens (early stopping only
makes it cheaper), plus a validation pass every `eval_every` steps (forward only, ~1/3 of
a training token); every evaluation cell generates `cost.mean_new_tokens[task]` tokens for
each of `cost.problems[task]` problems. Throughputs come from `cost.*_tokens_per_gpu_s`.

Usage:
  python workflow/scripts/estimate_cost.py config/config.yaml
  python workflow/scripts/estimate_cost.py config/config.yaml --sizes 32B --csv cost.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from config_check import check


def estimate(cfg: dict, sizes: list[str] | None = None) -> list[dict]:
    cost, t, d = cfg.get("cost") or {}, cfg["train"], cfg["data"]
    missing = [k for k in ("mean_train_tokens", "train_tokens_per_gpu_s", "eval_tokens_per_gpu_s",
                           "mean_new_tokens", "problems") if k not in cost]
    if missing:
        raise SystemExit(f"estimate_cost: config lacks cost.{', cost.'.join(missing)}")
    rows = []
    n_trained = len(d["subsets"]) + 1  # full finetunes + LoRA
    n_models = n_trained + 2           # + base, skyline
    for size in sizes or cfg["sizes"]:
        train_tps, eval_tps = cost["train_tokens_per_gpu_s"][size], cost["eval_tokens_per_gpu_s"][size]
        tokens = t["max_steps"] * t["global_batch"] * cost["mean_train_tokens"]
        val = (t["max_steps"] // t["eval_every"] + 1) * d["n_val"] * cost["mean_train_tokens"] / 3
        train_h = n_trained * (tokens + val) / train_tps / 3600
        gen = sum(cost["problems"][task] * cost["mean_new_tokens"][task] for task in cfg["eval"]["tasks"])
        eval_h = n_models * len(cfg["eval"]["seeds"]) * gen / eval_tps / 3600
        rows += [{"size": size, "stage": "train", "jobs": n_trained, "gpu_hours": train_h},
                 {"size": size, "stage": "eval", "jobs": n_models * len(cfg["eval"]["tasks"]) * len(cfg["eval"]["seeds"]),
                  "gpu_hours": eval_h}]
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--sizes", nargs="+")
    ap.add_argument("--csv", help="also write the table as CSV")
    args = ap.parse_args(argv)
    rows = estimate(check(yaml.safe_load(Path(args.config).read_text())), args.sizes)
    print(f"{'size':>6} {'stage':>6} {'jobs':>5} {'GPU-hours':>10}")
    for r in rows:
        print(f"{r['size']:>6} {r['stage']:>6} {r['jobs']:>5} {r['gpu_hours']:>10.1f}")
    for stage in ("train", "eval"):
        print(f"{'all':>6} {stage:>6} {sum(r['jobs'] for r in rows if r['stage'] == stage):>5} "
              f"{sum(r['gpu_hours'] for r in rows if r['stage'] == stage):>10.1f}")
    print(f"{'all':>6} {'total':>6} {sum(r['jobs'] for r in rows):>5} {sum(r['gpu_hours'] for r in rows):>10.1f}")
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
