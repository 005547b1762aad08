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
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def expected(cfg):
    sizes, subsets = len(cfg["sizes"]), len(cfg["data"]["subsets"])
    models = sizes * (3 + subsets)  # base, skyline, lora, full-n
    return {"train": sizes * (subsets + 1), "select_checkpoint": sizes * (subsets + 1),
            "evaluate": models * len(cfg["eval"]["tasks"]) * len(cfg["eval"]["seeds"]),
            "aggregate": 1, "split_data": 1, "fetch_data": 1}


def test_paper_grid(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    jobs = planned(tmp_path, "--configfile", str(ROOT / "config" / "config.yaml"))
    want = expected(cfg)
    assert {k: jobs.get(k) for k in want} == want
    assert want["train"] == 28 and want["evaluate"] == 432  # 24 full + 4 LoRA; 36 models x 3 x 4
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
    assert jobs["evaluate"] == per_size * 3 * 4 and jobs["train"] == len(cfg["data"]["subsets"]) + 1
