"""Which (task, seed) cells one evaluation job generates together (eval.seeds_per_job).

A job keeps as many sequences in flight as its KV-cache budget holds (memory_plan.
sequences_in_flight: its slots). One task and seed rarely fill them (AIME: 30 problems against
~80-150 slots of 1.5B), so with eval.seeds_per_job: auto a job evaluates the tasks of one
benchmark (config `benchmarks`: AIME = aime24 + aime25) for k seeds together, k = the seeds it
takes to fill the slots (ceil(slots / the benchmark's problems per seed, cost.problems), at most
all seeds; the seeds are cut into equal chunks). Without a GPU or without the GPU's memory (no
site gpu_mem_gb), auto puts every seed in one job. An integer k: each task alone, k seeds per
job (1 = one job per cell, the rule `evaluate`).
The results stay one file per task and seed (grid.eval_output), so aggregation does not
change; a job's answers are those of one job per cell (per-request seeds, lm_backend_cb.py).
"""
from __future__ import annotations

import math
import re


def slots(config: dict, size: str, gpu_mem_gb: float | None) -> int | None:
    """Sequences in flight of one evaluation job of `size`; None where unknown (CPU, no memory)."""
    if not config["models"][size]["eval"]["gpus"] or not gpu_mem_gb:
        return None
    from elicit.plan import memory_plan

    return memory_plan.sequences_in_flight(config, size, gpu_mem_gb)


def _task_groups(config: dict) -> list[tuple[str, ...]]:
    tasks, out, seen = list(config["eval"]["tasks"]), [], set()
    for members in (config.get("benchmarks") or {}).values():
        group = tuple(t for t in tasks if t in members and t not in seen)
        if group:
            out.append(group)
            seen.update(group)
    return out + [(t,) for t in tasks if t not in seen]


def _chunks(seeds: list[int], k: int) -> list[tuple[int, ...]]:
    n = math.ceil(len(seeds) / max(1, k))  # jobs; then as equal as possible
    size = math.ceil(len(seeds) / n)
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), size)]


def groups(config: dict, size: str, gpu_mem_gb: float | None) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """(tasks, seeds) of every evaluation job of one model of `size`."""
    e = config["eval"]
    seeds, per = list(e["seeds"]), e.get("seeds_per_job", 1)
    if per != "auto":
        return [((t,), c) for t in e["tasks"] for c in _chunks(seeds, int(per))]
    n = slots(config, size, gpu_mem_gb)
    problems = (config.get("cost") or {}).get("problems") or {}
    out = []
    for tasks in _task_groups(config):
        per_seed = sum(problems.get(t, 0) for t in tasks)
        k = len(seeds) if n is None or not per_seed else max(1, min(len(seeds), math.ceil(n / per_seed)))
        out += [(tasks, c) for c in _chunks(seeds, k)]
    return out


def rule_name(tasks, seeds) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", "evaluate_" + "_".join(tasks) + "_seeds_" + "_".join(map(str, seeds)))


def plan(config: dict, gpu_mem_gb: float | None) -> tuple[list[str], dict]:
    """(sizes evaluated one cell per job by the rule `evaluate`, {rule name: {tasks, seeds, sizes}}
    of the multi-cell rules)."""
    single, rules = [], {}
    for size in config["sizes"]:
        g = groups(config, size, gpu_mem_gb)
        if all(len(t) == 1 and len(s) == 1 for t, s in g):
            single.append(size)
            continue
        for tasks, seeds in g:
            r = rules.setdefault(rule_name(tasks, seeds), {"tasks": tasks, "seeds": seeds, "sizes": []})
            r["sizes"].append(size)
    return single, rules


def slurm_comment(config: dict, gpu_mem_gb, size: str, config_name: str, task: str, seed: int) -> str:
    """The SLURM job comment (rule_<rule>_wildcards_<values>) of the job that makes this cell."""
    for tasks, seeds in groups(config, size, gpu_mem_gb):
        if task in tasks and seed in seeds and (len(tasks) > 1 or len(seeds) > 1 or
                                                size not in plan(config, gpu_mem_gb)[0]):
            return f"rule_{rule_name(tasks, seeds)}_wildcards_{size}_{config_name}"
    return f"rule_evaluate_wildcards_{size}_{config_name}_{task}_{seed}"
