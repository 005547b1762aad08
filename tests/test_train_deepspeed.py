"""The DeepSpeed path of train.py: ZeRO-3 on 2 gloo processes, killed and resumed.

DeepSpeed JIT-compiles its CPU shared-memory comm op on first use (~35 s, cached under
~/.cache/torch_extensions afterwards); the runs themselves take ~15 s each.
Proves: ZeRO-3 training matches the plain 1-process run, the ZeRO-3 resume state
(engine.save_checkpoint, every rank) resumes, and the checkpoint gathered from the
shards (stage3_gather_16bit_weights_on_model_save) holds the full weights.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.test_train import _assert_same_metrics, _cmd, _env, _rows, demo  # noqa: F401

pytest.importorskip("deepspeed")

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_zero3_two_processes_kill_resume_and_gathered_checkpoint(demo, tmp_path):  # noqa: F811
    from safetensors.torch import load_file
    from elicit.train.checkpoints import select

    ref = tmp_path / "ref"
    proc = subprocess.run(_cmd(demo, ref, ["--progress", "false"]), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    want = _rows(ref / "metrics.jsonl")

    out = tmp_path / "zero3"
    kill_at = 2 * random.Random(time.time_ns()).randrange(1, 6)
    p = subprocess.Popen(_cmd(demo, out, ["--deepspeed", "zero3", "--progress", "false"],
                              launcher=TORCHRUN),
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    log = []
    for line in p.stdout:
        log.append(line)
        if line.startswith("{") and json.loads(line)["step"] == kill_at:
            p.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
    rc = p.wait(timeout=300)
    text = "".join(log)
    assert "deepspeed zero3" in text
    # the workers exit 143 after saving; torchrun itself reports the signal (rc 1)
    assert rc != 0 and "stop requested: saved resume state" in text, text[-3000:]
    assert sorted(x.name for x in (out / "work" / "resume").iterdir()) == ["ds", "state.pt"]

    proc = subprocess.run(_cmd(demo, out, ["--deepspeed", "zero3", "--progress", "false"],
                               launcher=TORCHRUN),
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resumed at step" in proc.stdout
    got = _rows(out / "metrics.jsonl")
    _assert_same_metrics(got[:3], want[:3], tol=1e-5)
    _assert_same_metrics(got, want, tol=2e-3)

    sel = select(got, 0.02)["selected_step"]
    assert [x.name for x in (out / "checkpoints").iterdir()] == [f"step-{sel}"]
    a = load_file(out / "checkpoints" / f"step-{sel}" / "model.safetensors")
    if sel == select(want, 0.02)["selected_step"]:
        b = load_file(ref / "checkpoints" / f"step-{sel}" / "model.safetensors")
        assert a.keys() == b.keys()
        for k in a:  # full, unsharded tensors with the plain run's values
            assert a[k].shape == b[k].shape and a[k].numel() > 0, k
            assert (a[k] - b[k]).abs().max().item() < 1e-3, k


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_zero2_in_one_process_without_a_launcher(demo, tmp_path):  # noqa: F811
    """One GPU: the train rule starts `python train.py --deepspeed zero2` with no launcher variables
    (slurm.launcher). DeepSpeed then tried MPI discovery: ImportError without mpi4py (and an MPI
    singleton start on a node with it). The run must train and match the plain 1-process run."""
    env = {k: v for k, v in _env().items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK")}
    ref = tmp_path / "ref"
    proc = subprocess.run(_cmd(demo, ref, ["--progress", "false"]), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "zero2"
    proc = subprocess.run(_cmd(demo, out, ["--deepspeed", "zero2", "--progress", "false"]), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "deepspeed zero2" in proc.stdout
    _assert_same_metrics(_rows(out / "metrics.jsonl")[:3], _rows(ref / "metrics.jsonl")[:3], tol=1e-5)
