"""Snakemake's locks, kept while their run lives (the workflow installs this when it is parsed).

Snakemake 9.27 deletes the whole `.snakemake/locks` directory when any locking run exits (file
persistence, `_delete_locks`): the locks of a run still going on went with it, and a second
`snakemake` on the same results then started and ran the same jobs (issue 29). With `keep_others()`
a run that exits deletes only its own lock files (and the directory once empty); `snakemake --unlock`
still removes every lock, as documented. A second run whose jobs overlap a live run's is then refused
by Snakemake's own check ("Directory cannot be locked"). `snakemake status` takes no lock at all
(workflow/rules/aggregate.smk).
"""
from __future__ import annotations

import contextlib
import os


def keep_others() -> bool:
    """Patch Snakemake's file persistence (pinned 9.27.1): unlock -> own files only. False where the
    Snakemake in use has no such method (another version: the test of this module fails)."""
    from snakemake.persistence import PersistenceBase
    from snakemake.persistence.file import FilePersistence

    if getattr(FilePersistence, "_keeps_others", False):
        return True
    if not all(hasattr(FilePersistence, a) for a in ("_delete_locks", "_write_locks", "unlock", "cleanup_locks")):
        return False

    def unlock(self) -> None:  # the end of this run's `with persistence.lock()`
        if not isinstance(self, FilePersistence):  # the database persistence: as Snakemake does
            return self._delete_locks()
        for lockfile in self._lockfile.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(lockfile)
        self._lockfile.clear()
        with contextlib.suppress(OSError):  # other runs' locks are left: not empty
            os.rmdir(self._lockdir)

    def cleanup_locks(self) -> None:  # `snakemake --unlock`: every lock, a crashed run's too
        self._delete_locks()

    PersistenceBase.unlock, PersistenceBase.cleanup_locks = unlock, cleanup_locks
    FilePersistence._keeps_others = True
    return True


def take_none() -> None:
    """This Snakemake process takes, checks and deletes no lock (what --nolock does; `snakemake status`,
    which reads and writes only its own log). Its execution settings do not exist yet when the
    workflow is parsed, so the lock itself is made a no-op."""
    from snakemake.persistence import PersistenceBase

    @contextlib.contextmanager
    def lock(self):
        yield

    PersistenceBase.lock = lock
