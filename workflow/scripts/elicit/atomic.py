"""Atomic file writes: a temporary file in the same directory, fsync, then rename.

A job killed half way leaves at most a `.tmp-*` file behind, never a truncated
result that looks complete. Every result file in this workflow goes through here.

A SIGTERM (Snakemake cancelling a job, SLURM's scancel or time limit) inside an atomic write
removes the temporary and exits 143, as train.py's own handler does: a step that installs none
(select_checkpoint, prepare_data, eval_cell, ...) would otherwise die at once and leave its
`.tmp-*` forever. A program's own SIGTERM handler (train.py's StopWatch, Snakemake's) is left alone.
The final rename is never cut in half: the signal waits for it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_publishing: list[bool] = []  # inside the renames that publish a result (nested: one entry each)
_pending: list[int] = []  # a SIGTERM that came meanwhile


def _terminated(signum, frame):
    if _publishing:
        _pending.append(signum)
        return
    raise SystemExit(128 + signum)  # unwinds through the atomic writes' cleanup


@contextlib.contextmanager
def _cleanup_on_sigterm():
    """SIGTERM raises SystemExit(143) inside the block where nothing else handles it."""
    own = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if own:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_wait():
    """A SIGTERM waits for the renames that publish a result (the handler runs in the main thread,
    between any two bytecodes: blocking the signal in one thread would not hold it back)."""
    _publishing.append(True)
    try:
        yield
    finally:
        _publishing.pop()
    if _pending and not _publishing:
        raise SystemExit(128 + _pending.pop())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to `path`; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared on a cluster
    try:
        with _cleanup_on_sigterm():
            yield Path(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            with _signals_wait():
                os.replace(tmp, path)
                if os.path.lexists(tmp):  # tmp and path were links of one file: rename(2) then does nothing
                    os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


CHECKSUM = "_sha256"


class CorruptFile(ValueError):
    """A result file that cannot be what its producer wrote; the message names the file."""


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def json_text(obj, checksum: bool = False) -> str:
    """JSON text; checksum=True embeds `_sha256` of the content, which read_json verifies: a
    truncated, appended-to or edited file is then always caught."""
    if checksum:
        obj = {**obj, CHECKSUM: _digest(obj)}
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_json(path, obj, checksum: bool = False) -> None:
    """JSON, written atomically (see json_text)."""
    write_text(path, json_text(obj, checksum))


def read_json(path, keys: tuple = ()) -> dict:
    """The content of a JSON file written by write_json, its checksum verified when it has one,
    `keys` required; any failure is a CorruptFile naming the file and what is wrong."""
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CorruptFile(f"{path}: not UTF-8 text at byte {e.start} (garbage written into it?)") from None
    except ValueError as e:
        raise CorruptFile(f"{path}: not valid JSON ({e}): truncated or overwritten") from None
    if not isinstance(obj, dict):
        raise CorruptFile(f"{path}: a JSON {type(obj).__name__}, expected an object")
    if CHECKSUM in obj:
        want = obj.pop(CHECKSUM)
        if _digest(obj) != want:
            raise CorruptFile(f"{path}: content differs from the checksum its producer recorded "
                              "(edited or damaged after it was written)")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CorruptFile(f"{path}: lacks {', '.join(map(repr, missing))}")
    return obj


def write_jsonl(path, rows) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory next to `path`; it replaces `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        with _cleanup_on_sigterm():
            yield tmp
            share_like_umask(tmp)
            with _signals_wait():
                replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def share_like_umask(root: Path) -> None:
    """Give every file under root the umask's permissions (read/write, execute where the owner has it).
    Some writers make 0600 files whatever the umask (safetensors: a temporary file renamed), so the
    weights would be the one result the group sharing a project directory cannot read."""
    mask = _umask()
    for p in Path(root).rglob("*"):
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        full = 0o777 if p.is_dir() or mode & 0o100 else 0o666
        if mode & 0o777 != full & ~mask:
            with contextlib.suppress(PermissionError):  # a hard link to another user's file
                os.chmod(p, full & ~mask)


def replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished directory `tmp` to `path`, replacing an existing one by renames only."""
    if path.exists():
        old = path.with_name(f".old-{path.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def read_jsonl(path) -> list[dict]:
    """Rows of a JSONL file; a line that is not a JSON object is a CorruptFile naming file and line."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError(f"a JSON {type(row).__name__}, expected an object")
                    rows.append(row)
    except UnicodeDecodeError as e:
        raise CorruptFile(f"{path}: not UTF-8 text at byte {e.start} (garbage written into it?)") from None
    except ValueError as e:
        raise CorruptFile(f"{path}: line {n} is not a JSON object ({e}): truncated or overwritten") from None
    return rows
