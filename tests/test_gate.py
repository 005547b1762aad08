"""The fail-fast gate (issue 31): the larger sizes' GPU jobs wait for the smallest size's pilot.

workflow/scripts/gate.py on a pilot's files (sane, a non-finite loss, answers that do not parse);
the dry-runs of the demo and the paper grid show rule gate and the gated jobs' order-only input;
`gate: open` and a single size have no gate; on the finished demo neither adding, opening nor
deleting the gate plans anything, and a failing pilot stops the run before a larger size starts.
(On a real SLURM: tests/test_slurm_grid.py checks that the larger size is submitted after the gate.)
"""
import json
import math
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, copy_run, snakemake

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
PAPER = ["--configfile", str(ROOT / "config" / "config.yaml")]


def pilot_files(d, loss=0.5, responses=("The answer is $\\boxed{7}$.", "no idea")):
    metrics, sel, cell = d / "metrics.jsonl", d / "selection.json", d / "seed0.json"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 0, "val_loss": 2.0}, {"step": 1, "train_loss": loss, "grad_norm": 1.0},
        {"step": 2, "val_loss": 1.5, "best_val_loss": 1.5}]))
    sel.write_text(json.dumps({"selected_step": 2, "selected_val_loss": 1.5, "best_val_loss": 1.5}))
    cell.write_text(json.dumps({"score": 50.0, "n_samples": len(responses)}))
    (d / "seed0.samples.jsonl").write_text("".join(json.dumps({"response": r}) + "\n" for r in responses))
    return ["--metrics", str(metrics), "--selection", str(sel), "--cell", str(cell), "--out", str(d / "gate.json")]


def gate(args):
    return subprocess.run([sys.executable, "-m", "elicit.run", "gate", *args], capture_output=True, text=True)


def test_a_sane_pilot_opens_the_gate(tmp_path):
    out = gate(pilot_files(tmp_path))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "gate.json").read_text())["answers_parsed"] == 1
    assert not (tmp_path / "gate.pending.json").exists()


@pytest.mark.parametrize("broken, message", [
    (dict(loss=math.nan), "train_loss is nan at step 1"),
    (dict(responses=("", "garbage garbage", "")), "no answer parses: 0 of 3 answers"),
])
def test_a_broken_pilot_keeps_it_shut_naming_what_failed_and_the_fix(tmp_path, broken, message):
    out = gate(pilot_files(tmp_path, **broken))
    assert out.returncode == 1 and not (tmp_path / "gate.json").exists()
    assert message in out.stderr and "fix:" in out.stderr and "--config gate=open" in out.stderr, out.stderr
    # left beside it: the larger sizes' finished jobs keep waiting for the next check (elicit/plan/gate.py)
    assert message in json.dumps(json.loads((tmp_path / "gate.pending.json").read_text())["failed"])


