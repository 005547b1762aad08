"""hf-slots (elicit/eval/slots.py): the static-slot engine with one captured decode step.

* greedy answers equal transformers `generate`, token for token, on tiny Qwen2 and Qwen3 (fp32),
  with fewer slots than requests (slots are refilled) and at an EOS id;
* a sampled answer is bitwise the same whatever its neighbours: shuffled request order, 1, 2 or
  64 slots; and it is hf-cb's answer (the same per-request sampler and seeds);
* through eval_cell: a cell's answers, lengths and stop reasons equal hf-cb's (EOS, single-token
  stop strings, max_gen_toks); a killed job resumes from its sidecar without regenerating;
* tensor parallel over 2 gloo ranks (uncaptured) gives the one-process answers.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import pytest

import eval_cell
from elicit.eval import cell
from tests.conftest import ROOT, child_env, eval_settings
from tests.helpers import TORCHRUN

TASKS = ROOT / "workflow" / "tasks" / "demo"
PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23], [1, 2], [40] * 30,
           [7, 3, 9, 200, 11, 4]]


def tiny(family: str):
    """A random-init model of `family` whose weights are scaled up, so that greedy answers vary."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

    cls = {"qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]
    cfg = cls(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return m


def slots_answers(model, slots, requests, max_new=24, eos=(), temperature=0.0):
    import torch

    from elicit.eval.slots import Sampling, SlotDecoder

    got = {}
    dec = SlotDecoder(model, slots, 64, Sampling(temperature=temperature))
    with torch.no_grad():
        dec.generate(requests, lambda r, toks: got.__setitem__(r, list(toks)), list(eos), max_new)
    return [got[i] for i in range(len(requests))], dec


def generate_answers(model, prompts, max_new=24, eos=None):
    import torch

    out = []
    with torch.no_grad():
        for p in prompts:
            ids = model.generate(torch.tensor([p]), max_new_tokens=max_new, do_sample=False, eos_token_id=eos,
                                 pad_token_id=0, attention_mask=torch.ones(1, len(p), dtype=torch.long))
            out.append(ids[0, len(p):].tolist())
    return out


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_greedy_answers_equal_generate(family):
    model = tiny(family)
    ref = generate_answers(model, PROMPTS)
    assert len({tuple(r) for r in ref}) == len(ref)  # varied answers: equality is not trivial
    for slots in (1, 4):  # 4 slots for 6 requests: two slots are refilled
        got, dec = slots_answers(model, slots, [(p, 0) for p in PROMPTS])
        assert got == ref, (family, slots)
        assert dec.stats.prefills == len(PROMPTS) and dec.attention == "sdpa"


def test_an_answer_ends_at_its_first_eos_as_generate_does():
    model = tiny("qwen2")
    free = generate_answers(model, PROMPTS)
    eos = free[2][5]  # a token the third answer writes at its 6th step
    ref = generate_answers(model, PROMPTS, eos=eos)
    got, _ = slots_answers(model, 3, [(p, 0) for p in PROMPTS], eos=[eos])
    for g, r in zip(got, ref):
        cut = r.index(eos) + 1 if eos in r else len(r)
        assert g == r[:cut]  # generate pads after the eos; the engine stops there
    assert len(got[2]) <= 6 and got[2][-1] == eos


def test_sampled_answers_do_not_depend_on_order_or_slots():
    model = tiny("qwen3")
    requests = [(p, 1000 + i) for i, p in enumerate(PROMPTS * 3)]  # each prompt with 3 seeds
    base, _ = slots_answers(model, 2, requests, temperature=0.9)
    assert len({tuple(a) for a in base}) == len(base)  # the seeds give different answers
    order = list(range(len(requests)))
    random.Random(0).shuffle(order)
    for slots in (1, 64):
        shuffled, _ = slots_answers(model, slots, [requests[i] for i in order], temperature=0.9)
        assert [shuffled[order.index(i)] for i in range(len(requests))] == base, slots


def test_the_sampler_in_the_step_draws_hf_cb_noise():
    import torch

    from elicit.eval.lm_backend_cb import gumbel_noise, row_key

    seeds, pos = torch.tensor([3, 99, 2**31 - 1]), torch.tensor([0, 17, 30000])
    assert row_key(seeds, pos).tolist() == [row_key(s, p) for s, p in zip(seeds.tolist(), pos.tolist())]
    assert torch.equal(gumbel_noise(row_key(seeds, pos), 50)[1], gumbel_noise(torch.tensor([row_key(99, 17)]), 50)[0])


# ---------------------------------------------------------------------------- through eval_cell
@pytest.fixture(scope="module")
def eosy(chaos, tmp_path_factory):
    """The chaos model with its EOS row scaled up: some answers end at EOS, some run to the cap."""
    import torch
    from transformers import AutoModelForCausalLM

    d = tmp_path_factory.mktemp("eosy") / "m"
    shutil.copytree(chaos, d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    with torch.no_grad():
        model.get_output_embeddings().weight[model.config.eos_token_id] *= 3.0
    model.save_pretrained(d)
    return d


def _argv(model, outs, backend="hf-slots", slots=4, seeds=(1,), task="demo_aime", limit=8):
    return [*eval_settings(), "--model", str(model), "--task", task, "--include-path", str(TASKS),
            "--seed", *map(str, seeds), "--max-gen-toks", "40", "--temperature", "0.9", "--limit", str(limit),
            "--device", "cpu", "--dtype", "float32", "--batch-size", str(slots), "--max-length", "512",
            "--backend", backend, "--out", *map(str, outs)]


def _rows(out):
    return [{k: r[k] for k in ("doc_id", "response", "n_new_tokens", "stop_reason")}
            for r in map(json.loads, cell.samples_path(out).read_text().splitlines())]


@pytest.mark.parametrize("task", ["demo_aime", "demo_gpqa"])
def test_cells_equal_hf_cb_answers_lengths_and_stops(eosy, tmp_path, task):
    cb, sl = tmp_path / "cb.json", tmp_path / "slots.json"
    eval_cell.main(_argv(eosy, [cb], backend="hf-cb", task=task))
    rec = eval_cell.main(_argv(eosy, [sl], slots=3, task=task))
    assert _rows(sl) == _rows(cb)
    reasons = {r["stop_reason"] for r in _rows(sl)}
    assert reasons == {"eos", "max_gen_toks"}, reasons  # both ways of ending are exercised
    assert rec["resume"]["slots"] == 3 and rec["resume"]["attention"] == "sdpa"
    assert rec["resume"]["engine"]["prefills"] == 8


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_killed_job_resumes_per_answer(chaos, tmp_path):
    ref = [tmp_path / "ref" / f"seed{s}.json" for s in (0, 1)]
    eval_cell.main(_argv(chaos, ref, seeds=(0, 1), limit=6))
    outs = [tmp_path / "run" / f"seed{s}.json" for s in (0, 1)]
    cmd = [sys.executable, str(ROOT / "workflow" / "scripts" / "eval_cell.py"), *_argv(chaos, outs, seeds=(0, 1),
                                                                                      limit=6)]
    killed = subprocess.run(cmd, env=child_env(LM_BACKEND_SIGTERM_AFTER="5"), capture_output=True, text=True)
    assert killed.returncode != 0 and not any(o.exists() for o in outs)
    sidecars = [cell.partial_path(o) for o in outs]
    assert sum(len(p.read_text().splitlines()) for p in sidecars if p.exists()) == 5  # 5 answers kept
    recs = eval_cell.main(_argv(chaos, outs, seeds=(0, 1), limit=6))
    assert sum(r["resume"]["reused"] for r in recs) == 5 and sum(r["resume"]["generated"] for r in recs) == 7
    assert [_rows(o) for o in outs] == [_rows(o) for o in ref]


@pytest.mark.slow  # two torchrun ranks (gloo) load the model each
def test_tensor_parallel_over_two_ranks_equals_one_process(chaos, tmp_path):
    """tp (uncaptured, 2 gloo ranks): heads, MLP and KV cache split, all-reduced after o/down_proj."""

    one = tmp_path / "one.json"
    eval_cell.main(_argv(chaos, [one], limit=6))
    tp = tmp_path / "tp.json"
    cmd = [*TORCHRUN, str(ROOT / "workflow" / "scripts" / "eval_cell.py"), *_argv(chaos, [tp], limit=6),
           "--layout", "tp"]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(tp) == _rows(one)
    assert json.loads(tp.read_text())["world_size"] == 2


# ---------------------------------------------------------------------------- the plan
def test_the_plan_gives_hf_slots_slots_per_size_and_tensor_parallel_where_it_pays(tmp_path):
    import yaml

    from elicit.checks.config import check
    from elicit.plan import memory_plan as mp

    cfg = check({**yaml.safe_load((ROOT / "config" / "config.yaml").read_text())})
    cfg["eval"]["backend"] = "hf-slots"
    layouts = {s: mp.eval_layout(cfg, s, 80) for s in cfg["sizes"]}
    assert layouts == {"1.5B": "single", "7B": "single", "14B": "tp", "32B": "tp"}
    slots = {s: mp.sequences_in_flight(cfg, s, 80) for s in cfg["sizes"]}
    assert slots["32B"] > mp.slots_plan(cfg, "32B", 80, "dp")  # tp: the KV splits, the slots multiply
    assert 30 <= slots["7B"] <= 40 and 60 <= slots["1.5B"] <= mp.SLOTS_MAX
    assert mp.check(cfg, 80) == []
    cfg["eval"]["batch_size"] = 500  # fixed slots that cannot fit: refused at plan time, with the fix
    (msg,) = [m for m in mp.check(cfg, 80) if m.startswith("models.7B")]
    assert "hf-slots" in msg and "eval.batch_size: auto" in msg
