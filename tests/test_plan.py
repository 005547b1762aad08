"""Dry-runs plan the expected number of jobs per rule, computed from the config."""
import re
import subprocess

import yaml

from tests.conftest import ROOT


def planned(tmp_path, *extra):
    out = subprocess.run(["snakemake", "-n", "--quiet", "rules", "-s", str(ROOT / "Snakefile"),
                          "-d", str(tmp_path), *extra], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    stats = out.stdout.split("Job stats:")[-1]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    # evaluation jobs of several cells are rules evaluate_<tasks>_seeds_<seeds> (elicit/eval_jobs.py)
    jobs["evaluate"] = sum(v for k, v in jobs.items() if k.startswith("evaluate"))
    return jobs


def expected(cfg):
    sizes, subsets = len(cfg["sizes"]), len(cfg["data"]["subsets"])
    models = sizes * (3 + subsets)  # base, skyline, lora, full-n
    return {"train": sizes * (subsets + 1), "select_checkpoint": sizes * (subsets + 1),
            # no site memory: seeds_per_job auto puts every seed of a benchmark's tasks in one job
            "evaluate": models * len(cfg["benchmarks"]),
            "aggregate": 1, "split_data": 1, "fetch_data": 1}


def test_paper_grid(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    jobs = planned(tmp_path, "--configfile", str(ROOT / "config" / "config.yaml"))
    want = expected(cfg)
    assert {k: jobs.get(k) for k in want} == want
    assert want["train"] == 28 and want["evaluate"] == 72  # 24 full + 4 LoRA; 36 models x (AIME, GPQA)
    assert jobs["fetch_model"] == 8 and jobs["fetch_tasks"] == 1
    assert "demo_base" not in jobs


def test_demo_grid(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    jobs = planned(tmp_path)
    want = expected(cfg)
    assert {k: jobs.get(k) for k in want} == want
    assert jobs["demo_base"] == jobs["demo_skyline"] == len(cfg["sizes"])
    assert "fetch_model" not in jobs


def test_one_size_alone(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    jobs = planned(tmp_path, "--configfile", str(ROOT / "config" / "config.yaml"), "--config", "sizes=[32B]")
    per_size = 3 + len(cfg["data"]["subsets"])
    assert jobs["evaluate"] == per_size * 2 and jobs["train"] == len(cfg["data"]["subsets"]) + 1


def test_multi_node_training_is_one_srun_task_per_gpu(tmp_path):
    """32B trains on 2 nodes x 8 GPUs: the job is submitted with 16 GPUs, 8 tasks per node
    and the `mpi` resource (no `srun -n1` wrapper), and its command starts the ranks itself."""
    out = subprocess.run(["snakemake", "-n", "-p", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(ROOT / "config" / "config.yaml"), "--config", "sizes=[1.5B,32B]",
                          "--", "results/train/32B/full-29/metrics.jsonl", "results/train/1.5B/full-29/metrics.jsonl"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = {m[1]: m[0] for m in re.finditer(r"rule train:.*?wildcards: size=([\d.]+B).*?\n\n", out.stdout, re.S)}
    big, small = jobs["32B"], jobs["1.5B"]
    assert re.search(r"resources:.*\bgpu=16\b.*\bnodes=2\b.*\bcpus_per_task=8\b.*\bmpi=srun\b.*\btasks_per_node=8\b", big)
    assert "srun --nodes 2 --ntasks-per-node 8 --cpus-per-task 8 --kill-on-bad-exit=1 python" in big
    assert "mpi=" not in small and "tasks_per_node" not in small
    assert re.search(r"\bgpu=4\b", small) and "torchrun --standalone --nproc_per_node 4" in small
