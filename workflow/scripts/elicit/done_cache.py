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

import ast
import os
import shutil
from pathlib import Path

from elicit import PACKAGE, REPO
from elicit.atomic import atomic_dir, atomic_path
from elicit.provenance import sha256_file, sha256_json

COMPLETE = "COMPLETE"


def code_sha(*files: Path) -> str:
    """sha256 over the bytes of the program files a result depends on, named by their path in the
    checkout (two modules of the same name in two subpackages both count; a moved checkout, the same)."""
    def name(f: Path) -> str:
        f = Path(f).resolve()
        return f.relative_to(REPO).as_posix() if f.is_relative_to(REPO) else f.name

    return sha256_json({name(f): sha256_file(f) for f in files})


def module_file(name: str) -> Path | None:
    """The source file of the `elicit` module `name` (dotted), or None (not elicit's, or not a module:
    `from elicit import PACKAGE` names an attribute)."""
    parts = name.split(".")
    if parts[0] != PACKAGE.name:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for f in ((base.with_suffix(".py"),) if parts[1:] else ()) + (base / "__init__.py",):
        if f.is_file():
            return f
    return None


def _imported(path: Path, package: str) -> set[str]:
    """Every dotted name `path` imports, anywhere in it (function bodies too). `from a import b` gives
    both a and a.b: b may be a module or a name, module_file tells which. Relative imports resolved
    against `package` (the importing module's own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return names


def code_files(step_file: Path, *also: Path) -> list[Path]:
    """The step program (and the files in `also`, e.g. code lm-eval loads by path) and every `elicit`
    module they import, transitively, found by reading the import statements: the code a finished
    result depends on (its done-cache key). Importing a.b runs a/__init__.py too. The given files
    first, then the modules by path."""
    roots = [Path(f).resolve() for f in (step_file, *also)]
    found, todo = set(), [(f, "") for f in roots]
    while todo:
        path, package = todo.pop()
        for name in _imported(path, package):
            f = module_file(name)
            parents = [module_file(".".join(name.split(".")[:i])) for i in range(1, name.count(".") + 1)]
            for g in [f, *parents]:
                if g is not None and g not in found:
                    found.add(g)
                    own = g.relative_to(PACKAGE.parent).with_suffix("").parts  # ("elicit", "loss")
                    todo.append((g, ".".join(own[:-1])))  # its package: elicit.x -> elicit, elicit/y/__init__ -> elicit.y
    return [*roots, *sorted(found - set(roots))]


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
