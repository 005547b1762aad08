#!/usr/bin/env python
"""Estimate GPU-hours per stage and model size before launching the grid.

Upper bounds from the config: every finetune runs `train.max_steps` steps of
`train.global_batch` sequences of `cost.mean_train_tokens` tokens (early stopping only
makes it cheaper), plus a validation pass every `eval_every` steps (forward only, ~1/3 of
a training token); every evaluation cell generates `cost.mean_new_tokens[task]` tokens for
each of `cost.problems[task]` problems. Throughputs (tokens/s per GPU) come from the table of
benchmark numbers resources/throughput.yaml, by GPU model (--gpu, else the site's gpu_model,
else the table's default) and size, for training (`train: {full: {size: ...}, lora: {size: ...}}`:
the full finetunes at the full rate, the LoRA at its own) and for the config's eval.backend; every
number used is printed with whether it was measured (its command, GPU, versions, MFU and peak
memory: bench/gpu_train_acceptance.sh prints them) or is an estimate.

Beside it: the evaluation's sequences in flight per size (memory_plan.sequences_in_flight: what
the KV-cache budget of one job holds, which hf-cb keeps busy) and how the cells are grouped into
jobs (elicit/plan/eval_jobs.py), and the memory plan (workflow/scripts/elicit/plan/memory_plan.py):
predicted peak GiB per GPU of train full, train lora and eval per size, with how each runs
(DeepSpeed stage x GPUs; eval layout x GPUs), and whether it fits when --gpu-mem-gb or --site
(a site.yaml with gpu_mem_gb) is given; without either, the GPU model's memory from the table.

And what two extra training seeds (train.seeds, issue 30) of the full finetunes of the two smallest subsets
would add per size: 4 trainings, their evaluation cells (4 models x tasks x evaluation seeds; cells, not
Snakemake jobs) and their GPU-hours, the same bounds as the grid's.

Usage:
  python workflow/scripts/estimate_cost.py config/config.yaml
  python workflow/scripts/estimate_cost.py config/config.yaml --sizes 32B --csv cost.csv
  python workflow/scripts/estimate_cost.py config/config.yaml --site profiles/slurm/site.yaml
  python workflow/scripts/estimate_cost.py config/config.yaml --gpu H200-141GB
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from elicit import REPO
from elicit.checks.config import check, load_site
from elicit.plan.cost import THROUGHPUT, estimate, extra_seeds, flight_table, memory_table, source, throughputs  # noqa: F401


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--sizes", nargs="+")
    ap.add_argument("--csv", help="also write the table as CSV")
    ap.add_argument("--gpu-mem-gb", type=float, help="GiB per GPU: say whether each size's train and eval jobs fit")
    ap.add_argument("--site", help="site.yaml whose gpu_mem_gb and gpu_model to use (e.g. profiles/slurm/site.yaml)")
    ap.add_argument("--gpu", help="GPU model of resources/throughput.yaml (default: the site's gpu_model, else the "
                                  "table's default)")
    args = ap.parse_args(argv)
    cfg = check(yaml.safe_load(Path(args.config).read_text()))
    site = load_site({"site": args.site, "sizes": cfg["sizes"]}) if args.site else {}
    gpu, entry, rates = throughputs(cfg, args.gpu or site.get("gpu_model"))
    rows = estimate(cfg, args.sizes, rates)
    # cells: trainings (train) or evaluation cells (a model x task x seed); "jobs" are Snakemake's only
    print(f"{'size':>6} {'stage':>6} {'cells':>5} {'GPU-hours':>10}")
    for r in rows:
        print(f"{r['size']:>6} {r['stage']:>6} {r['cells']:>5} {r['gpu_hours']:>10.1f}")
    for stage in ("train", "eval"):
        print(f"{'all':>6} {stage:>6} {sum(r['cells'] for r in rows if r['stage'] == stage):>5} "
              f"{sum(r['gpu_hours'] for r in rows if r['stage'] == stage):>10.1f}")
    print(f"{'all':>6} {'total':>6} {sum(r['cells'] for r in rows):>5} {sum(r['gpu_hours'] for r in rows):>10.1f}")
    # train.seeds (issue 30): the price of training variance where it dominates, before asking for it
    extra = extra_seeds(cfg, args.sizes, rates)
    print(f"\nextra training seeds: 2 more seeds of the full finetunes of the two smallest subsets "
          f"({extra[0]['subsets'] if extra else '-'} examples; train.seeds [0, 1, 2]) would add, per size:")
    print(f"{'size':>6} {'trainings':>9} {'eval cells':>10} {'train GPU-h':>11} {'eval GPU-h':>10} "
          f"{'GPU-hours':>10} {'of the grid':>11}")
    for r in extra:
        print(f"{r['size']:>6} {r['trainings']:>9} {r['eval_cells']:>10} {r['train_gpu_hours']:>11.1f} "
              f"{r['eval_gpu_hours']:>10.1f} {r['gpu_hours']:>10.1f} {r['share_pct']:>10.1f}%")
    print(f"{'all':>6} {sum(r['trainings'] for r in extra):>9} {sum(r['eval_cells'] for r in extra):>10} "
          f"{sum(r['train_gpu_hours'] for r in extra):>11.1f} {sum(r['eval_gpu_hours'] for r in extra):>10.1f} "
          f"{sum(r['gpu_hours'] for r in extra):>10.1f}")
    print(f"\nthroughputs per GPU on {gpu} ({THROUGHPUT.relative_to(REPO)}):")
    for size in args.sizes or cfg["sizes"]:
        for stage, e in (("train full", rates["train"]["full"][size]), ("train lora", rates["train"]["lora"][size]),
                         ("eval", rates["eval"][size])):
            print(f"{size:>6} {stage:>10} {e['tokens_per_s']:>8} tokens/s  {source(e)}")
    mem = args.gpu_mem_gb or site.get("gpu_mem_gb")
    print()
    print(flight_table(cfg, args.sizes, mem or entry["gpu_mem_gb"]))
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
