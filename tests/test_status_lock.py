"""Issue 19: `snakemake status` tells a dead run from a live one. Snakemake's lock files hold no
pid; after a kill -9 the lock stays, and status used to call the dead cell "running"."""
import subprocess
import time

import pytest

import status
from tests.helpers import fake_snakemake


def test_a_lock_without_a_live_snakemake_is_stale(tmp_path):
    work = tmp_path / "work"
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.output.lock").write_text(f"{work / 'results/x.json'}\n")
    assert not status.live_snakemake(work)  # the lock of a killed run
    for args, live in (((), True), (("-n", "--nolock"), False)):
        proc = fake_snakemake(tmp_path, work, *args)
        try:
            assert status.live_snakemake(work) is live
            assert not status.live_snakemake(tmp_path)  # another directory
        finally:
            proc.kill()
            proc.wait()


def _locks(work):
    d = work / ".snakemake" / "locks"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@pytest.mark.slow  # a real demo run started (and stopped after ~1 min) beside status and a second run
def test_status_and_a_second_run_leave_a_live_runs_locks(tmp_path):
    """Issue 29 item 1. `snakemake status` was a locking run, and Snakemake 9.27 removes the whole
    .snakemake/locks directory when a locking run exits: the live run's locks too, so a second
    `snakemake` then started and ran the same jobs (two trainings in one run directory). Now status
    takes no lock, any run removes only its own lock files, a second run on the same results is
    refused while the first holds them, and `snakemake --unlock` still clears every lock."""
    import os
    import signal

    from tests.conftest import ROOT

    work = tmp_path / "work"
    work.mkdir()
    base = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work)]
    live = subprocess.Popen([*base, "--profile", str(ROOT / "profiles" / "local")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while len(_locks(work)) < 2 and live.poll() is None and time.time() - t0 < 120:
            time.sleep(0.2)
        held = _locks(work)
        assert held == ["0.input.lock", "0.output.lock"], held
        out = subprocess.run([*base, "status"], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0 and "Grid:" in out.stdout + out.stderr, out.stderr[-3000:]
        assert live.poll() is None, "the demo run ended before status did: nothing was tested"
        assert _locks(work) == held  # status touched no lock
        second = subprocess.run([*base, "--profile", str(ROOT / "profiles" / "local"), "--dry-run"],
                                capture_output=True, text=True, timeout=600)
        assert "Directory cannot be locked" in second.stdout + second.stderr
        assert _locks(work) == held  # a (dry) run that exits leaves the others' locks
        second = subprocess.run([*base, "--profile", str(ROOT / "profiles" / "local")], capture_output=True,
                                text=True, timeout=600)
        assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr
        assert live.poll() is None and _locks(work) == held
    finally:
        os.killpg(live.pid, signal.SIGKILL)  # as a crash would: the locks stay
        live.wait()
    assert _locks(work) == held
    out = subprocess.run([*base, "--unlock"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and _locks(work) == [], out.stderr[-2000:]
