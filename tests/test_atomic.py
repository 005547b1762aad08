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
