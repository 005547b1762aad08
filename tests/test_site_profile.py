"""Site settings survive the README's commands (issue 29, item 11).

A command-line --configfile replaced the profile's list of config files, so
`snakemake --profile profiles/slurm --configfile config/pilot.yaml -n` planned every GPU job with no
partition; an empty site.yaml gave Snakemake's generic "Config file must be given as JSON or YAML"
and a missing one a raw FileNotFoundError. The profile now names its site file in default-resources
(`site_file`), which the command line does not replace, and the workflow reads and checks it."""
from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.conftest import ROOT, child_env


def _plan(*args, cwd=ROOT):
    return subprocess.run(["snakemake", "-n", *args], cwd=cwd, env=child_env(SLURM_TESTS="off"), capture_output=True,
                          text=True, timeout=600)


def test_a_command_line_configfile_keeps_the_profiles_partitions():
    proc = _plan("--profile", "profiles/slurm", "--configfile", "config/pilot.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = yaml.safe_load((ROOT / "profiles" / "slurm" / "site.yaml").read_text())["site"]
    gpu_jobs = [r for r in re.findall(r"resources: (.*)", proc.stdout) if "gpu=" in r]
    assert gpu_jobs and all("slurm_partition=" in r for r in gpu_jobs), gpu_jobs[:2]
    assert {re.search(r"slurm_partition=([^,]+)", r).group(1) for r in gpu_jobs} <= set(site["partitions"].values())


def _profile(tmp_path, site_text: str | None):
    prof = tmp_path / "prof"
    shutil.copytree(ROOT / "profiles" / "slurm", prof)
    site = tmp_path / "mysite.yaml"
    if site_text is not None:
        site.write_text(site_text)
    cfg = (prof / "config.yaml").read_text().replace("site_file='profiles/slurm/site.yaml'", f"site_file='{site}'")
    (prof / "config.yaml").write_text(cfg)
    return prof, site


def test_an_empty_site_file_is_named_with_what_it_needs(tmp_path):
    prof, site = _profile(tmp_path, "")
    proc = _plan("--profile", str(prof), "--configfile", "config/pilot.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert str(site) in out and "partitions" in out, out[-2000:]
    assert "Config file must be given as JSON or YAML" not in out


def test_a_missing_site_file_is_named_with_what_it_needs(tmp_path):
    prof, site = _profile(tmp_path, None)
    proc = _plan("--profile", str(prof))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert str(site) in out and "partitions" in out and "cannot read" in out, out[-2000:]
    assert "Traceback" not in out.split("WorkflowError")[0]
