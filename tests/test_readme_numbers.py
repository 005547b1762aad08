"""Issue 31: every count the README states comes from the command beside it. The README said
"505 jobs" long after the paper grid planned 146 (344 with the SLURM profile): a number in prose
goes stale silently, so this test runs each stated command and compares.

Checked: a code-block command commented `# N jobs` (run verbatim in a clean directory, with
`--quiet rules`: the dry-run's `total`), a `# X GPU-hours` comment (estimate_cost.py's total), and
the prose numbers derived from those outputs, the config or resources/throughput.yaml. Not
checked: the H200 measurements quoted from issue 20's closing note (peak GiB, tokens/s, MFU),
which only a GPU reproduces (bench/gpu_acceptance.sh)."""
import re
import shlex
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, child_env

README = (ROOT / "README.md").read_text()
PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def commands(unit: str) -> list[tuple[str, str]]:
    """(command, number) for each code-block command whose comment (on its line or the next,
    comment-only line) states `<number> <unit>`."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            cmd, _, comment = line.partition("#")
            if not cmd.strip():
                continue
            if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("#"):
                comment += lines[i + 1]
            m = re.search(rf"([\d.]+) {unit}", comment)
            if m:
                found.append((cmd.strip(), m.group(1)))
    return found


def run_in_clean_checkout(tmp_path, cmd: str) -> str:
    """The README's command as a new user runs it: from a checkout with no results yet."""
    for name in ("Snakefile", "workflow", "config", "profiles", "resources", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    args = shlex.split(cmd)
    if args[0] == "snakemake":
        args += ["--quiet", "rules"]
    out = subprocess.run(args, cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (cmd, out.stderr[-3000:])
    return out.stdout + out.stderr


def estimate(cmd: str) -> dict:
    out = subprocess.run(shlex.split(cmd), cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = re.findall(r"^\s*all\s+(\w+)\s+(\d+)\s+([\d.]+)$", out.stdout, re.M)
    return {stage: (int(n), float(h)) for stage, n, h in rows}


def test_no_number_of_jobs_or_gpu_hours_outside_a_checked_command():
    """A count of jobs or GPU-hours in prose is not run by anything: it must stand beside its command
    (or be a figure the other tests here derive)."""
    jobs_stated = set(re.findall(r"(\d+) jobs\b", README))
    assert jobs_stated == {n for _, n in commands("jobs")}, jobs_stated
    hours_stated = set(re.findall(r"([\d.]+)\s+GPU-hours", README))
    assert hours_stated == {n for _, n in commands("GPU-hours")}, hours_stated
    assert len(commands("jobs")) >= 3 and len(commands("GPU-hours")) >= 2


@pytest.mark.parametrize("cmd,jobs", commands("jobs"))
def test_stated_job_counts(tmp_path, cmd, jobs):
    text = run_in_clean_checkout(tmp_path, cmd)
    total = re.findall(r"^total\s+(\d+)$", text, re.M)
    assert total and total[-1] == jobs, (cmd, total, "the README states", jobs)


@pytest.mark.parametrize("cmd,hours", commands("GPU-hours"))
def test_stated_gpu_hours(cmd, hours):
    assert estimate(cmd)["total"][1] == float(hours), cmd


def test_prose_numbers():
    pilot = estimate("python workflow/scripts/estimate_cost.py config/pilot.yaml")
    m = re.search(r"(\d+) trainings and (\d+) evaluation cells", README)
    assert (int(m.group(1)), int(m.group(2))) == (pilot["train"][0], pilot["eval"][0])
    paper = estimate("python workflow/scripts/estimate_cost.py config/config.yaml --site profiles/slurm/site.yaml")
    m = re.search(r"([\d.]+) training, ([\d.]+) evaluation", README)
    assert (float(m.group(1)), float(m.group(2))) == (paper["train"][1], paper["eval"][1])
    # the one measured training throughput against the H100 estimate for the same size
    table = yaml.safe_load((ROOT / "resources" / "throughput.yaml").read_text())
    h100, h200 = (table["gpus"][g]["train"]["full"]["1.5B"]["tokens_per_s"] for g in ("H100-80GB", "H200-141GB"))
    assert f"is {h100 / h200:.1f}× below the H100 estimate" in README.replace("\n", " ").replace("  ", " ")
    assert f"({h200 / 1000:.1f}k tokens/s)" in README and f"{h200 / 1000:.1f}k tokens/s on the full finetune" in README
    # the paper's settings the first paragraph states
    ev, tr, d = PAPER["eval"], PAPER["train"], PAPER["data"]
    assert f"{ev['max_gen_toks']} new tokens, temperature {ev['temperature']}" in README
    assert f"{len(ev['seeds'])} seeds" in README and f"within {tr['tolerance']} nats" in README
    assert f"({min(d['subsets'])}…{max(d['subsets'])} examples)" in README
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert f"`slurm-init-seconds-before-status-checks` ({slurm['slurm-init-seconds-before-status-checks']})" in README
