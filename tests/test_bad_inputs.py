"""A battery of bad inputs: config, site settings, data and result files.

Each case asserts a message that names the file or the key, and -- for every case that touches a
finished run (a copy of the demo run) -- that a REAL run (not a dry-run) stops before any job,
with no finished training or evaluation output removed or rewritten.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_run, snakemake

SCRIPTS = ROOT / "workflow" / "scripts"
PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SITE = yaml.safe_load((ROOT / "profiles" / "slurm" / "site.yaml").read_text())
FINISHED = ("results/train", "results/models", "results/eval")


# ------------------------------------------------------------------ config and site settings
def dry_run(tmp_path, cfg=None, site=None, extra=()):
    args = ["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path)]
    if cfg is not None:
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        args += ["--configfile", str(tmp_path / "cfg.yaml")]
    if site is not None:
        (tmp_path / "site.yaml").write_text(site if isinstance(site, str) else yaml.safe_dump(site))
        args += ["--config", f"site={tmp_path / 'site.yaml'}"]
    out = subprocess.run([*args, *extra], capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def _site(**change):
    s = json.loads(json.dumps(SITE))
    s["site"].update(change)
    return s


@pytest.mark.parametrize("site,needle", [
    (_site(partiton="gpu"), "'partiton' was unexpected"),
    ({"site": {**SITE["site"], "partitions": {"1.5B": "gpu", "7B": "gpu"}}}, "site.partitions.14B: size 14B has no partition"),
    ("", "empty or without its top-level key `site:`"),
    ("site:\n", "`site:` is empty"),
    (_site(gpu_mem_gb=-5), "site.gpu_mem_gb"),
    (_site(account="acct; rm -rf /"), "site.account"),
    ({"account": "a", "partitions": {"default": "gpu"}}, "without its top-level key `site:`"),
])
@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_bad_site_settings_name_the_key_and_the_file(tmp_path, site, needle):
    rc, text = dry_run(tmp_path, PAPER, site)
    assert rc != 0 and needle in text, text[-2000:]
    assert "invalid site settings" in text or "site settings" in text
    assert str(tmp_path / "site.yaml") in text


@pytest.mark.parametrize("path,value,key", [
    (("models", "7B", "base_revision"), "$(touch {marker})main", "models.7B.base_revision"),
    (("data", "source"), "simplescaling/s1K-1.1; touch {marker}", "data.source"),
    (("eval", "tasks"), ["aime24", "gpqa;touch {marker}"], "eval.tasks.1"),
    (("eval", "include_path"), "`touch {marker}`", "eval.include_path"),
    (("lora", "targets"), ["q_proj", "$(touch {marker})"], "lora.targets.1"),
    (("train", "warmup_ratio"), 0.05, "train.warmup_ratio (0.05) and train.warmup_steps"),
    (("eval", "task_revisions"), {"aime23": "a" * 40}, "eval.task_revisions.aime23"),
])
@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_bad_config_values_name_the_key_and_run_nothing(tmp_path, path, value, key):
    marker = tmp_path / "injected"
    cfg = json.loads(json.dumps(PAPER))
    if path[-1] == "warmup_ratio":
        cfg["train"]["warmup_steps"] = 10
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = json.loads(json.dumps(value).replace("{marker}", str(marker)))
    rc, text = dry_run(tmp_path, cfg)
    assert rc != 0 and key in text, text[-2000:]
    assert not marker.exists()


def test_every_config_string_is_shell_quoted():
    """Values reach the shell quoted even where the schema would allow odd characters."""
    from elicit.slurm import cli

    line = cli({"revision": "$(touch /tmp/x)", "source": "a b", "flag": True, "none": None, "empty": ""})
    assert line == "--revision '$(touch /tmp/x)' --source 'a b' --flag --empty ''"


def test_one_size_rerun_keeps_the_site_settings():
    """The README's `--config 'sizes=[32B]'` with the SLURM profile: the profile's site file stays
    (it is a config FILE of the profile, not its `config:` list), every job gets the partition."""
    out = subprocess.run(["snakemake", "-n", "--profile", "profiles/slurm", "--config", "sizes=[32B]"],
                         cwd=ROOT, capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    resources = [line for line in text.splitlines() if line.strip().startswith("resources:") and "gpu=" in line]
    assert resources and all("slurm_partition=gpu" in line for line in resources)
    assert "size=32B" in text and "size=7B" not in text


# ------------------------------------------------------------------ data
def prepare(*args):
    return subprocess.run([sys.executable, str(SCRIPTS / "prepare_data.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_empty_dataset_is_called_empty(tmp_path):
    (tmp_path / "none.jsonl").write_text("")
    out = prepare("fetch", "--source", tmp_path / "none.jsonl", "--out", tmp_path / "t.parquet")
    assert out.returncode != 0 and "none.jsonl" in out.stderr and "is empty" in out.stderr
    assert "lacks" not in out.stderr


def test_truncated_source_names_the_file_and_line(tmp_path):
    import make_demo

    src = tmp_path / "s1k.jsonl"
    make_demo.main(["data", "--out", str(src), "--rows", "6", "--n-val", "2", "--subsets", "2", "--split-seed", "0"])
    src.write_text(src.read_text()[:-40])  # the last row cut mid-way
    out = prepare("fetch", "--source", src, "--out", tmp_path / "t.parquet")
    assert out.returncode != 0 and str(src) in out.stderr
    tok = subprocess.run([sys.executable, str(SCRIPTS / "make_demo.py"), "tokenizer", "--corpus", str(src),
                          "--out", str(tmp_path / "tok")], capture_output=True, text=True)
    assert tok.returncode != 0 and f"{src}: line 6" in tok.stderr and "Traceback" not in tok.stderr


@pytest.mark.slow  # two dry-runs
def test_unreadable_source_is_refused_at_plan_time(tmp_path):
    """A data.source that is not UTF-8 passed the plan (which then marked every training and cell
    outdated) and failed only inside fetch_data. A source whose checksum differs from the one
    fetch_data recorded is now read and validated at plan time; an unchanged one is not reread."""
    import make_demo

    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    d = demo["data"]
    src = tmp_path / "mine.jsonl"
    make_demo.main(["data", "--out", str(src), "--rows", str(d["expected_rows"]), "--n-val", str(d["n_val"]),
                    "--subsets", *map(str, d["subsets"]), "--split-seed", str(d["split_seed"])])
    good = src.read_bytes()
    src.write_bytes(good.replace("a".encode(), "\xe9".encode("latin-1"), 3))  # latin-1, not UTF-8
    cfg = {**demo, "data": {**d, "source": src.name}}  # relative to the working directory
    rc, text = dry_run(tmp_path, cfg)
    assert rc != 0 and f"data.source {src.name}" in text and "cannot read it" in text, text[-3000:]
    assert "fetch_data" not in text  # refused at plan time, nothing planned
    src.write_bytes(good)
    rc, text = dry_run(tmp_path, cfg)
    assert rc == 0 and "fetch_data" in text, text[-3000:]


# ------------------------------------------------------------------ a finished run, damaged
@pytest.fixture(scope="module")
def work(demo_run, tmp_path_factory):
    return copy_run(demo_run, tmp_path_factory.mktemp("bad") / "run")


def finished(work: Path) -> dict:
    """Every finished training, selection and evaluation file and its bytes (hidden caches aside)."""
    import hashlib

    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in FINISHED for p in sorted((work / d).rglob("*"))
            if p.is_file() and ".done" not in p.parts}


@contextlib.contextmanager
def damaged(work: Path, rel: str, how):
    path = work / rel
    saved, stat = path.read_bytes(), path.stat()
    how(path)
    try:
        yield path
    finally:
        path.write_bytes(saved)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def append_garbage(p):
    p.write_bytes(p.read_bytes() + b"\x00\xff garbage \x9c")


def binary(p):
    p.write_bytes(bytes(range(255, 55, -1)))  # 200 fixed bytes, not UTF-8 (0xff leads)


def edit_score(p):
    d = json.loads(p.read_text())
    d["score"] = 99.0
    p.write_text(json.dumps(d))


def drop_score(p):
    d = json.loads(p.read_text())
    d.pop("score")
    d.pop("_sha256", None)
    p.write_text(json.dumps(d))


CELL = "results/eval/tiny-a/full-8/demo_gpqa/seed1.json"
CASES = [
    (CELL, truncate, "not valid JSON"),
    (CELL, binary, "not UTF-8 text"),
    (CELL, edit_score, "differs from the checksum its producer recorded"),
    (CELL, drop_score, "lacks 'score'"),
    (CELL.replace(".json", ".samples.jsonl"), truncate, "not the samples of"),
    ("results/models/tiny-b/full-16/selection.json", append_garbage, "not UTF-8 text"),
    ("results/train/tiny-a/full-8/metrics.jsonl", append_garbage, "not UTF-8 text"),
    ("results/train/tiny-b/lora/metrics.jsonl", truncate, "results/train/tiny-b/lora/metrics.jsonl"),
    ("results/data/manifest.json", append_garbage, "not UTF-8 text"),
    ("results/data/s1k.parquet", append_garbage, "differs from"),
    ("results/data/s1k.json", edit_score, "differs from the checksum"),
    ("results/hub/tasks.json", truncate, "not valid JSON"),
]


@pytest.mark.slow
@pytest.mark.parametrize("rel,how,needle", CASES, ids=[f"{r.split('/')[-1]}-{h.__name__}" for r, h, _ in CASES])
def test_damaged_file_stops_the_run_before_any_job(work, rel, how, needle):
    before = finished(work)
    with damaged(work, rel, how):
        out = snakemake(work, check=False)  # a real run, not a dry-run
        text = out.stdout + out.stderr
        assert out.returncode != 0 and "damaged result file(s); nothing was run or deleted" in text
        assert rel in text and needle in text and "fix:" in text, text[-3000:]
        assert "Job stats" not in text  # stopped at plan time
        after = finished(work)
    assert {k: v for k, v in after.items() if k != rel} == {k: v for k, v in before.items() if k != rel}
    assert snakemake(work, "-n").stdout.count("Nothing to be done") == 1  # restored: clean again


@pytest.mark.slow
def test_touching_data_and_results_reruns_nothing(work):
    for rel in ("results/data/manifest.json", "results/data/s1k.parquet", "results/hub/tasks.json",
                "results/models/tiny-a/lora/selection.json"):
        os.utime(work / rel)
    out = snakemake(work, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_deleted_data_files_are_rebuilt_and_finished_work_kept(work):
    """The obvious fix after a damaged table: delete it (and the manifest). The next run rebuilds
    both (identical); Snakemake then reruns what depends on them, and every training and
    evaluation restores its finished result from its content-keyed cache: the finished outputs are
    the same files (same inodes, same bytes), nothing was retrained or re-evaluated."""
    before = finished(work)
    saved = {rel: (work / rel).read_bytes() for rel in ("results/data/s1k.parquet", "results/data/manifest.json")}
    for rel in saved:
        (work / rel).unlink()
    out = snakemake(work)
    text = out.stdout + out.stderr
    assert "fetch_data" in text and "split_data" in text
    assert {rel: (work / rel).read_bytes() for rel in saved} == saved  # rebuilt identically
    assert finished(work) == before
    logs = sorted((work / "results" / "logs" / "train").rglob("*.log"))
    assert logs and all("restored, nothing retrained" in log.read_text() for log in logs)
    assert "Nothing to be done" in snakemake(work, "-n").stdout
