"""The site options on a real SLURM: the submitted jobs carry them (scontrol).

One demo training job (tiny-a, full-8, asking 1 GPU) is run through the test profile
(tests/test_slurm_grid.make_profile) with site settings that use every option: `constraint`,
`gpu_request: gres` with a `gpu_model`, `no_account`, and `mem_increase_per_retry`. Its first
attempt fails (an injected exit, as in test_slurm_grid), so the retry shows the memory growth.
"""
import os
import re
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import FAIL_ONCE, make_profile
from tests.slurm.cluster import GPU_TYPE

SITE = {"account": None, "no_account": True, "constraint": "fakenet", "gpu_request": "gres",
        "gpu_model": GPU_TYPE, "mem_increase_per_retry": 0.5, "partitions": {"default": "gpu-small"}}
TRAIN_OUT = "results/train/tiny-a/full-8"


def job_fields(job_id: str) -> dict:
    line = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", line))


def mem_mb(value: str) -> int:
    n, unit = re.fullmatch(r"([\d.]+)([MGT])", value).groups()
    return int(float(n) * {"M": 1, "G": 1024, "T": 1024 ** 2}[unit])


@pytest.mark.slurm
@pytest.mark.slow
def test_site_options_reach_the_submitted_job(slurm_cluster, tmp_path):
    make_profile(tmp_path)
    (tmp_path / "site.yaml").write_text(yaml.safe_dump({"site": SITE}))
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["sizes"], cfg["data"]["subsets"], cfg["eval"]["seeds"] = ["tiny-a"], [8], [0]
    cfg["train"].update(max_steps=4, eval_every=2, warmup_steps=0)
    cfg["models"]["tiny-a"]["train"].update(gpus=1, mem_gb=2)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(FAIL_ONCE)
    # the hook first; then this checkout's package (elicit.run), as the shell of a job imports it
    path = os.pathsep.join([str(tmp_path / "hook"), str(ROOT / "workflow" / "scripts")])
    env = {**os.environ, "PYTHONPATH": path, "FAIL_ONCE_OUTPUT": TRAIN_OUT,
           "FAIL_ONCE_MARKER": str(tmp_path / "failed-once")}
    run = subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(tmp_path / "profile"),
                          "-d", str(tmp_path / "work"), f"{TRAIN_OUT}/metrics.jsonl"],
                         capture_output=True, text=True, env=env, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert (tmp_path / "failed-once").exists()  # the first attempt failed and was retried
    jobs = [job_fields(j) for j in re.findall(r"has been submitted with SLURM jobid (\d+)", out)]
    train = [j for j in jobs if j.get("Comment", "").startswith("rule_train_")]
    assert len(train) == 2, [j.get("Comment") for j in jobs]
    for job in train:
        assert job["Features"] == "fakenet", job
        assert job["TresPerNode"] == f"gres:gpu:{GPU_TYPE}:1", job  # --gres=gpu:<model>:N, not --gpus
        assert job.get("TresPerJob", "") == "", job
        assert job["Account"] == "(null)", job  # no -A
    first, retry = sorted(train, key=lambda j: int(j["JobId"]))
    assert mem_mb(first["MinMemoryNode"]) == 2048 and mem_mb(retry["MinMemoryNode"]) == 3072, (first, retry)
