"""`snakemake status` reports what a dry-run would run, and what is corrupt, running, failed or
incomplete -- tested on a copy of the finished demo run, one state each."""
import base64
import json
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, copy_run, snakemake
from tests.helpers import fake_snakemake, planned_jobs

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
pytestmark = pytest.mark.slow


@pytest.fixture
def run(demo_run, tmp_path):
    return copy_run(demo_run, tmp_path / "run")


def status(work, *args):
    out = snakemake(work, "status", *args)
    text = out.stdout + out.stderr
    return text[text.index("Grid:"):]


def test_readme_command_works_as_printed():
    """`snakemake status` in the checkout, no --cores, no profile: the grid of the demo config."""
    out = subprocess.run(["snakemake", "status"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    # 5 + the variant's lora@lora-alpha1 + full-8's second training seed (full-8@tseed1, tiny-a only)
    assert "Grid: 2 sizes × 7 configurations × 2 tasks × 2 seeds" in out.stdout


def test_finished_run_is_done(run):
    text = status(run)
    assert "Nothing left to run for this grid" in text and "Evaluations: 52 done (of 52)" in text
    assert "Models: 9 done" in text  # 2 sizes x (lora, full-16, full-8, lora@lora-alpha1) + tiny-a's full-8@tseed1
    assert "full-8@tseed1" in text.split("tiny-b")[0] and "full-8@tseed1" not in text.split("tiny-b")[1]


def test_a_changed_setting_shows_what_the_dry_run_plans(run, tmp_path):
    """eval.temperature changed: every cell is outdated, and status counts what a dry-run runs
    (the old status said 'Nothing left to run' here: it only looked at files)."""
    cfg = tmp_path / "hot.yaml"
    cfg.write_text(yaml.safe_dump({**DEMO, "eval": {**DEMO["eval"], "temperature": 0.9}}))
    jobs = planned_jobs(run, "--configfile", str(cfg))
    text = status(run, "--configfile", str(cfg))
    assert jobs["evaluate"] == 26  # 52 cells (40 + the variant's 8 LoRA cells + 4 of full-8@tseed1), 2 seeds per job
    assert "A rerun would run 0 training(s) and 52 evaluation(s)" in text
    assert "52 outdated" in text and "outdated: results/eval/tiny-a/base/demo_aime/seed0.json (params changed)" in text


def test_each_state(run):
    rel = "results/eval/tiny-a/{}/demo_gpqa/seed{}.json"
    # missing: output and log gone; failed: output gone, log kept
    (run / rel.format("lora", 0)).unlink()
    (run / rel.format("lora", 0).replace("results/eval", "results/logs/eval").replace(".json", ".log")).unlink()
    (run / rel.format("lora", 1)).unlink()
    # incomplete: snakemake's marker, no run; running: marker and a live run's output lock
    for config, lock in (("base", False), ("skyline", True)):
        path = rel.format(config, 0)
        marker = run / ".snakemake" / "incomplete" / base64.urlsafe_b64encode(path.encode()).decode()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"external_jobid": None}))
        if lock:
            (run / ".snakemake" / "locks").mkdir(parents=True, exist_ok=True)
            (run / ".snakemake" / "locks" / "0.output.lock").write_text(f"{run / path}\n")
    # corrupt: a truncated result
    victim = run / rel.format("full-8", 1)
    victim.write_text(victim.read_text()[:40])
    def states():
        st = json.loads(subprocess.run(
            ["python", str(ROOT / "workflow" / "scripts" / "status.py"), "--config", str(ROOT / "config" / "demo.yaml"),
             "--workdir", str(run), "--json"], capture_output=True, text=True, check=True).stdout)
        return st, {(c["configuration"], k): v["state"] for c in st["cells"]
                    if (c["size"], c["task"]) == ("tiny-a", "demo_gpqa") for k, v in c["seeds"].items()}

    st, seeds = states()  # the lock of a killed run (kill -9): stale, nothing runs
    assert seeds[("skyline", "0")] == "incomplete"
    live = fake_snakemake(run.parent, run)  # a snakemake working in this directory holds it
    try:
        st, seeds = states()
    finally:
        live.kill()
        live.wait()
    assert seeds[("lora", "0")] == "missing" and seeds[("lora", "1")] == "failed"
    assert seeds[("base", "0")] == "incomplete" and seeds[("skyline", "0")] == "running"
    assert seeds[("full-8", "1")] == "corrupt" and seeds[("full-16", "0")] == "done"
    cell = next(c for c in st["cells"] if (c["size"], c["configuration"], c["task"]) == ("tiny-a", "lora", "demo_gpqa"))
    assert cell["state"] == "failed" and cell["done"] == 0
    text = subprocess.run(["python", str(ROOT / "workflow" / "scripts" / "status.py"), "--config",
                           str(ROOT / "config" / "demo.yaml"), "--workdir", str(run), "--check"],
                          capture_output=True, text=True)
    assert text.returncode == 1
    assert f"corrupt: {rel.format('full-8', 1)} ({run / rel.format('full-8', 1)}: not valid JSON" in text.stdout
    # what the dry-run plans: the jobs of the missing, the failed and the two incomplete cells, each
    # job both seeds of its task (lora, base, skyline x demo_gpqa: 6 files; the finished seed of a
    # job is restored from .done, not regenerated); not the corrupt one: Snakemake cannot know, the
    # plan refuses to start until it is fixed
    assert "A rerun would run 0 training(s) and 6 evaluation(s)" in text.stdout


def test_one_size(run):
    text = status(run, "--config", "sizes=[tiny-b]")
    assert "Grid: 1 sizes" in text and "tiny-a" not in text
