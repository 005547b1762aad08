#!/usr/bin/env python
"""Estimate GPU-hours per stage and model size before launching the grid.

Upper bounds from the config: every finetune runs `train.max_steps` steps of
`train.global_batch` sequences of `cost.mean_train_tokens` tokens (early stopping only
makes it cheaper), plus a validation pass every `eval_every` steps (forward only, ~1/3 of
a training token); every evaluation cell generates `cost.mean_new_tokens[task]` tokens for
each of `cost.problems[task]` problems. Throughputs come from `cost.*_tokens_per_gpu_s`.

Beside it, the memory plan (workflow/scripts/elicit/memory_plan.py): predicted peak GiB per GPU of
train full, train lora and eval per size, with how each runs (DeepSpeed stage x GPUs; eval
layout x GPUs), and whether it fits when --gpu-mem-gb or --site (a site.yaml with gpu_mem_gb)
is given.

Usage:
  python workflow/scripts/estimate_cost.py config/config.yaml
  python workflow/scripts/estimate_cost.py config/config.yaml --sizes 32B --csv cost.csv
  python workflow/scripts/estimate_cost.py config/config.yaml --site profiles/slurm/site.yaml
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from elicit import memory_plan
from elicit.config import check, load_site


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


def memory_table(cfg: dict, sizes: list[str] | None = None, gpu_mem_gb: float | None = None) -> str:
    """Predicted peak GiB per GPU per size and job kind, and the verdict against gpu_mem_gb."""
    kinds = ("train full", "train lora", "eval")
    out = [f"{'size':>6} " + "".join(f"{k:>20}" for k in kinds) + "   memory per GPU (predicted peak, GiB)"]
    for r in memory_plan.table({**cfg, "sizes": sizes or cfg["sizes"]}, gpu_mem_gb):
        gib = {k: memory_plan.gib_of(r[k]) for k in kinds if r[k]}
        cells = [(f"{gib[k]:.1f}" if k in gib else "-") + f" [{r[k + ' how']}]" for k in kinds]
        over = [k for k in kinds if k in gib and gib[k] > gpu_mem_gb] if gpu_mem_gb else []
        verdict = "" if gpu_mem_gb is None else (f"   fits on {gpu_mem_gb:g} GiB" if not over
                                                 else f"   does not fit on {gpu_mem_gb:g} GiB: {', '.join(over)}")
        out.append(f"{r['size']:>6} " + "".join(f"{c:>20}" for c in cells) + verdict)
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--sizes", nargs="+")
    ap.add_argument("--csv", help="also write the table as CSV")
    ap.add_argument("--gpu-mem-gb", type=float, help="GiB per GPU: say whether each size's jobs fit")
    ap.add_argument("--site", help="site.yaml whose gpu_mem_gb to use (e.g. profiles/slurm/site.yaml)")
    args = ap.parse_args(argv)
    cfg = check(yaml.safe_load(Path(args.config).read_text()))
    rows = estimate(cfg, args.sizes)
    print(f"{'size':>6} {'stage':>6} {'jobs':>5} {'GPU-hours':>10}")
    for r in rows:
        print(f"{r['size']:>6} {r['stage']:>6} {r['jobs']:>5} {r['gpu_hours']:>10.1f}")
    for stage in ("train", "eval"):
        print(f"{'all':>6} {stage:>6} {sum(r['jobs'] for r in rows if r['stage'] == stage):>5} "
              f"{sum(r['gpu_hours'] for r in rows if r['stage'] == stage):>10.1f}")
    print(f"{'all':>6} {'total':>6} {sum(r['jobs'] for r in rows):>5} {sum(r['gpu_hours'] for r in rows):>10.1f}")
    mem = args.gpu_mem_gb
    if mem is None and args.site:
        mem = load_site({"site": args.site, "sizes": cfg["sizes"]}).get("gpu_mem_gb")
    print()
    print(memory_table(cfg, args.sizes, mem))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
