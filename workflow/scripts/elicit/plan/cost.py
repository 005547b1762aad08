"""The run's cost before launching it: GPU-hours per stage and size from the config's planning
numbers (`cost.*`) and the throughput table resources/throughput.yaml, the evaluation's sequences
in flight and job grouping, and the memory plan's table. Used by estimate_cost.py (the CLI, whose
docstring states the bounds) and report.py (the plan section of results/report.html).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from elicit import REPO, backends, grid, variants
from elicit.plan import eval_jobs, memory_plan


class CostError(SystemExit):
    """A config or throughput table the estimate cannot use (exits the CLI with its message)."""


THROUGHPUT = REPO / "resources" / "throughput.yaml"


MODES = ("full", "lora")


def train_rates(train: dict) -> dict:
    """{"full": {size: entry}, "lora": {size: entry}} from a table's `train` entry: its full / lora
    parts, or (the former form) one entry per size for both."""
    if set(train) & set(MODES):
        return {mode: train.get(mode) or {} for mode in MODES}
    return {mode: train for mode in MODES}


def throughputs(cfg: dict, gpu: str | None = None, table: Path = THROUGHPUT) -> tuple[str, dict, dict]:
    """(GPU model, its table entry, {"train": {"full": {size: entry}, "lora": {size: entry}}, "eval":
    {size: entry}}) for the config's sizes and eval.backend (plain `hf` decodes as hf-resumable does)."""
    t = yaml.safe_load(Path(table).read_text())
    gpu = gpu or t["default"]
    if gpu not in t["gpus"]:
        raise CostError(f"estimate_cost: GPU model {gpu!r} not in {table} (known: {', '.join(t['gpus'])})")
    g, backend = t["gpus"][gpu], backends.get(cfg["eval"]["backend"]).rates_as or cfg["eval"]["backend"]
    rates = {"train": train_rates(g.get("train") or {}), "eval": (g.get("eval") or {}).get(backend) or {}}
    missing = [f"{gpu}.train.{mode}.{size}" for mode in MODES for size in cfg["sizes"]
               if size not in rates["train"][mode]]
    missing += [f"{gpu}.eval.{backend}.{size}" for size in cfg["sizes"] if size not in rates["eval"]]
    if missing:
        raise CostError(f"estimate_cost: {table} has no throughput for {', '.join(missing)}: add a measured "
                         "number (or an estimate marked measured: false)")
    return gpu, g, rates


def _unit_hours(cfg: dict, size: str, rates: dict) -> dict[str, float]:
    """GPU-hours of one full finetune, one LoRA, and one model's evaluation (every task and seed) of `size`."""
    cost, t, d = cfg.get("cost") or {}, cfg["train"], cfg["data"]
    missing = [k for k in ("mean_train_tokens", "mean_new_tokens", "problems") if k not in cost]
    if missing:
        raise CostError(f"estimate_cost: config lacks cost.{', cost.'.join(missing)}")
    train = train_rates(rates["train"])
    tokens = t["max_steps"] * t["global_batch"] * cost["mean_train_tokens"]
    val = (t["max_steps"] // t["eval_every"] + 1) * d["n_val"] * cost["mean_train_tokens"] / 3
    gen = sum(cost["problems"][task] * cost["mean_new_tokens"][task] for task in cfg["eval"]["tasks"])
    return {"full": (tokens + val) / train["full"][size]["tokens_per_s"] / 3600,
            "lora": (tokens + val) / train["lora"][size]["tokens_per_s"] / 3600,
            "model_eval": len(cfg["eval"]["seeds"]) * gen / rates["eval"][size]["tokens_per_s"] / 3600}


def estimate(cfg: dict, sizes: list[str] | None = None, rates: dict | None = None) -> list[dict]:
    """GPU-hours per size and stage: the full finetunes at the table's full rate, the LoRA at its lora rate;
    with the variants' and the extra training seeds' runs and cells (elicit/variants.py) where the config has them."""
    rates = rates or throughputs(cfg)[2]
    rows = []
    cells_per_model = len(cfg["eval"]["tasks"]) * len(cfg["eval"]["seeds"])
    for size in sizes or cfg["sizes"]:
        unit = _unit_hours(cfg, size, rates)
        runs = grid.trained(cfg["data"]["subsets"]) + variants.trained_runs(cfg, size)
        models = grid.configurations(cfg["data"]["subsets"]) + variants.cells(cfg, size)
        train_h = sum(unit[grid.parse(r)[0]] for r in runs)
        rows += [{"size": size, "stage": "train", "cells": len(runs), "gpu_hours": train_h},
                 {"size": size, "stage": "eval", "cells": len(models) * cells_per_model,
                  "gpu_hours": len(models) * unit["model_eval"]}]
    return rows


def extra_seeds(cfg: dict, sizes: list[str] | None = None, rates: dict | None = None, seeds: int = 2,
                subsets: int = 2) -> list[dict]:
    """What `seeds` more training seeds of the full finetunes of the `subsets` smallest subsets would add per
    size (train.seeds, issue 30): the trainings, their evaluation cells and GPU-hours, and the share of the
    size's grid as estimate() counts it."""
    rates = rates or throughputs(cfg)[2]
    base = {}
    for r in estimate(cfg, sizes, rates):
        base[r["size"]] = base.get(r["size"], 0.0) + r["gpu_hours"]
    smallest = sorted(cfg["data"]["subsets"])[:subsets]
    rows = []
    for size in sizes or cfg["sizes"]:
        unit, runs = _unit_hours(cfg, size, rates), seeds * len(smallest)
        train_h, eval_h = runs * unit["full"], runs * unit["model_eval"]
        rows.append({"size": size, "subsets": " ".join(map(str, smallest)), "trainings": runs,
                     "eval_cells": runs * len(cfg["eval"]["tasks"]) * len(cfg["eval"]["seeds"]),
                     "train_gpu_hours": train_h, "eval_gpu_hours": eval_h, "gpu_hours": train_h + eval_h,
                     "share_pct": 100 * (train_h + eval_h) / base[size] if base[size] else float("nan")})
    return rows


def source(entry: dict) -> str:
    """Where a throughput comes from: measured (command, GPU and versions; MFU and peak memory when
    recorded) or an estimate (why)."""
    if not entry.get("measured"):
        return f"estimate ({entry.get('why', 'no measurement yet')})"
    where = entry.get("measured_on") or ", ".join(str(entry[k]) for k in ("gpu", "versions") if entry.get(k))
    extra = "".join(f", {label} {fmt.format(entry[k])}" for k, label, fmt in
                    (("mfu", "MFU", "{:.1%}"), ("peak_gib", "peak", "{:.1f} GiB")) if entry.get(k) is not None)
    return f"measured: {entry.get('command')} on {where}{extra}"


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
