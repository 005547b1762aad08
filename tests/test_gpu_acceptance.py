"""bench/gpu_acceptance.sh --rehearse: the GPU acceptance run (config/gpu_smoke.yaml, whole DAG, one
table of checks) on CPU with tiny sizes, so that a GPU run cannot fail for a reason a CPU run could
have caught. ~3-4 min on 2 cores (the DeepSpeed comm op is JIT-compiled once per machine)."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, child_env, table_rows


@pytest.mark.slow
def test_rehearsal_passes_every_check(tmp_path):
    work = tmp_path / "smoke"
    env = child_env(threads=1, WORK=str(work), CORES=str(os.cpu_count() or 2))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_acceptance.sh"), "--rehearse"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "ALL PASS" in out
    rows = table_rows(out)
    for check in ("rules: whole DAG finished", "rules: rerun plans nothing", "train full-16: tokens/s, MFU",
                  "train lora: loss", "eval speed: default vs plain hf (batches of 8)", "eval attention (hf-cb)"):
        assert rows.get(check) == "PASS", (check, rows)
    assert rows["train full-16: peak memory"] == "SKIP"  # no CUDA allocator on CPU
    # the DAG ran the override's tiny model, the GPU file's settings otherwise
    cfg = yaml.safe_load((ROOT / "config" / "gpu_smoke.yaml").read_text())
    size = cfg["sizes"][0]
    assert (work / "results" / "table1.csv").is_file()
    assert (work / "results" / "eval" / size / "full-16" / cfg["eval"]["tasks"][0] / "seed0.json").is_file()
    # training went through DeepSpeed ZeRO-2 in one process, as on the GPU
    assert "deepspeed zero2" in (work / "results" / "logs" / "train" / size / "full-16.log").read_text()


def test_gpu_smoke_plans_the_whole_dag():
    """`snakemake -n --configfile config/gpu_smoke.yaml` plans every rule (no GPU or hub needed)."""
    proc = subprocess.run(["snakemake", "-n", "--configfile", "config/gpu_smoke.yaml", "--quiet", "rules"], cwd=ROOT,
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("demo_base", "train", "select_checkpoint", "evaluate", "aggregate", "report"):
        assert rule in proc.stdout, rule


def test_pilot_plans_on_the_slurm_profile():
    """The README's step before the grid: the real 1.5B models, one subset, one seed, planned with the
    SLURM profile (the plan needs no hub access)."""
    proc = subprocess.run(["snakemake", "-n", "--profile", "profiles/slurm", "--configfile", "config/pilot.yaml",
                           "--quiet", "rules"], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = proc.stdout.split("Job stats:")[-1]
    assert any(line.split() == ["train", "2"] for line in stats.splitlines()), stats  # full-29 and the LoRA
    cfg = yaml.safe_load((ROOT / "config" / "pilot.yaml").read_text())
    jobs = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines() if len(line.split()) == 2
            and line.split()[1].isdigit()}
    # base, skyline, full-29, lora: a job per model and benchmark (its tasks, the one seed)
    assert sum(v for k, v in jobs.items() if k.startswith("evaluate")) == 4 * len(cfg["benchmarks"]), stats
