"""Issue 31: `snakemake status` prints its grid and nothing of Snakemake's (banner, job stats, job
lines), and runs the step program with the interpreter that runs Snakemake, venv active or not."""
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, child_env


def _status(env):
    out = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "status"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out.stdout + out.stderr


def test_status_prints_only_its_grid():
    text = _status(child_env())
    assert text.lstrip().startswith("Grid: 2 sizes"), text[:800]
    for banner in ("SNAKEMAKE", "Job stats", "localrule status", "Finished jobid", "steps (100%) done"):
        assert banner not in text


def test_status_without_the_venv_on_path():
    """`.venv/bin/snakemake status`, venv not activated: `python` first on PATH is another one (here
    none), and the rule shell used to fail with `python: not found` / No module named 'elicit'."""
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if Path(p).resolve() != Path(sys.executable).parent.resolve())
    text = _status(child_env(PATH=bare))
    assert "Evaluations: 52" in text  # 2 sizes x 6 configurations x 2 tasks x 2 seeds + tiny-a's second training seed of full-8
