"""Finished results kept by content, so a job Snakemake reruns with identical inputs costs seconds.

Snakemake deletes a job's declared outputs before it runs it again, e.g. when an upstream file
was rebuilt (identically) or the data table was copied. The expensive programs (train.py,
eval_cell.py) therefore keep hard links of their finished outputs under `<dir>/.done/<key>/`
(not a declared output, no extra disk), keyed by a sha256 of everything the result depends on:
inputs by content, settings, package versions and the program's own code. A run whose key
matches restores the links instead of recomputing; any difference (other data, other settings,
edited code) misses, so nothing stale is ever reused. One key per result is kept.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from elicit.atomic import atomic_dir, atomic_path
from elicit.provenance import sha256_file, sha256_json

COMPLETE = "COMPLETE"


def code_sha(*files: Path) -> str:
    """sha256 over the bytes of the program files a result depends on."""
    return sha256_json({Path(f).name: sha256_file(f) for f in files})


def key(parts: dict) -> str:
    return sha256_json(parts)[:24]


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy
        shutil.copy2(src, dst)


def _link_entry(src: Path, dst: Path) -> None:
    """File or directory src -> dst, by hard links, replacing dst atomically."""
    if src.is_dir():
        with atomic_dir(dst) as tmp:
            for p in sorted(src.rglob("*")):
                target = tmp / p.relative_to(src)
                if p.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _link(p, target)
    else:
        with atomic_path(dst) as tmp:
            tmp.unlink()
            _link(src, tmp)


def restore(root: Path, k: str, targets: dict[str, Path]) -> bool:
    """Link the entries cached under root/k onto `targets`; False when there is no complete entry."""
    entry = Path(root) / k
    if not (entry / COMPLETE).exists() or not all((entry / name).exists() for name in targets):
        return False
    for name, dst in targets.items():
        _link_entry(entry / name, Path(dst))
    return True


def store(root: Path, k: str, sources: dict[str, Path]) -> None:
    """Keep hard links of `sources` under root/k (written whole, then renamed); drop other keys."""
    root = Path(root)
    with atomic_dir(root / k) as tmp:
        for name, src in sources.items():
            _link_entry(Path(src), tmp / name)
        (tmp / COMPLETE).write_text("")
    for other in root.iterdir():
        if other.name != k and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
