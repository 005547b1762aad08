"""Atomic writes: a failure leaves the old file (or nothing), never a half-written one."""
import os

import pytest

from elicit.atomic import atomic_dir, atomic_path, write_json


def test_failure_keeps_previous_content(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "trunc')
            raise RuntimeError("killed")
    assert target.read_text().startswith('{\n  "a": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "r.json", {})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "r.json").stat().st_mode & 0o777) == oct(0o640)
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == oct(0o750)


def test_dir_replaced_whole(tmp_path):
    with atomic_dir(tmp_path / "m") as d:
        (d / "old").write_text("1")
    with atomic_dir(tmp_path / "m") as d:
        (d / "new").write_text("2")
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["new"]


def test_weights_in_an_atomic_dir_follow_umask(tmp_path):
    """safetensors writes its file 0600 whatever the umask (a temporary file renamed): the published
    weights, checkpoints, `.done` copies and demo models (all written in an atomic_dir) were then
    unreadable to the group sharing a project directory."""
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o002)
    try:
        with atomic_dir(tmp_path / "m") as d:
            save_file({"w": torch.zeros(2)}, d / "model.safetensors")
            (d / "sub").mkdir()
            save_file({"w": torch.zeros(2)}, d / "sub" / "adapter.safetensors")
            (d / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(d / "run.sh", 0o700)
    finally:
        os.umask(old)
    mode = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "m").rglob("*")}
    assert mode == {"model.safetensors": oct(0o664), "sub": oct(0o775), "adapter.safetensors": oct(0o664),
                    "run.sh": oct(0o775)}


WRITER = """
import sys, time
from pathlib import Path
from elicit.atomic import atomic_dir, atomic_path
out = Path(sys.argv[1])
with atomic_{kind}(out / "result") as tmp:
    {write}
    print("inside", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("kind,write", [("dir", "(tmp / 'w.bin').write_bytes(b'0' * 1000)"),
                                        ("path", "tmp.write_text('half')")])
def test_sigterm_inside_an_atomic_write_leaves_no_temporary(tmp_path, kind, write):
    """A step with no signal handler of its own (select_checkpoint, prepare_data, eval_cell...) died
    at once on SIGTERM, and its `.tmp-*` stayed forever. Inside an atomic write a SIGTERM now removes
    the temporary and exits 143, as training's own handler does."""
    import signal
    import subprocess
    import sys

    from tests.conftest import child_env

    p = subprocess.Popen([sys.executable, "-c", WRITER.format(kind=kind, write=write), str(tmp_path)],
                         stdout=subprocess.PIPE, text=True, env=child_env())
    assert p.stdout.readline() == "inside\n"
    assert [x.name.startswith(".tmp-result.") for x in tmp_path.iterdir()] == [True]
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 143
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_selection_leaves_no_tmp_model(tmp_path):
    """The reported case: select_checkpoint.py killed while it copies the checkpoint to <out>/model.
    The checkpoint has many files so that the copy lasts seconds; the signal is sent as soon as the
    `.tmp-model.*` folder appears, and exit 143 proves it landed inside the copy."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, child_env

    train, out = tmp_path / "train", tmp_path / "models"
    ckpt = train / "checkpoints" / "step-0"
    ckpt.mkdir(parents=True)
    for i in range(20000):
        (ckpt / f"f{i}").write_bytes(b"x")
    (train / "metrics.jsonl").write_text(json.dumps({"step": 0, "val_loss": 1.0}) + "\n")
    p = subprocess.Popen([sys.executable, ROOT / "workflow" / "scripts" / "select_checkpoint.py", "--train-dir",
                          train, "--out", out, "--tolerance", "0.1"], env=child_env(), stdout=subprocess.DEVNULL)
    t0 = time.time()
    while not any(out.glob(".tmp-model.*")) and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.001)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 143
    assert sorted(x.name for x in out.iterdir()) == []
