"""A real single-node SLURM cluster for tests, started without systemd.

munged, slurmctld and slurmd run as child processes of the test process
(munged as user ``munge``), talk over loopback, and share one node
``localhost``. The config must live at /etc/slurm/slurm.conf: snakemake's
jobstep plugin drops SLURM_CONF, so a config elsewhere is not seen inside
jobs. Needs root and `.ci/install_slurm.sh`. See tests/slurm/README.md.

    with SlurmCluster() as cluster:
        subprocess.run(["sbatch", "-p", "gpu-large", "--wrap", "hostname"])
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
CONF = CONF_DIR / "slurm.conf"
MARKER = "# written by tests/slurm/cluster.py"
# Where the PIDs of the daemons we started are kept, so that a later run can
# stop daemons a crashed run left behind.
PID_RECORD = Path(tempfile.gettempdir()) / "slurm-test-cluster.json"
# Held while a cluster runs: a second pytest on the machine waits for it
# instead of killing its daemons as "stale".
LOCK = Path(tempfile.gettempdir()) / "slurm-test-cluster.lock"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET_DIR = Path("/run/munge")

NODE = "localhost"
# The node's features (sbatch -C) and the type of its fake GPUs (--gres=gpu:<type>:N; an untyped
# --gpus=N or --gres=gpu:N still matches them), for the site options' tests.
FEATURES = "fakecpu,fakenet"
GPU_TYPE = "fakegpu"
# partition -> MaxTime; the first one is the default partition
PARTITION_MAX_TIME = {"gpu-small": "04:00:00", "gpu-large": "2-00:00:00",
                      "cpu": "1-00:00:00"}
PARTITIONS = tuple(PARTITION_MAX_TIME)
DEFAULT_PARTITION = PARTITIONS[0]


def _which(name: str) -> str | None:
    """Daemons live in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def slurm_installed() -> bool:
    return all(_which(x) for x in ("slurmctld", "slurmd", "sbatch", "munged"))


