"""How a training job starts its processes, and how each process finds its rank.

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
import subprocess


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
