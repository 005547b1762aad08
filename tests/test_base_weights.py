"""Base and skyline weights are verified (issue 29, item 5): before, a truncated model.safetensors of the
demo base planned nothing wrong (`-n` was silent) and a new base cell failed with a raw SafetensorError,
naming no file and no fix. Now every fetched snapshot (fetch_hub.py) and built demo model (make_demo.py)
records its files' sizes and sha256; planning compares the sizes, a job the sha256 before it loads."""
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from elicit.atomic import write_json
from elicit.checks import integrity
from elicit.eval import cell
from elicit.train import weights
from tests.conftest import ROOT


@pytest.fixture
def results(tmp_path, demo_model) -> Path:
    """A results tree holding the demo base model where the demo builds it."""
    base = tmp_path / "results" / "demo" / "models" / "tiny-a" / "base"
    shutil.copytree(demo_model, base)
    return tmp_path / "results"


def test_a_built_model_records_its_files(results):
    base = results / "demo" / "models" / "tiny-a" / "base"
    assert (base / "weights.json").is_file()
    assert integrity.problems(results) == []
    assert weights.model_weights_problems(str(base), None, results) == []


def test_a_truncated_base_stops_the_plan_naming_file_and_fix(results):
    weights = results / "demo" / "models" / "tiny-a" / "base" / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    found = integrity.problems(results)
    assert len(found) == 1 and str(weights) in found[0] and f"rm -rf {weights.parent}" in found[0], found


def test_the_dry_run_refuses_a_truncated_base(results):
    weights = results / "demo" / "models" / "tiny-a" / "base" / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(100)
    out = subprocess.run(["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(results.parent)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and str(weights.relative_to(results.parent)) in out.stdout + out.stderr


def test_a_job_checks_the_hashes_before_loading(results, tmp_path, monkeypatch):
    """A byte changed in place keeps the size (planning cannot see it); the job's sha256 check refuses."""
    import eval_cell

    base = results / "demo" / "models" / "tiny-a" / "base"
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert integrity.problems(results) == []  # sizes only at plan time
    monkeypatch.chdir(results.parent)
    args = eval_cell.build_parser().parse_args(
        ["--model", "results/demo/models/tiny-a/base", "--task", "demo_aime", "--seed", "0", "--max-gen-toks", "8",
         "--temperature", "0", "--top-p", "1", "--top-k", "0", "--min-p", "0", "--repetition-penalty", "1",
         "--batch-size", "1", "--max-length", "512", "--backend", "hf-cb", "--layout", "single",
         "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit) as e:
        cell.refuse_damaged_model(args)
    assert "results/demo/models/tiny-a/base/model.safetensors: sha256 differs" in str(e.value)
    assert "rm -rf results/demo/models/tiny-a/base" in str(e.value)


def _fake_snapshot(root: Path, content: bytes) -> Path:
    """An HF cache layout: blobs named by their hash, the snapshot's files symlinks to them."""
    blobs, snap = root / "blobs", root / "snapshots" / ("c" * 40)
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    sha = hashlib.sha256(content).hexdigest()
    (blobs / sha).write_bytes(content)
    (snap / "model.safetensors").symlink_to(blobs / sha)
    cfg = b'{"model_type": "qwen2"}'
    git = hashlib.sha1(b"blob %d\0" % len(cfg) + cfg).hexdigest()
    (blobs / git).write_bytes(cfg)
    (snap / "config.json").symlink_to(blobs / git)
    return snap


def test_fetch_checks_each_blob_against_its_name_and_records_sizes_and_hashes(tmp_path):
    import fetch_hub

    snap = _fake_snapshot(tmp_path / "cache", b"weights" * 1000)
    files, bad = fetch_hub.verify_snapshot(snap)
    assert bad == [] and files["model.safetensors"]["size"] == 7000 and set(files) == {"model.safetensors",
                                                                                       "config.json"}
    blob = (snap / "model.safetensors").resolve()
    blob.write_bytes(b"torn")
    files, bad = fetch_hub.verify_snapshot(snap)
    assert len(bad) == 1 and str(blob) in bad[0]


def test_a_fetched_snapshot_is_checked_at_plan_time_and_before_loading(tmp_path):
    snap = _fake_snapshot(tmp_path / "cache", b"weights" * 1000)
    import fetch_hub

    files, _ = fetch_hub.verify_snapshot(snap)
    results = tmp_path / "results"
    marker = results / "hub" / "models" / "7B" / "base.json"
    write_json(marker, {"repo": "Org/Model-7B", "revision": None, "snapshot": str(snap), "files": files},
               checksum=True)
    assert integrity.problems(results) == [] and weights.model_weights_problems("Org/Model-7B", None, results) == []
    blob = (snap / "model.safetensors").resolve()
    blob.write_bytes(b"x" * 7000)  # same size: the plan cannot see it, the job does
    assert integrity.problems(results) == []
    found = weights.model_weights_problems("Org/Model-7B", None, results)
    assert len(found) == 1 and "sha256 differs" in found[0]
    assert f"fetch_hub model --repo Org/Model-7B --out {marker}" in found[0]
    assert f'rm "$(readlink -f {snap / "model.safetensors"})"' in found[0]
    blob.write_bytes(b"short")
    found = integrity.problems(results)
    assert len(found) == 1 and str(snap / "model.safetensors") in found[0] and "fetch_hub model" in found[0]