def dry_run(workdir, *args):
    out = subprocess.run(["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def jobs(text):
    """(rule, size or None, input) of each planned job of a dry-run's output."""
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            size = re.search(r"wildcards:.*?\bsize=([\w.-]+)", block)
            inputs = re.search(r"^\s+input: (.*)$", block, re.M)
            yield m[1], size and size[1], inputs[1] if inputs else ""


@pytest.mark.parametrize("args, sizes", [((), DEMO["sizes"]), (PAPER, ["1.5B", "7B", "14B", "32B"])])
def test_dry_run_shows_the_gate_and_the_larger_sizes_wait_for_it(tmp_path, args, sizes):
    out = dry_run(tmp_path, *args)
    gate_file = f"results/gate/{sizes[0]}.json"
    assert f"fail-fast gate: the GPU jobs of {', '.join(sizes[1:])} wait for {gate_file}" in out.stderr
    planned = list(jobs(out.stdout))
    gate_jobs = [inp for rule, _, inp in planned if rule == "gate"]
    assert len(gate_jobs) == 1 and "/full-" in gate_jobs[0]  # the pilot: a full finetune, its selection, a cell
    gpu = [(rule, size, inp) for rule, size, inp in planned if rule == "train" or rule.startswith("evaluate")]
    assert {size for _, size, _ in gpu} == set(sizes)
    for rule, size, inp in gpu:
        assert (gate_file in inp) == (size != sizes[0]), (rule, size, inp)
    # opened, or one size: no gate
    for opened in (("--config", "gate=open"), ("--config", f"sizes=[{sizes[-1]}]")):
        out = dry_run(tmp_path, *args, *opened)
        assert "results/gate/" not in out.stdout and "fail-fast gate" not in out.stderr


@pytest.mark.slow
def test_finished_grid_plans_nothing_whatever_the_gate(demo_run, tmp_path):
    work = copy_run(demo_run, tmp_path / "work")
    assert (work / "results" / "gate" / f"{DEMO['sizes'][0]}.json").exists()  # the demo ran behind its gate
    for args in ((), ("--config", "gate=open")):
        assert "Nothing to be done" in snakemake(work, "-n", *args).stdout
    shutil.rmtree(work / "results" / "gate")  # a grid finished before the gate existed (or its file deleted)
    out = snakemake(work, "-n")
    assert "Nothing to be done" in out.stdout, out.stdout[-3000:]
    # ... a missing larger-size cell then waits for the gate again: rebuilt, it reruns nothing else
    cell = work / "results" / "eval" / DEMO["sizes"][1] / "full-8" / "demo_gpqa" / "seed1.json"
    cell.unlink()
    planned = {rule for rule, _, _ in jobs(snakemake(work, "-n").stdout)}
    assert planned == {"gate", "evaluate_demo_gpqa_seeds_0_1", "aggregate", "report", "all"}, planned


def test_a_passed_gate_hides_no_rerun_of_the_larger_sizes(tmp_path):
    """A passed gate stays open: a job behind a gate that reruns would have its own rerun reasons (a
    changed setting) skipped by Snakemake (it does not look at the jobs after a rerun job, and skips
    those linked to it only by an ancient input) -- the larger sizes would keep answers of the old
    settings. So only a job of a gated size that has not finished, or any after a failed check, waits."""
    from elicit.plan import gate

    p = gate.pilot(DEMO)
    done = {"out.json"}
    assert gate.waits(p, "tiny-b", ["out.json"], exists=lambda f: False)  # first run: waits
    assert not gate.waits(p, "tiny-a", ["out.json"], exists=lambda f: False)  # the pilot's size never
    assert not gate.waits(p, "tiny-b", ["out.json"], exists=done.__contains__)  # finished before any gate
    assert not gate.waits(p, "tiny-b", ["out.json"], exists={*done, p["out"]}.__contains__)  # passed: open
    assert not gate.waits(p, "tiny-b", ["missing.json"], exists={p["out"]}.__contains__)
    assert gate.waits(p, "tiny-b", ["out.json"], exists={*done, gate.pending(p["out"])}.__contains__)  # failed


@pytest.mark.slow
def test_a_broken_recipe_stops_at_the_gate(demo_run, tmp_path):
    """A first run (no gate passed, the larger size's cells missing) with answers cut to 3 tokens (no
    demo answer fits): the pilot's answers no longer parse; the gate stops the run, naming it, before
    any evaluation of the larger size starts, and the next run with the same recipe waits for the
    gate again."""
    work = copy_run(demo_run, tmp_path / "work")
    shutil.rmtree(work / "results" / "gate")
    shutil.rmtree(work / "results" / "eval" / DEMO["sizes"][1])
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump({"eval": {**DEMO["eval"], "max_gen_toks": 3}}))
    args = ("--configfile", str(ROOT / "config" / "demo.yaml"), str(tmp_path / "cut.yaml"))
    out = snakemake(work, *args, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "fail-fast gate: the pilot is not sane" in text and "no answer parses" in text
    started = {size for rule, size, _ in jobs(text) if rule.startswith("evaluate")}
    assert started == {DEMO["sizes"][0]}, text[-3000:]
    again = list(jobs(snakemake(work, "-n", *args).stdout))
    assert "gate" in {rule for rule, _, _ in again}
    larger = [inp for rule, size, inp in again if rule.startswith("evaluate") and size == DEMO["sizes"][1]]
    assert larger and all(f"results/gate/{DEMO['sizes'][0]}.json" in inp for inp in larger)
