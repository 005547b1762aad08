"""Issue 19: `snakemake status` tells a dead run from a live one. Snakemake's lock files hold no
pid; after a kill -9 the lock stays, and status used to call the dead cell "running"."""
import subprocess
import sys
import time

import status


def _fake_snakemake(tmp_path, cwd, *args):
    """A process whose program is named snakemake, working in `cwd` (as a real run does after -d)."""
    exe = tmp_path / "bin" / "snakemake"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(exe), *args], cwd=cwd)
    time.sleep(0.3)
    return proc


def test_a_lock_without_a_live_snakemake_is_stale(tmp_path):
    work = tmp_path / "work"
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.output.lock").write_text(f"{work / 'results/x.json'}\n")
    assert not status.live_snakemake(work)  # the lock of a killed run
    for args, live in (((), True), (("-n", "--nolock"), False)):
        proc = _fake_snakemake(tmp_path, work, *args)
        try:
            assert status.live_snakemake(work) is live
            assert not status.live_snakemake(tmp_path)  # another directory
        finally:
            proc.kill()
            proc.wait()
