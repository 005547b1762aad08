"""bench/gpu_train_acceptance.sh --rehearse: the training acceptance (train.py's step at two lengths, full
and LoRA, tokens/s, MFU, memory against the plan; the smoke DAG after it) on CPU with tiny sizes, so that
a GPU run cannot fail for a reason a CPU run could have caught. ~1 min on 2 idle cores."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT, child_env, table_rows


@pytest.mark.slow
def test_training_rehearsal_passes_every_check(tmp_path):
    work = tmp_path / "train"
    env = child_env(threads=1, WORK=str(work), CORES=str(os.cpu_count() or 2))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_train_acceptance.sh"), "--rehearse"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "ALL PASS" in out
    rows = table_rows(out)
    for mode in ("full", "lora"):
        for seq in (256, 512):
            assert rows[f"train {mode} {seq} tokens: tokens/s, MFU"] == "PASS", rows
            assert rows[f"train {mode} {seq} tokens: peak memory"] == "SKIP"  # no CUDA allocator on CPU
            cell = json.loads((work / "cells" / f"{mode}-{seq}.json").read_text())
            # train.py's own step with the smoke config's settings and the memory plan's recompute choice
            assert cell["deepspeed"] == "zero2" and cell["recompute"]["why"] == "memory plan", cell
            assert cell["recompute"]["layers"] == 0 and cell["tokens_per_s"] > 0  # a tiny model fits 80 GiB
    assert rows["smoke DAG: evaluation, aggregation, report"] == "PASS"
