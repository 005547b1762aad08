"""The real single-node SLURM cluster (tests/slurm) and snakemake's slurm executor on it."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import wait_job

pytestmark = pytest.mark.slurm

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
@pytest.mark.parametrize("partition", ["gpu-large", "gpu-small"])
def test_sbatch_runs_in_partition(slurm_cluster, tmp_path, partition):
    assert partition in slurm_cluster.partitions
    out = tmp_path / "partition.txt"
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--partition", partition, "--gpus=1",
         "-D", str(tmp_path), "-o", str(tmp_path / "slurm.log"),
         "--wrap", f"echo $SLURM_JOB_PARTITION > {out}; echo $CUDA_VISIBLE_DEVICES >> {out}"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert wait_job(job_id) == "COMPLETED", (tmp_path / "slurm.log").read_text()
    assert out.read_text().split() == [partition, "0"]


SNAKEFILE = """
localrules: all

rule all:
    input: "small.txt", "large.txt"

rule small:
    output: "small.txt"
    resources: slurm_partition="gpu-small"
    shell: "echo $SLURM_JOB_PARTITION > {output}"

rule large:
    output: "large.txt"
    resources: slurm_partition="gpu-large", gpu=1
    shell: "echo $SLURM_JOB_PARTITION $CUDA_VISIBLE_DEVICES > {output}"
"""

# The keys tests/slurm/README.md explains; plugin snakemake-executor-plugin-slurm 2.x.
PROFILE = """
executor: slurm
jobs: 4
latency-wait: 5
slurm-status-command: squeue
slurm-init-seconds-before-status-checks: 2
slurm-no-account: true
default-resources:
  - slurm_partition=gpu-small
  - runtime=10
  - mem_mb=500
"""


def test_snakemake_slurm_executor(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(textwrap.dedent(PROFILE))
    t0 = time.monotonic()
    run = subprocess.run(
        [SNAKEMAKE, "--profile", str(profile), "-d", str(tmp_path),
         "-s", str(tmp_path / "Snakefile")],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    log = f"snakemake took {time.monotonic() - t0:.1f}s\n{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, log
    assert (tmp_path / "small.txt").read_text().split() == ["gpu-small"], log
    assert (tmp_path / "large.txt").read_text().split() == ["gpu-large", "0"], log


MPI_SNAKEFILE = """
from elicit import slurm

rule ranks:
    output: "ranks.jsonl"
    resources: slurm_partition="gpu-large", gpu=2, nodes=1, mpi="srun", tasks_per_node=2, cpus_per_task=1
    params: launcher=slurm.srun_tasks(nodes=1, tasks_per_node=2, cpus_per_task=1)
    shell: "{{params.launcher}} rank.py > {{output}}"
"""
RANK_PY = """
import json, os
from elicit import slurm
print(json.dumps({**slurm.ranks_from_slurm(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}))
"""


def test_multi_node_launch_through_the_executor(slurm_cluster, tmp_path):
    """The path common.smk gives multi-node training: the `mpi` resource keeps the jobstep
    plugin from wrapping the job in `srun -n1` and stripping it to one task, so the rule's
    own `srun` (launch.srun_tasks) starts one task per GPU; each task derives its
    torch.distributed rank from SLURM. One node here (the test cluster has one)."""
    scripts = str(Path(__file__).resolve().parents[1] / "workflow" / "scripts")
    (tmp_path / "Snakefile").write_text(MPI_SNAKEFILE.format(scripts=scripts))
    (tmp_path / "rank.py").write_text(RANK_PY)
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(textwrap.dedent(PROFILE))
    run = subprocess.run([SNAKEMAKE, "--profile", str(profile), "-d", str(tmp_path), "-s",
                          str(tmp_path / "Snakefile")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=180, env={**__import__("os").environ, "PYTHONPATH": scripts})
    assert run.returncode == 0, run.stdout + run.stderr
    import json

    ranks = sorted((json.loads(line) for line in (tmp_path / "ranks.jsonl").read_text().splitlines()),
                   key=lambda r: r["RANK"])
    assert [(r["RANK"], r["LOCAL_RANK"], r["WORLD_SIZE"]) for r in ranks] == [("0", "0", "2"), ("1", "1", "2")]
    assert len({(r["MASTER_ADDR"], r["MASTER_PORT"]) for r in ranks}) == 1
    assert all(r["gpus"] and len(r["gpus"].split(",")) == 2 for r in ranks), ranks