def _run(*cmd: str, check=False, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def _alive(pid: int, names=("slurmctld", "slurmd", "munged")) -> bool:
    """True if pid runs one of our daemons (guards against PID reuse)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in names
    except OSError:
        return False


def _terminate(pids, timeout: float = 10.0) -> None:
    pids = [p for p in pids if p and _alive(p)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def cancel_all_jobs(timeout: float = 15.0) -> None:
    """scancel every job the running controller knows and wait until none runs."""
    out = _run("squeue", "-h", "-o", "%i", timeout=10)
    ids = out.stdout.split() if out.returncode == 0 else []
    if not ids:
        return
    _run("scancel", "--full", *ids, timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _run("squeue", "-h", "-o", "%i", timeout=10).stdout.split():
            return
        time.sleep(0.3)


class SlurmCluster:
    """Single-node cluster; node ``localhost`` in partitions PARTITIONS."""

    node = NODE
    partitions = PARTITIONS
    default_partition = DEFAULT_PARTITION

    def __init__(self, cpus: int = 8, memory_mb: int = 128000, gpus: int = 4,
                 min_job_age: int = 300,
                 start_timeout: float = 30.0, lock_timeout: float = 900.0):
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.min_job_age = min_job_age
        self.start_timeout, self.lock_timeout = start_timeout, lock_timeout
        self._lock = None
        self.state_dir: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self._saved_conf: Path | None = None

    # -- config -----------------------------------------------------------
    def slurm_conf(self) -> str:
        s = self.state_dir
        parts = "\n".join(
            f"PartitionName={p} Nodes={NODE} MaxTime={t} State=UP"
            + (" Default=YES" if p == DEFAULT_PARTITION else "")
            for p, t in PARTITION_MAX_TIME.items())
        gres = f" Gres=gpu:{GPU_TYPE}:{self.gpus}" if self.gpus else ""
        return f"""{MARKER}
ClusterName=testcluster
SlurmctldHost={NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={s}/ctld
SlurmdSpoolDir={s}/slurmd
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
MailProg=/bin/true
# no cgroups in a container; no slurmdbd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# keep finished jobs visible to squeue: the snakemake plugin polls squeue
MinJobAge={self.min_job_age}
ReturnToService=2
# reject jobs over a partition's limits at sbatch time (else they pend forever)
EnforcePartLimits=ALL
KillWait=5
InactiveLimit=0
# let a 2-core box advertise more CPUs / memory / GPUs than it has
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb}{gres} Features={FEATURES} State=UNKNOWN
{parts}
"""

    def _write_config(self) -> None:
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        if CONF.exists() and MARKER not in CONF.read_text():
            self._saved_conf = CONF.with_name("slurm.conf.saved-by-tests")
            CONF.rename(self._saved_conf)
        CONF.write_text(self.slurm_conf())
        # Fake GPUs: gres/gpu needs device files (Count= alone registers 0 GPUs),
        # so make char devices aliasing /dev/null (regular files if mknod fails;
        # slurmd then logs an error but still counts them). Jobs that ask for
        # GPUs get CUDA_VISIBLE_DEVICES as on a real cluster.
        gres = f"{MARKER}\n"
        if self.gpus:
            dev = self.state_dir / "dev"
            dev.mkdir()
            for i in range(self.gpus):
                try:
                    os.mknod(dev / f"gpu{i}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                except OSError:
                    (dev / f"gpu{i}").touch()
            gres += f"NodeName={NODE} Name=gpu Type={GPU_TYPE} File={dev}/gpu[0-{self.gpus - 1}]\n"
        (CONF_DIR / "gres.conf").write_text(gres)

    # -- stale leftovers ----------------------------------------------------
    @staticmethod
    def _stop_stale() -> None:
        """Stop daemons a previous (crashed) run left: from our PID record and
        from the pid files named in an old slurm.conf of ours."""
        pids, old_state = [], None
        if PID_RECORD.exists():
            try:
                record = json.loads(PID_RECORD.read_text())
                pids += record["pids"].values()
                old_state = record["state_dir"]
            except (ValueError, KeyError, AttributeError):
                pass
        if CONF.exists() and MARKER in CONF.read_text():
            for pidfile in re.findall(r"^Slurm\w*PidFile=(\S+)", CONF.read_text(), re.M):
                try:
                    pids.append(int(Path(pidfile).read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
        if any(_alive(p, ("slurmctld",)) for p in pids):
            cancel_all_jobs()
        _terminate(pids)
        PID_RECORD.unlink(missing_ok=True)
        if old_state and Path(old_state).name.startswith("slurm-test-"):
            shutil.rmtree(old_state, ignore_errors=True)

    # -- munge ----------------------------------------------------------------
    @staticmethod
    def _munge_works() -> bool:
        enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        if enc.returncode:
            return False
        return subprocess.run(["unmunge"], input=enc.stdout, capture_output=True,
                              timeout=10).returncode == 0

    def _start_munge(self) -> None:
        if self._munge_works():  # someone else's munged: use it, leave it alone
            return
        MUNGE_KEY.parent.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(MUNGE_KEY.parent, "munge", "munge")
        if not MUNGE_KEY.exists():
            MUNGE_KEY.write_bytes(os.urandom(1024))
        os.chmod(MUNGE_KEY, 0o400)
        shutil.chown(MUNGE_KEY, "munge", "munge")
        for d in (MUNGE_SOCKET_DIR, Path("/var/lib/munge"), Path("/var/log/munge")):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        self._spawn("munged", [_which("munged"), "--foreground", "--force"], user="munge")
        self._wait(self._munge_works, "munged to answer", ("munged",))

    # -- start / stop -----------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], user: str | None = None) -> None:
        # daemons run in the foreground and log to stderr: one file each
        log = open(self.state_dir / f"{name}.log", "wb")
        kw = dict(user=user, group=user, extra_groups=[]) if user else {}
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **kw)
        log.close()
        PID_RECORD.write_text(json.dumps({"state_dir": str(self.state_dir),
                                          "pids": {n: p.pid for n, p in self.procs.items()}}))

    def logs(self) -> str:
        out = []
        for f in sorted(self.state_dir.glob("*.log")):
            tail = "\n".join(f.read_text(errors="replace").splitlines()[-40:])
            out.append(f"==== {f} (last 40 lines) ====\n{tail}")
        return "\n".join(out)

    def _wait(self, ready, what: str, names) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [n for n in names if self.procs[n].poll() is not None]
            if dead:
                raise RuntimeError(f"SLURM test cluster: {dead} exited while waiting "
                                   f"for {what}.\n{self.logs()}")
            time.sleep(0.2)
        raise RuntimeError(f"SLURM test cluster: timed out after {self.start_timeout}s "
                           f"waiting for {what}.\n{self.logs()}")

    def node_state(self) -> str:
        r = _run("sinfo", "-h", "-n", NODE, "-o", "%T", timeout=10)
        return r.stdout.strip().split("\n")[0] if r.returncode == 0 else ""

    def _acquire_lock(self) -> None:
        self._lock = open(LOCK, "w")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.close()
                    self._lock = None
                    raise RuntimeError(f"SLURM test cluster: another process held {LOCK} "
                                       f"for {self.lock_timeout}s (a second test cluster?)")
                time.sleep(1)

    def start(self) -> "SlurmCluster":
        os.environ.pop("SLURM_CONF", None)  # clients must read /etc/slurm/slurm.conf
        self._acquire_lock()
        self._stop_stale()
        self.state_dir = Path(tempfile.mkdtemp(prefix="slurm-test-"))  # fresh state
        for d in ("ctld", "slurmd"):
            (self.state_dir / d).mkdir()
        self._write_config()
        t0 = time.monotonic()
        try:
            self._start_munge()
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i"])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE])
            self._wait(lambda: self.node_state() == "idle", f"node {NODE} to be idle",
                       ("slurmctld", "slurmd"))
        except BaseException:
            self.stop(keep_logs=True)
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, keep_logs: bool = False) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                cancel_all_jobs()
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
            if name in self.procs:
                p = self.procs.pop(name)
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
        PID_RECORD.unlink(missing_ok=True)
        if self._saved_conf is not None:
            self._saved_conf.replace(CONF)
            self._saved_conf = None
        if self.state_dir and not keep_logs:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
