#!/usr/bin/env python
"""Estimate GPU-hours per stage and model size before launching the grid.

Upper bounds from the config: every finetune runs `train.max_steps` steps of
`train.global_batch` sequences of `cost.mean_train_tokens` tokens (early stopping only
makes it cheaper), plus a validation pass every `eval_every` steps (forward only, ~1/3 of
a training token); every evaluation cell generates `cost.mean_new_tokens[task]` tokens for
each of `cost.problems[task]` problems. Throughputs (tokens/s per GPU) come from the table of
benchmark numbers resources/throughput.yaml, by GPU model (--gpu, else the site's gpu_model,
else the table's default) and size, for training and for the config's eval.backend; every
number used is printed with whether it was measured (and by which command) or is an estimate.

Beside it: the evaluation's sequences in flight per size (memory_plan.sequences_in_flight: what
the KV-cache budget of one job holds, which hf-cb keeps busy) and how the cells are grouped into
jobs (elicit/eval_jobs.py), and the memory plan (workflow/scripts/elicit/memory_plan.py):
predicted peak GiB per GPU of train full, train lora and eval per size, with how each runs
(DeepSpeed stage x GPUs; eval layout x GPUs), and whether it fits when --gpu-mem-gb or --site
(a site.yaml with gpu_mem_gb) is given; without either, the GPU model's memory from the table.

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

from elicit import REPO, eval_jobs, memory_plan
from elicit.config import check, load_site


THROUGHPUT = REPO / "resources" / "throughput.yaml"


def throughputs(cfg: dict, gpu: str | None = None, table: Path = THROUGHPUT) -> tuple[str, dict, dict]:
    """(GPU model, its table entry, {"train": {size: entry}, "eval": {size: entry}}) for the
    config's sizes and eval.backend (plain `hf` decodes as hf-resumable does)."""
    t = yaml.safe_load(Path(table).read_text())
    gpu = gpu or t["default"]
    if gpu not in t["gpus"]:
        raise SystemExit(f"estimate_cost: GPU model {gpu!r} not in {table} (known: {', '.join(t['gpus'])})")
    g, backend = t["gpus"][gpu], {"hf": "hf-resumable"}.get(cfg["eval"]["backend"], cfg["eval"]["backend"])
    rates = {"train": g.get("train") or {}, "eval": (g.get("eval") or {}).get(backend) or {}}
    missing = [f"{gpu}.{stage}{'.' + backend if stage == 'eval' else ''}.{size}" for stage in ("train", "eval")
               for size in cfg["sizes"] if size not in rates[stage]]
    if missing:
        raise SystemExit(f"estimate_cost: {table} has no throughput for {', '.join(missing)}: add a measured "
                         "number (or an estimate marked measured: false)")
    return gpu, g, rates


def estimate(cfg: dict, sizes: list[str] | None = None, rates: dict | None = None) -> list[dict]:
    cost, t, d = cfg.get("cost") or {}, cfg["train"], cfg["data"]
    missing = [k for k in ("mean_train_tokens", "mean_new_tokens", "problems") if k not in cost]
    if missing:
        raise SystemExit(f"estimate_cost: config lacks cost.{', cost.'.join(missing)}")
    rates = rates or throughputs(cfg)[2]
    rows = []
    n_trained = len(d["subsets"]) + 1  # full finetunes + LoRA
    n_models = n_trained + 2           # + base, skyline
    for size in sizes or cfg["sizes"]:
        train_tps, eval_tps = rates["train"][size]["tokens_per_s"], rates["eval"][size]["tokens_per_s"]
        tokens = t["max_steps"] * t["global_batch"] * cost["mean_train_tokens"]
        val = (t["max_steps"] // t["eval_every"] + 1) * d["n_val"] * cost["mean_train_tokens"] / 3
        train_h = n_trained * (tokens + val) / train_tps / 3600
        gen = sum(cost["problems"][task] * cost["mean_new_tokens"][task] for task in cfg["eval"]["tasks"])
        eval_h = n_models * len(cfg["eval"]["seeds"]) * gen / eval_tps / 3600
        rows += [{"size": size, "stage": "train", "jobs": n_trained, "gpu_hours": train_h},
                 {"size": size, "stage": "eval", "jobs": n_models * len(cfg["eval"]["tasks"]) * len(cfg["eval"]["seeds"]),
                  "gpu_hours": eval_h}]
    return rows


def source(entry: dict) -> str:
    return (f"measured: {entry.get('command')} on {entry.get('measured_on')}" if entry.get("measured")
            else f"estimate ({entry.get('why', 'no measurement yet')})")


def flight_table(cfg: dict, sizes, gpu_mem_gb: float) -> str:
    """Sequences in flight per evaluation job and size, and the cells each job generates together."""
    out = [f"evaluation on {gpu_mem_gb:g} GiB GPUs (backend {cfg['eval']['backend']}, eval.batch_size "
           f"{cfg['eval']['batch_size']}, seeds_per_job {cfg['eval'].get('seeds_per_job', 1)}):"]
    for size in sizes or cfg["sizes"]:
        n = memory_plan.sequences_in_flight(cfg, size, gpu_mem_gb)
        jobs = eval_jobs.groups(cfg, size, gpu_mem_gb)
        shape = ", ".join(f"{'+'.join(t)} x seeds {'/'.join(map(str, s))}" for t, s in jobs)
        out.append(f"{size:>6}: {n} sequences in flight (each at prompt + max_gen_toks, "
                   f"{memory_plan.eval_layout(cfg, size, gpu_mem_gb)} x{memory_plan.eval_gpus(cfg, size)}); "
                   f"{len(jobs)} jobs per model: {shape}")
    return "\n".join(out)


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
    ap.add_argument("--site", help="site.yaml whose gpu_mem_gb and gpu_model to use (e.g. profiles/slurm/site.yaml)")
    ap.add_argument("--gpu", help="GPU model of resources/throughput.yaml (default: the site's gpu_model, else the "
                                  "table's default)")
    args = ap.parse_args(argv)
    cfg = check(yaml.safe_load(Path(args.config).read_text()))
    site = load_site({"site": args.site, "sizes": cfg["sizes"]}) if args.site else {}
    gpu, entry, rates = throughputs(cfg, args.gpu or site.get("gpu_model"))
    rows = estimate(cfg, args.sizes, rates)
    print(f"{'size':>6} {'stage':>6} {'jobs':>5} {'GPU-hours':>10}")
    for r in rows:
        print(f"{r['size']:>6} {r['stage']:>6} {r['jobs']:>5} {r['gpu_hours']:>10.1f}")
    for stage in ("train", "eval"):
        print(f"{'all':>6} {stage:>6} {sum(r['jobs'] for r in rows if r['stage'] == stage):>5} "
              f"{sum(r['gpu_hours'] for r in rows if r['stage'] == stage):>10.1f}")
    print(f"{'all':>6} {'total':>6} {sum(r['jobs'] for r in rows):>5} {sum(r['gpu_hours'] for r in rows):>10.1f}")
    print(f"\nthroughputs per GPU on {gpu} ({THROUGHPUT.relative_to(REPO)}):")
    for size in args.sizes or cfg["sizes"]:
        for stage in ("train", "eval"):
            e = rates[stage][size]
            print(f"{size:>6} {stage:>6} {e['tokens_per_s']:>8} tokens/s  {source(e)}")
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
