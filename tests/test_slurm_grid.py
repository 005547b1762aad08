"""The demo grid on a real SLURM: partitions by size, a failed job retried, the grid completes.

The test profile is profiles/slurm with site values swapped (site.yaml, the status-poll
interval that MinJobAge of this test cluster allows, jobs, latency-wait); a check below
pins that nothing else differs.
"""
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import FAIL_ONCE, PARTITION_OF_SIZE, make_profile

SITE_KEYS = {"configfile", "slurm-init-seconds-before-status-checks", "jobs", "latency-wait"}


def test_profile_differs_only_in_site_keys(tmp_path):
    prod = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    test = make_profile(tmp_path)
    assert {k for k in prod if prod[k] != test.get(k)} <= SITE_KEYS
    assert set(prod) == set(test)


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_grid_on_slurm(slurm_cluster, tmp_path):
    make_profile(tmp_path)
    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["data"]["subsets"], cfg["eval"]["seeds"] = [8], [0]  # a smaller grid, same DAG shape
    cfg["train"]["seeds"] = [0]  # without the demo's second training seed (the demo DAG tests it)
    cfg["variants"] = {}  # and without its variant cell (test_demo_dag.py tests it): 6 jobs fewer
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(FAIL_ONCE)
    victim = "results/eval/tiny-b/full-8/demo_gpqa/seed0.json"
    # the hook first, then this checkout's package (the jobs' shell runs `python -m elicit.run`)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), str(ROOT / "workflow" / "scripts")]),
           "FAIL_ONCE_OUTPUT": victim,
           "FAIL_ONCE_MARKER": str(tmp_path / "failed-once")}
    run = subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(tmp_path / "profile"),
                          "-d", str(tmp_path / "work")],  # the profile's configfile list: grid + site
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=1500)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    work = tmp_path / "work"
    assert (tmp_path / "failed-once").exists() and (work / victim).exists()  # failed, retried, done
    # The fail-fast gate (tests/test_gate.py): with jobs: 6 every ready job is submitted at once, yet no
    # GPU job of tiny-b was submitted before rule gate had checked tiny-a's pilot and finished.
    out = run.stdout + run.stderr
    gate_done = re.search(r"^Finished jobid: \d+ \(Rule: gate\)", out, re.M)
    assert gate_done and (work / "results" / "gate" / "tiny-a.json").exists(), out[-4000:]
    job = r"^rule (train|evaluate\w*):\n(?:[ \t]+.*\n)*?[ \t]+wildcards: size={}\b"  # a submission, as logged
    larger = [(m[1], m.start()) for m in re.finditer(job.format("tiny-b"), out, re.M)]
    assert {r for r, _ in larger} >= {"train"} and any(r.startswith("evaluate") for r, _ in larger), out[-4000:]
    assert min(at for _, at in larger) > gate_done.start(), "a tiny-b job was submitted before the gate finished"
    assert re.search(job.format("tiny-a"), out, re.M).start() < gate_done.start()  # the pilot size did not wait
    # the seconds-long data builders run on the submit host (localrules), not as queued jobs
    for rule in ("split_data", "demo_table", "demo_tokenizer"):
        assert re.search(rf"^localrule {rule}:", out, re.M) and not re.search(rf"^rule {rule}:", out, re.M), rule
    logs = sorted(p for stage in ("train", "eval") for p in (work / "results" / "logs" / stage).rglob("*.log"))
    assert len(logs) >= 2 * (2 + 4 * 2)  # train lora/full-8 and 4 configs x 2 tasks, per size
    for log in logs:
        size = next(s for s in PARTITION_OF_SIZE if s in log.parts)
        first = log.read_text().splitlines()[0]
        assert first == f"SLURM_JOB_PARTITION={PARTITION_OF_SIZE[size]}", f"{log}: {first}"
    t1 = pd.read_csv(work / "results" / "table1.csv")
    assert len(t1) == 2 * 4

    # The README's one-size rerun: `--config 'sizes=[tiny-a]'` keeps the profile's site file (it is
    # one of its config files, not its `config:` list): the resubmitted job carries the partition
    # and the account; tiny-b's files are untouched; Table 1 still holds both sizes.
    cell = work / "results" / "eval" / "tiny-a" / "base" / "demo_aime" / "seed0.json"
    cell.unlink()
    shutil.rmtree(cell.parent / ".done")  # no cached result: the cell really runs again
    other = {p: p.read_bytes() for p in (work / "results").rglob("*") if p.is_file() and "tiny-b" in p.parts
             and "logs" not in p.parts}
    rerun = subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(tmp_path / "profile"),
                            "-d", str(work), "--config", "sizes=[tiny-a]"], capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    assert cell.exists()
    jobs = re.findall(r"has been submitted with SLURM jobid (\d+)", rerun.stdout + rerun.stderr)
    assert jobs, rerun.stderr[-3000:]
    for job in jobs:  # what SLURM recorded for the submitted job (kept MinJobAge = 300 s)
        info = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
        assert "Partition=gpu-small" in info and "Account=demo-account" in info, info
    assert {p: p.read_bytes() for p in other} == other
    assert list(pd.read_csv(work / "results" / "table1.csv")["size"].unique()) == ["tiny-a", "tiny-b"]
