"""Issue 19: a damaged or deleted published model is never used silently. train.py records the
sizes and sha256 of the kept checkpoint's files; select_checkpoint verifies them and publishes a
copy (not hard links: damage to the model leaves the checkpoint to re-publish from); planning
checks sizes (elicit/checks/integrity.py), eval_cell the full sha256 before loading; a damaged finished
run in train.py's done cache is retrained, never restored."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import select_checkpoint
from elicit.checks import integrity
from elicit.train.checkpoints import publish
from tests.conftest import ROOT, eval_settings
from tests.helpers import train_cmd, train_env


def _trained(results):
    """A finished training run as train.py publishes it: metrics and one kept checkpoint."""
    out = results / "train" / "tiny-a" / "full-16"
    ckpt = out / "work" / "checkpoints" / "step-2"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (ckpt / "config.json").write_text('{"model_type": "qwen2"}\n')
    (ckpt / "provenance.json").write_text(json.dumps({"train_fingerprint": "f" * 16, "step": 2}))
    (out / "work" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 0, "val_loss": 3.0}, {"step": 2, "val_loss": 2.0})))
    publish(out, out / "work")
    return out


def _select(results, out):
    select_checkpoint.main(["--train-dir", str(out), "--out", str(results / "models" / "tiny-a" / "full-16"),
                            "--tolerance", "0.1"])
    return results / "models" / "tiny-a" / "full-16" / "model"


def test_truncated_model_is_caught_and_republished_from_the_intact_checkpoint(tmp_path):
    results = tmp_path / "results"
    out = _trained(results)
    model = _select(results, out)
    want = (model / "model.safetensors").read_bytes()
    with open(model / "model.safetensors", "r+b") as fh:
        fh.truncate(100)
    assert (out / "checkpoints" / "step-2" / "model.safetensors").read_bytes() == want  # not a hard link
    found = integrity.problems(results)
    assert len(found) == 1 and str(model / "model.safetensors") in found[0], found
    assert f"rm -rf {model}" in found[0] and "re-publishes" in found[0]
    shutil.rmtree(model)  # the command the message names; the next run's select_checkpoint:
    _select(results, out)
    assert (model / "model.safetensors").read_bytes() == want and integrity.problems(results) == []


def test_damaged_checkpoint_is_caught_at_plan_time_and_not_published(tmp_path):
    results = tmp_path / "results"
    out = _trained(results)
    with open(out / "checkpoints" / "step-2" / "config.json", "a") as fh:
        fh.write(" ")
    found = integrity.problems(results)
    assert len(found) == 1 and "config.json" in found[0] and f"delete {out}" in found[0], found
    with pytest.raises(SystemExit, match=f"(?s)damaged.*rm -rf {out}"):
        _select(results, out)


def test_eval_refuses_a_damaged_model_before_loading_it(tmp_path):
    import eval_cell

    results = tmp_path / "results"
    model = _select(results, _trained(results))
    data = bytearray((model / "model.safetensors").read_bytes())
    data[10] ^= 1  # same size: only the full sha256 sees it
    (model / "model.safetensors").write_bytes(bytes(data))
    assert integrity.problems(results) == []  # plan time checks sizes only
    with pytest.raises(SystemExit, match="(?s)damaged model.*sha256 differs.*re-published from its checkpoint"):
        eval_cell.main(["--model", str(model), "--task", "demo_aime", "--seed", "0", "--max-gen-toks", "8",
                        "--include-path", str(ROOT / "workflow" / "tasks" / "demo"), *eval_settings(),
                        "--out", str(tmp_path / "cell" / "seed0.json")])


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_a_damaged_finished_run_is_retrained_not_restored(demo, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    [weights] = (out / ".done").glob("*/checkpoints/step-*/model.safetensors")
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # the cache's hard link of the published checkpoint
        fh.truncate(100)
    (out / "metrics.jsonl").unlink()  # as Snakemake does before it reruns the job
    shutil.rmtree(out / "checkpoints")
    proc = subprocess.run(train_cmd(demo, out), env=train_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "damaged, training again" in proc.stdout, proc.stdout[-2000:]
    assert "restored, nothing retrained" not in proc.stdout
    [kept] = (out / "checkpoints").glob("step-*/model.safetensors")
    assert kept.stat().st_size == size
