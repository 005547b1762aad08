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
    # evaluation jobs of several cells are rules evaluate_<tasks>_seeds_<seeds> (elicit/plan/eval_jobs.py)
    jobs["evaluate"] = sum(v for k, v in jobs.items() if k.startswith("evaluate"))
    return jobs


def expected(cfg):
    from elicit.checks.config import check
    from elicit.variants import cells, trained_runs

    cfg = check(cfg)
    sizes, subsets = cfg["sizes"], len(cfg["data"]["subsets"])
    # base, skyline, lora, full-n, the variants' cells (an extra training seed's: in train.seed_sizes only)
    models = sum(3 + subsets + len(cells(cfg, s)) for s in sizes)
    trained = sum(subsets + 1 + len(trained_runs(cfg, s)) for s in sizes)
    return {"train": trained, "select_checkpoint": trained,
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
    # + the variant's LoRA, + full-8's second training seed in tiny-a; a job per model and benchmark
    assert want["train"] == 2 * (2 + 1 + 1) + 1 and want["evaluate"] == (2 * (5 + 1) + 1) * 2
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


VARIANTS = "variants: {lora-alpha1: {lora: {alpha: 1}}, topp-0.95: {eval: {top_p: 0.95}}}\n"


def test_variants_run_only_the_jobs_they_change(tmp_path):
    """A LoRA-alpha variant retrains only the LoRA runs; an eval-only variant retrains nothing and
    evaluates every configuration again with the default's trained models and its own settings."""
    paper = ["--configfile", str(ROOT / "config" / "config.yaml")]
    (tmp_path / "variants.yaml").write_text(VARIANTS)
    with_variants = [*paper, str(tmp_path / "variants.yaml")]  # snakemake merges the two files
    base, jobs = planned(tmp_path, *paper), planned(tmp_path, *with_variants)
    assert jobs["train"] - base["train"] == 4  # lora@lora-alpha1 per size
    # lora@alpha1 and all 9 configs @topp; a job per model and benchmark (AIME, GPQA), every seed in it
    assert jobs["evaluate"] - base["evaluate"] == 4 * (1 + 9) * 2
    out = subprocess.run(["snakemake", "-n", "-p", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), *with_variants,
                          "--", "results/train/7B/lora@lora-alpha1/metrics.jsonl",
                          "results/eval/7B/full-928@topp-0.95/aime24/seed0.json",
                          "results/eval/7B/lora@lora-alpha1/aime24/seed0.json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    trains = re.findall(r"rule train:.*?\n\n", out.stdout, re.S)  # full-928 too: its @topp cell needs it
    lora = [t for t in trains if "lora@lora-alpha1" in t]
    assert len(lora) == 1 and "--lora-alpha 1 " in lora[0]
    assert not any("full-928@" in t for t in trains)  # an evaluation-only variant retrains nothing
    # one cell's job or a grouped job (rule evaluate_<tasks>_seeds_<seeds>, elicit/plan/eval_jobs.py)
    ev = {m[1]: m[0] for m in re.finditer(r"rule evaluate\w*:.*?config=([^,\n]+).*?\n\n", out.stdout, re.S)}
    assert "--model results/models/7B/full-928/model " in ev["full-928@topp-0.95"]
    assert "--top-p 0.95 " in ev["full-928@topp-0.95"]
    assert "--adapter results/models/7B/lora@lora-alpha1/model " in ev["lora@lora-alpha1"]
    assert "--top-p 1.0 " in ev["lora@lora-alpha1"]
