"""Issue 19, the scenarios that need Snakemake's planning, on one finished demo (the session's
`demo_run`, copied): a checkout moved elsewhere and a reordered data.subsets plan nothing; a
deleted published model and a deleted figure are rebuilt by the next run (no retraining) and
`snakemake --report` works; a training forced with --forcerun and killed with SIGTERM is resumed
by the plain rerun."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_run, snakemake
from tests.helpers import planned_jobs

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
SIZE = DEMO["sizes"][0]
NOTHING = "Nothing to be done"


def _descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_moved_checkout_and_reordered_subsets_plan_nothing(demo_run, tmp_path):
    checkout = tmp_path / "elsewhere" / "checkout"
    checkout.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "resources", "envs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, checkout / name)
    work = tmp_path / "moved-results"
    subprocess.run(["cp", "-a", str(demo_run), str(work)], check=True)
    cfg = {**DEMO, "data": {**DEMO["data"], "subsets": DEMO["data"]["subsets"][::-1]}}
    (tmp_path / "reordered.yaml").write_text(yaml.safe_dump(cfg))
    for extra in ((), ("--configfile", str(tmp_path / "reordered.yaml"))):
        out = subprocess.run(["snakemake", "-n", "-s", str(checkout / "Snakefile"), "--profile",
                              str(checkout / "profiles" / "local"), "-d", str(work), *extra],
                             capture_output=True, text=True)
        assert out.returncode == 0 and NOTHING in out.stdout + out.stderr, (extra, (out.stdout + out.stderr)[-3000:])


@pytest.mark.slow
def test_deleted_model_and_figure_are_rebuilt_then_report_works(demo_run, tmp_path):
    work = copy_run(demo_run, tmp_path / "run")
    model = work / "results" / "models" / SIZE / "full-16" / "model"
    figure = work / "results" / "figures" / "bars.png"
    shutil.rmtree(model)
    figure.unlink()
    jobs = planned_jobs(work)
    assert jobs.get("select_checkpoint") == 1 and jobs.get("aggregate") == 1 and "train" not in jobs, jobs
    snakemake(work)
    assert (model / "model.safetensors").is_file() and figure.is_file()
    assert NOTHING in (lambda o: o.stdout + o.stderr)(snakemake(work, "-n"))
    snakemake(work, "--report", str(work / "report.zip"))
    assert (work / "report.zip").stat().st_size > 10_000


@pytest.mark.slow
def test_forced_training_killed_by_sigterm_resumes_on_the_plain_rerun(demo_run, tmp_path):
    work = copy_run(demo_run, tmp_path / "run")
    run = work / "results" / "train" / SIZE / "full-16"
    shutil.rmtree(run / ".done")  # as after a code edit: the forced run really trains
    log = work / "results" / "logs" / "train" / SIZE / "full-16.log"
    log.unlink()  # the finished run's log also has a step 10
    target = f"results/train/{SIZE}/full-16/metrics.jsonl"
    proc = subprocess.Popen(["snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles" / "local"),
                             "-d", str(work), "--forcerun", "train", "--", target],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, killed = time.time() + 300, False
    while time.time() < deadline and proc.poll() is None and not killed:
        time.sleep(0.5)
        if log.exists() and '"step": 10' in log.read_text():
            for pid in _descendants(proc.pid):
                if "train.py" in _cmdline(pid) and "python" in _cmdline(pid).split()[0]:
                    os.kill(pid, signal.SIGTERM)
                    killed = True
    text = proc.communicate(timeout=300)[0]
    assert killed and proc.returncode != 0, text[-3000:]
    assert "stop requested: saved resume state" in log.read_text()
    jobs = planned_jobs(work)
    assert jobs.get("train") == 1 and jobs.get("select_checkpoint") == 1, jobs
    snakemake(work)
    assert "resumed at step" in log.read_text()
    assert NOTHING in (lambda o: o.stdout + o.stderr)(snakemake(work, "-n"))


@pytest.mark.slow
def test_a_targeted_cell_rebuilds_its_deleted_model(demo_run, tmp_path):
    """Issue 29, item 6: after `rm -rf` of a published model, asking for one of its cells plans the
    model's re-publication (before: no selection was planned and the job failed on the missing model,
    every time); then the plain run plans nothing."""
    work = copy_run(demo_run, tmp_path / "run")
    shutil.rmtree(work / "results" / "models" / SIZE / "lora" / "model")
    cell = work / "results" / "eval" / SIZE / "lora" / "demo_aime" / "seed1.json"
    cell.unlink()
    target = str(cell.relative_to(work))
    jobs = planned_jobs(work, "--", target)
    assert jobs.get("select_checkpoint") == 1 and "train" not in jobs and jobs["evaluate"] == 1, jobs
    snakemake(work, "--", target)
    assert cell.is_file() and (work / "results" / "models" / SIZE / "lora" / "model" / "adapter_config.json").is_file()
