"""hf-cb, the paper grid's default evaluation: per-request sampling and jobs of several cells.

* the Gumbel-max sampler draws from softmax(logits / T) (frequencies) and its noise is a pure
  function of (request seed, position, token);
* sampled answers do not depend on the concurrency (slots 1, 2, as many as fit), nor on the
  other cells of the job: a job of two seeds gives each seed's single-seed answers;
* a job killed after k answers resumes per answer and ends with the uninterrupted answers;
* a seed added later: the finished cells are restored, not regenerated.
The demo model's weights are re-drawn at a large scale (as in test_eval_backends) so that
sampled answers are long and varied.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import eval_cell
from elicit.eval import cell
from tests.conftest import ROOT, child_env, eval_settings
from tests.helpers import TORCHRUN

TASKS = ROOT / "workflow" / "tasks" / "demo"


def _argv(model, outs, tasks=("demo_aime",), seeds=(1,), slots=4, limit=6):
    return [*eval_settings(), "--model", str(model), "--task", *tasks, "--include-path", str(TASKS),
            "--seed", *map(str, seeds), "--max-gen-toks", "24", "--temperature", "0.9", "--limit", str(limit),
            "--device", "cpu", "--dtype", "float32", "--batch-size", str(slots), "--max-length", "512",
            "--backend", "hf-cb", "--out", *map(str, outs)]


def _answers(out):
    return [json.loads(l)["response"] for l in cell.samples_path(out).read_text().splitlines()]


def test_gumbel_max_samples_the_softmax():
    import torch

    from elicit.eval.lm_backend_cb import gumbel_noise, row_key

    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    keys = torch.tensor([row_key(s, 7) for s in range(20000)], dtype=torch.int32)
    draws = (logits[None, :] + gumbel_noise(keys, 5)).argmax(-1)
    freq = torch.bincount(draws, minlength=5).float() / len(keys)
    assert torch.allclose(freq, logits.softmax(-1), atol=0.01), (freq, logits.softmax(-1))
    # a pure function of the key: the same rows, in any batch, get the same noise
    assert torch.equal(gumbel_noise(keys[:3], 5), gumbel_noise(keys[[2, 0, 1]], 5)[[1, 2, 0]])
    assert row_key(1, 7) != row_key(1, 8) and row_key(1, 7) != row_key(2, 7)


def test_sampled_answers_do_not_depend_on_concurrency(chaos, tmp_path):
    runs = {}
    for slots in (1, 2, 64):
        eval_cell.main(_argv(chaos, [tmp_path / f"s{slots}.json"], slots=slots))
        runs[slots] = _answers(tmp_path / f"s{slots}.json")
    assert len(set(runs[1])) == len(runs[1])  # varied answers: equality is not trivial
    assert runs[1] == runs[2] == runs[64]
    eval_cell.main(_argv(chaos, [tmp_path / "other.json"], seeds=(2,)))
    assert _answers(tmp_path / "other.json") != runs[1]  # the seed matters


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_job_of_several_cells_equals_one_job_per_cell(chaos, tmp_path):
    single = {}
    for task in ("demo_aime", "demo_gpqa"):
        for seed in (0, 1):
            out = tmp_path / "single" / f"{task}{seed}.json"
            eval_cell.main(_argv(chaos, [out], tasks=(task,), seeds=(seed,)))
            single[task, seed] = _answers(out)
    outs = [tmp_path / "job" / f"{t}{s}.json" for t in ("demo_aime", "demo_gpqa") for s in (0, 1)]
    recs = eval_cell.main(_argv(chaos, outs, tasks=("demo_aime", "demo_gpqa"), seeds=(0, 1), slots=64))
    assert [(r["task"], r["seed"]) for r in recs] == [(t, s) for t in ("demo_aime", "demo_gpqa") for s in (0, 1)]
    for (task, seed), out in zip([(t, s) for t in ("demo_aime", "demo_gpqa") for s in (0, 1)], outs):
        assert _answers(out) == single[task, seed], (task, seed)
    assert all(r["resume"]["pooled_cells"] == 4 and r["resume"]["generated"] == 6 for r in recs)


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_killed_job_resumes_per_answer(chaos, tmp_path):
    ref = [tmp_path / "ref" / f"seed{s}.json" for s in (0, 1)]
    eval_cell.main(_argv(chaos, ref, seeds=(0, 1)))
    outs = [tmp_path / "run" / f"seed{s}.json" for s in (0, 1)]
    cmd = [sys.executable, str(ROOT / "workflow" / "scripts" / "eval_cell.py"), *_argv(chaos, outs, seeds=(0, 1))]
    killed = subprocess.run(cmd, env=child_env(LM_BACKEND_SIGTERM_AFTER="5"), capture_output=True, text=True)
    assert killed.returncode != 0 and not any(o.exists() for o in outs)
    sidecars = [cell.partial_path(o) for o in outs]
    assert sum(len(p.read_text().splitlines()) for p in sidecars if p.exists()) == 5  # 5 answers kept
    recs = eval_cell.main(_argv(chaos, outs, seeds=(0, 1)))
    assert sum(r["resume"]["reused"] for r in recs) == 5 and sum(r["resume"]["generated"] for r in recs) == 7
    assert [_answers(o) for o in outs] == [_answers(o) for o in ref]
    assert not any(p.exists() for p in sidecars)  # spent


def test_seed_added_later_reuses_finished_cells(chaos, tmp_path, monkeypatch):
    outs = [tmp_path / f"seed{s}.json" for s in (0, 1, 2)]
    eval_cell.main(_argv(chaos, outs[:2], seeds=(0, 1)))
    before = [_answers(o) for o in outs[:2]]
    for o in outs[:2]:  # Snakemake deletes a job's outputs before it reruns the job
        o.unlink()
        cell.samples_path(o).unlink()
    recs = eval_cell.main(_argv(chaos, outs, seeds=(0, 1, 2)))
    assert [_answers(o) for o in outs[:2]] == before
    assert [r["resume"]["pooled_cells"] for r in recs] == [2, 2, 1]  # seeds 0, 1: the first job's records
    assert recs[2]["resume"]["generated"] == 6 and recs[2]["resume"]["pooled_cells"] == 1


def test_several_cells_need_one_out_each():
    with pytest.raises(SystemExit, match="2 path"):
        eval_cell.main(_argv("m", ["a.json", "b.json"], seeds=(0, 1, 2)))


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_data_parallel_job_equals_one_process(chaos, tmp_path):
    """dp (2 gloo ranks, torchrun): every rank generates every other missing answer of both cells."""

    outs = [tmp_path / "one" / f"seed{s}.json" for s in (0, 1)]
    eval_cell.main(_argv(chaos, outs, seeds=(0, 1)))
    dp = [tmp_path / "dp" / f"seed{s}.json" for s in (0, 1)]
    cmd = [*TORCHRUN, str(ROOT / "workflow" / "scripts" / "eval_cell.py"), *_argv(chaos, dp, seeds=(0, 1)),
           "--layout", "dp"]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [_answers(o) for o in dp] == [_answers(o) for o in outs]
    recs = [json.loads(o.read_text()) for o in dp]
    assert [r["resume"]["generated"] for r in recs] == [6, 6] and recs[0]["world_size"] == 2
    assert not list((tmp_path / "dp").glob("*.partial.jsonl*"))
