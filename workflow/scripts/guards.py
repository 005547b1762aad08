"""Checks run once the DAG is built and before the first job starts (common.smk's onstart).

  missing_site(executor, site)        the slurm executor without site settings (partition, account,
                                      qos, GPU model): a command-line --configfile replaced the
                                      profile's list of config files
  orphan_slurm_jobs(workdir)          SLURM jobs of an earlier, killed snakemake still running in
                                      this directory: they would race this run's resubmissions

Each returns a message (empty: fine); common.smk raises it as an error, so nothing is submitted.
"""
from __future__ import annotations

import os
import shutil
import subprocess


def missing_site(executor: str | None, site: dict) -> str:
    if executor == "slurm" and not site:
        return ("site settings missing for the slurm executor: the profile's config files "
                "(config/config.yaml, profiles/slurm/site.yaml) were replaced by a command-line "
                "--configfile; name profiles/slurm/site.yaml there too")
    return ""


def orphan_slurm_jobs(workdir: str) -> str:
    """Jobs the snakemake SLURM plugin submitted (comment rule_...) from this workdir, still queued."""
    if shutil.which("squeue") is None:
        return ""
    try:
        out = subprocess.run(["squeue", "--me", "-h", "-o", "%i|%T|%k|%Z"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    here = os.path.realpath(workdir)
    jobs = []
    for line in out.splitlines():
        parts = line.split("|", 3)
        if len(parts) == 4 and parts[2].startswith("rule_") and os.path.realpath(parts[3]) == here:
            jobs.append(f"{parts[0]} ({parts[1].lower()}, {parts[2]})")
    if not jobs:
        return ""
    ids = " ".join(j.split()[0] for j in jobs)
    return (f"{len(jobs)} SLURM job(s) of an earlier snakemake still run in {here}: {', '.join(jobs[:5])}"
            f"{' ...' if len(jobs) > 5 else ''}. They would race this run on the same outputs: wait for "
            f"them, or `scancel {ids}`; then rerun (after a killed snakemake: `snakemake --unlock` first).")
