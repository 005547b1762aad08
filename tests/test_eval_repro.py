"""Evaluation outputs that mean the same thing on every machine and after every change.

* GPQA's choice order: upstream gpqa_diamond_cot_zeroshot (its own YAML and process_docs, only
  the data swapped for local rows loaded through `datasets`, so its map is cached like the hub
  data's) gives the same prompts from two empty HF caches, with fetch_tasks filling each cache
  first as the workflow does, for every torch seed; every target letter points at the correct
  choice of its own prompt.
* A model retrained under the same path never reuses the old model's answers from a killed
  cell's sidecar.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, eval_settings
from tests.helpers import SCRIPTS, eval_env


@pytest.fixture(scope="module")
def gpqa_task(tmp_path_factory):
    """Upstream GPQA (include: its YAML) over 12 local rows; correct answer of row i: right-i."""
    import lm_eval.tasks

    d = tmp_path_factory.mktemp("gpqa_task")
    rows = [{"Question": f" Which option is right for item {i}?", "Correct Answer": f"right-{i}",
             "Incorrect Answer 1": f"wrong-{i}-a", "Incorrect Answer 2": f"wrong-{i}-b",
             "Incorrect Answer 3": f"wrong-{i}-c"} for i in range(12)]
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upstream = Path(lm_eval.tasks.__file__).parent / "gpqa" / "cot_zeroshot" / "gpqa_diamond_cot_zeroshot.yaml"
    (d / "gpqa_local.yaml").write_text(
        f"include: {upstream}\ntask: gpqa_local\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    train: {d / 'rows.jsonl'}\n")
    return d


def _fetch_then_eval(model, task_dir, cache, out, seeds):
    subprocess.run([sys.executable, SCRIPTS / "fetch_hub.py", "tasks", "--tasks", "gpqa_local",
                    "--include-path", task_dir, "--out", out.parent / "tasks.json"],
                   env=eval_env(cache), check=True, capture_output=True)
    got = {}
    for seed in seeds:
        o = out.with_name(f"seed{seed}.json")
        proc = subprocess.run([sys.executable, SCRIPTS / "eval_cell.py", *eval_settings(), "--model", model, "--task", "gpqa_local",
                               "--include-path", task_dir, "--seed", str(seed), "--max-gen-toks", "4",
                               "--device", "cpu", "--dtype", "float32", "--max-length", "512",
                               "--batch-size", "4", "--out", o], env=eval_env(cache), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rec = json.loads(o.read_text())
        samples = [json.loads(line) for line in o.with_name(o.stem + ".samples.jsonl").read_text().splitlines()]
        got[seed] = (rec, samples)
    return got


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_gpqa_prompts_identical_from_two_empty_caches(demo_model, gpqa_task, tmp_path):
    a = _fetch_then_eval(demo_model, gpqa_task, tmp_path / "cache_a", tmp_path / "a" / "x.json", [0, 1])
    b = _fetch_then_eval(demo_model, gpqa_task, tmp_path / "cache_b", tmp_path / "b" / "x.json", [0])
    prompts = {k: [(s["doc_id"], s["prompt"], s["target"]) for s in v[1]] for k, v in
               (("a0", a[0]), ("a1", a[1]), ("b0", b[0]))}
    assert len(prompts["a0"]) == 12
    assert prompts["a0"] == prompts["a1"] == prompts["b0"]
    assert a[0][0]["prompts_sha256"] == a[1][0]["prompts_sha256"] == b[0][0]["prompts_sha256"]
    # the order is shuffled (not the raw column order) and each target is its own prompt's right choice
    letters = []
    for doc_id, prompt, target in prompts["a0"]:
        choice = re.search(rf"\({target.strip('()')}\) (\S+)", prompt).group(1)
        assert choice == f"right-{doc_id}", (doc_id, target, prompt)
        letters.append(target)
    assert len(set(letters)) > 1


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_retrained_model_at_the_same_path_reuses_no_answer(demo_model, tmp_path):
    """A cell killed after 4 of 8 answers; the model under its path is then replaced (as a
    retraining with another train.lr would); the rerun generates all 8 and equals a clean run."""
    import torch
    from transformers import AutoModelForCausalLM

    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    args = [*eval_settings(), "--model", str(model), "--task", "demo_aime", "--include-path", str(ROOT / "workflow" / "tasks" / "demo"),
            "--seed", "0", "--max-gen-toks", "6", "--device", "cpu", "--dtype", "float32", "--max-length", "512",
            "--batch-size", "2", "--limit", "8"]
    out = tmp_path / "cell" / "seed0.json"
    proc = subprocess.run([sys.executable, SCRIPTS / "eval_cell.py", *args, "--out", out],
                          env=eval_env(LM_BACKEND_SIGTERM_AFTER="4"), capture_output=True, text=True)
    assert proc.returncode != 0 and not out.exists()
    side = out.with_name(out.name + ".partial.jsonl")
    assert len(side.read_text().splitlines()) == 4
    m = AutoModelForCausalLM.from_pretrained(model)  # "retrained": other weights, same path
    torch.manual_seed(0)  # the same "retrained" weights on every run
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.save_pretrained(model)
    proc = subprocess.run([sys.executable, SCRIPTS / "eval_cell.py", *args, "--out", out], env=eval_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["resume"]["reused"] == 0 and rec["resume"]["generated"] == 8
    clean = tmp_path / "clean" / "seed0.json"
    subprocess.run([sys.executable, SCRIPTS / "eval_cell.py", *args, "--out", clean], env=eval_env(),
                   check=True, capture_output=True)
    read = lambda o: [json.loads(x)["response"] for x in o.with_name(o.stem + ".samples.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(out) == read(clean)
    assert rec["provenance"]["model"]["fingerprint"].startswith("dir:")


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_a_finished_cell_is_restored_not_recomputed(demo_model, tmp_path):
    """A rerun of a finished cell (Snakemake deleted its outputs) restores it from .done/ before
    loading any model; another model under the same path misses the key and evaluates."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    out = tmp_path / "cell" / "seed0.json"
    args = [sys.executable, str(SCRIPTS / "eval_cell.py"), *eval_settings(), "--model", str(model), "--task", "demo_aime",
            "--include-path", str(ROOT / "workflow" / "tasks" / "demo"), "--seed", "0", "--max-gen-toks", "4",
            "--device", "cpu", "--dtype", "float32", "--max-length", "512", "--out", str(out)]
    subprocess.run(args, env=eval_env(), check=True, capture_output=True)
    want = out.read_bytes(), out.with_name("seed0.samples.jsonl").read_bytes()
    out.unlink()
    out.with_name("seed0.samples.jsonl").unlink()
    proc = subprocess.run(args, env=eval_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "restored" in proc.stdout, proc.stderr[-2000:]
    assert (out.read_bytes(), out.with_name("seed0.samples.jsonl").read_bytes()) == want
    (model / "config.json").write_text((model / "config.json").read_text().replace("}", ', "note": 1}', 1))
    proc = subprocess.run(args, env=eval_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "restored" not in proc.stdout


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_identical_weights_sample_identically_whatever_their_metadata(demo_model, tmp_path):
    """Sampling seeds come from the seed, the settings and the prompts, never from the model's
    fingerprint: the same weights under another training-run record (a renamed setting, another
    code version) give the same sampled answers, while their sidecar answers stay apart."""
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(demo_model, a)
    shutil.copytree(demo_model, b)
    (b / "provenance.json").write_text(json.dumps({"train_fingerprint": "another-run", "step": 7}))
    got = {}
    for model in (a, b):
        out = tmp_path / "cells" / model.name / "seed2.json"
        subprocess.run([sys.executable, SCRIPTS / "eval_cell.py", *eval_settings(), "--model", model,
                        "--task", "demo_aime", "--include-path", ROOT / "workflow" / "tasks" / "demo",
                        "--seed", "2", "--max-gen-toks", "8", "--temperature", "1.0", "--limit", "8",
                        "--device", "cpu", "--dtype", "float32", "--out", out],
                       env=eval_env(), check=True, capture_output=True)
        rec = json.loads(out.read_text())
        got[model.name] = (rec["provenance"]["model"]["fingerprint"],
                           [json.loads(x)["response"] for x in out.with_name("seed2.samples.jsonl").read_text().splitlines()])
    assert got["a"][0].startswith("dir:") and got["b"][0] == "train:another-run@step-7"
    assert got["a"][1] == got["b"][1] and len(set(got["a"][1])) > 1  # sampled, and the same
