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
