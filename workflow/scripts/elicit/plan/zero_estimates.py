#!/usr/bin/env python
"""DeepSpeed's own per-GPU model-state estimators, cached so that plan time never imports deepspeed.

`estimates(requests)` answers each request ({"stage": zero2 | zero3 | zero3_offload,
"total_params", "largest_layer_params", "gpus", "nodes"}) with the GPU bytes of
deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs or
deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs. Answers live in a JSON
cache (default .snakemake/memory_plan/zero_estimates.json in the working directory) keyed by
sha256 of the request and the installed deepspeed version; the misses are computed in ONE
subprocess (this file), which imports deepspeed (~1.5 s) and prints its warnings there.

Usage (the subprocess):  echo '[{"stage": "zero2", ...}]' | python -m elicit.plan.zero_estimates
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from elicit import PACKAGE
from elicit.atomic import write_json

CACHE = Path(".snakemake") / "memory_plan" / "zero_estimates.json"  # relative to the workdir
_MEMO: dict[str, dict] = {}


class EstimatorError(RuntimeError):
    pass


def compute(requests: list[dict]) -> list[int]:
    """Call DeepSpeed's estimators (imports deepspeed). ZeRO-3 with zero_init: train.py builds
    ZeRO-3 models under HfDeepSpeedConfig (zero.Init); zero_init changes only the CPU figure."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs as zero3
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs as zero2

    out = []
    for r in requests:
        n, g, k, off = r["total_params"], r["gpus"], r["nodes"], r["stage"] == "zero3_offload"
        if r["stage"] == "zero2":
            out.append(zero2(n, num_gpus_per_node=g, num_nodes=k, cpu_offload=False)[1])
        else:
            out.append(zero3(n, r["largest_layer_params"], num_gpus_per_node=g, num_nodes=k,
                             cpu_offload=off, cpu_offload_params=off, zero_init=True)[1])
    return [int(x) for x in out]


def deepspeed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepspeed")
    except PackageNotFoundError:
        raise EstimatorError(f"deepspeed is not installed for {sys.executable}: its estimators plan "
                             "the training jobs' model states") from None


def _load(path: Path, ver: str) -> dict:
    if str(path) not in _MEMO:
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        _MEMO[str(path)] = stored.get("estimates", {}) if stored.get("deepspeed") == ver else {}
    return _MEMO[str(path)]


def estimates(requests: list[dict], cache: str | Path | None = None) -> list[int]:
    """compute(requests) through the cache."""
    path, ver = Path(cache or CACHE), deepspeed_version()
    keys = [hashlib.sha256(json.dumps([ver, r], sort_keys=True).encode()).hexdigest() for r in requests]
    known = _load(path, ver)
    missing = {k: r for k, r in zip(keys, requests) if k not in known}
    if missing:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                                           os.environ.get("PYTHONPATH")]))}
        run = subprocess.run([sys.executable, "-m", "elicit.plan.zero_estimates"], input=json.dumps(list(missing.values())),
                             capture_output=True, text=True, env=env)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("ZERO_ESTIMATES ")]
        if run.returncode or not lines:
            raise EstimatorError(f"DeepSpeed's estimators failed under {sys.executable}: {run.stderr[-2000:]}")
        known.update(zip(missing, json.loads(lines[-1].split(" ", 1)[1])))
        try:
            write_json(path, {"deepspeed": ver, "estimates": known})
        except OSError:
            pass  # a read-only working directory: computed again next time
    return [known[k] for k in keys]


if __name__ == "__main__":
    print("ZERO_ESTIMATES " + json.dumps(compute(json.loads(sys.stdin.read()))), flush=True)
