"""Running on SLURM: how a job starts its ranks, how each finds its rank, the job's clock and
when to stop before it runs out, shell arguments built from config values, and the checks run
before anything is submitted.

* 1 GPU (or CPU):            python train.py ...
* 1 node, G GPUs:            torchrun --standalone --nproc_per_node G train.py ...
* N nodes x G GPUs:          srun --nodes N --ntasks-per-node G ... python train.py ...
  one SLURM task per GPU; each rank reads SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID and
  meets the others at the first node of the step, port 20000 + job id % 20000.

Why srun tasks and not srun + torchrun: snakemake's SLURM jobstep plugin wraps ordinary
jobs in `srun -n1` (a one-node step) and strips SLURM_* from their environment. A job
with the `mpi` resource is not wrapped, so its shell command may start the step itself;
common.smk gives multi-node training jobs `mpi`, `tasks_per_node` = GPUs per node and
`gpu` = the job's total (the plugin submits it as --gpus). Every flag is explicit below
because the stripped environment carries no defaults.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time


def launcher(gpus: int, nodes: int = 1, cpus_per_task: int = 1) -> str:
    """Shell prefix that runs `<prefix> train.py ...` over the job's devices."""
    if nodes > 1:
        return srun_tasks(nodes, max(1, gpus), cpus_per_task)
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus}"
    return "python"


def srun_tasks(nodes: int, tasks_per_node: int, cpus_per_task: int) -> str:
    """One SLURM task per rank; --kill-on-bad-exit so a crashed rank ends the step."""
    return (f"srun --nodes {nodes} --ntasks-per-node {tasks_per_node} "
            f"--cpus-per-task {cpus_per_task} --kill-on-bad-exit=1 python")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list such as 'gpu[01-04],gpu07'."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0]


def ranks_from_slurm(env: dict | None = None) -> dict:
    """torch.distributed's env:// variables for a process started by srun (one per rank).

    Returns {} when torchrun already set them, or outside a multi-task SLURM step."""
    env = os.environ if env is None else env
    if "RANK" in env or int(env.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return {}
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env["SLURM_NODELIST"]
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_NTASKS"],
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodelist),
            "MASTER_PORT": env.get("MASTER_PORT") or str(20000 + int(env["SLURM_JOB_ID"]) % 20000)}


# ----------------------------------------------------------------------------- the job's clock
def slurm_seconds(text: str) -> float | None:
    """Seconds in a SLURM duration ('[D-]HH:MM:SS', 'MM:SS', 'SS'); None for UNLIMITED etc."""
    days, _, hms = text.strip().rpartition("-")
    try:
        parts = [int(x) for x in hms.split(":")]
        d = int(days) if days else 0
    except ValueError:
        return None
    if not 1 <= len(parts) <= 3:
        return None
    secs = 0
    for x in parts:
        secs = secs * 60 + x
    return float(d * 86400 + secs)


def job_end() -> float | None:
    """Epoch seconds at which SLURM ends this job; None outside SLURM or without a limit."""
    if os.environ.get("SLURM_JOB_END_TIME"):  # Slurm >= 23.02 exports it
        return float(os.environ["SLURM_JOB_END_TIME"])
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:  # older Slurm: the time left, as squeue reports it now
        left = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    secs = slurm_seconds(left)
    return None if secs is None else time.time() + secs


class StopWatch:
    """Whether to stop early: a SIGTERM/SIGUSR1 was received, or the job's time limit is within
    `margin_min` minutes (0: the clock is not watched).

    SLURM's own warning signal cannot reach train.py under snakemake's executor (see
    workflow/rules/train.smk), so the job watches its clock instead: `margin_min` before the
    limit it saves the resume state and exits 143; the retry continues.

    Test hook: env TRAIN_SIGNAL_AT="7:TERM,12:USR1" makes this process send itself that signal when
    due() is asked at that step (a real signal through the real handler, landing at an exact step:
    the kill-and-resume tests choose the steps that matter instead of racing the clock)."""

    def __init__(self, margin_min: float = 0.0):
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._request)
        self.end = job_end() if margin_min > 0 else None
        self.deadline = None if self.end is None else self.end - 60 * margin_min
        self.signal_at = {int(step): getattr(signal, f"SIG{name}") for step, name in
                          (x.split(":") for x in os.environ.get("TRAIN_SIGNAL_AT", "").split(",") if x)}

    def _request(self, *_) -> None:
        self.requested = True

    def due(self, step: int | None = None) -> bool:
        if step in self.signal_at:
            os.kill(os.getpid(), self.signal_at.pop(step))  # handled before os.kill returns (CPython)
        if self.deadline is not None and time.time() >= self.deadline and not self.requested:
            self.requested = True
            print("the job's time limit is within stop_margin_min: saving the resume state", flush=True)
        return self.requested


# ----------------------------------------------------------------------------- shell arguments
def cli(args: dict) -> str:
    """`--key value` pairs, every value shell-quoted (config strings never reach the shell raw);
    True = a bare flag, None/False = left out, '' = an explicit empty value."""
    out = []
    for k, v in args.items():
        if v is True:
            out.append(f"--{k}")
        elif v is not None and v is not False:
            out.append(f"--{k} {shlex.quote(str(v))}")
    return " ".join(out)


# ----------------------------------------------------------------------------- onstart guards
def missing_site(executor: str | None, site: dict) -> str:
    if executor == "slurm" and not site:
        return ("site settings missing for the slurm executor (no partition for any job): run with the "
                "project's profile, `snakemake --profile profiles/slurm ...` (its default-resources name "
                "profiles/slurm/site.yaml), or add `--config site=profiles/slurm/site.yaml`")
    return ""


def orphan_slurm_jobs(workdir: str) -> str:
    """Jobs the snakemake SLURM plugin submitted (comment rule_...) from this workdir, still queued."""
    if shutil.which("squeue") is None:
        return ""
    try:
        out = subprocess.run(["squeue", "--me", "-h", "-o", "%i|%T|%k|%Z"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    here = os.path.realpath(workdir)
    jobs = []
    for line in out.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[2].startswith("rule_") and os.path.realpath(parts[3]) == here:
            jobs.append(f"{parts[0]} ({parts[1].lower()}, {parts[2]})")
    if not jobs:
        return ""
    ids = " ".join(j.split()[0] for j in jobs)
    return (f"{len(jobs)} SLURM job(s) of an earlier snakemake still run in {here}: {', '.join(jobs[:5])}"
            f"{' ...' if len(jobs) > 5 else ''}. They would race this run on the same outputs: wait for "
            f"them, or `scancel {ids}`; then rerun (after a killed snakemake: `snakemake --unlock` first).")
