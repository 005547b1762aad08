"""Break ONE link of the demo's chain and its signal collapses.

tests/test_demo_dag.py shows that the demo finetunes beat the base model. This shows that
they do so only through the links the paper's pipeline depends on, none of which has a
"break" switch in production code: a broken link is made here by monkeypatching.

The intact chain is the demo run's own (conftest's demo_run, the `make demo` DAG, shared with
the other tests): the first demo size's base model, its finetune on the demo table's largest
full-finetuning subset, and both evaluated on demo_aime's first seed. Beside it, in this
process (so that monkeypatches reach the programs), from the same base model, table and
settings:
  * broken loss mask: workflow/scripts/train.py with chat_format.tokenize_example patched so
    that the loss falls on the prompt tokens (system prompt, question,
    "<|im_start|>assistant\\n") and not at all on the reasoning and the answer;
  * broken chat template: the intact finetune evaluated by workflow/scripts/eval_cell.py with
    lm-eval called with apply_chat_template=False (lm_eval.simple_evaluate patched), i.e. the
    bare question as prompt.
Both are evaluated as the eval rule evaluates the demo's cells (elicit/steps.py: the demo's
backend and sampling settings, demo_aime's first seed). demo_aime, not demo_gpqa: a model that learnt the prompts' text could
emit their "(A)".."(D)" lines and hit the right letter by chance; no prompt contains a
\\boxed{}.

The intact chain must beat the base model clearly; each broken one must score like the
base model. About a minute on two CPU cores beside the demo run.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from elicit.grid import samples_path
from tests.conftest import ROOT, demo_config, train_flags

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
TASKS = ROOT / "workflow" / "tasks" / "demo"
TASK = "demo_aime"
SIZE = DEMO["sizes"][0]
SUBSET = max(DEMO["data"]["subsets"])


# --------------------------------------------------------------------------- the design
def test_demo_tasks_are_make_demo_output():
    """workflow/tasks/demo/*.jsonl are exactly what `make_demo.py tasks` writes."""
    import make_demo

    for name, docs in make_demo.task_docs().items():
        lines = (TASKS / name).read_text().splitlines()
        assert [json.loads(line) for line in lines] == docs, f"regenerate: make_demo.py tasks --out {TASKS}"


def test_keywords_are_tiered_along_the_split():
    """Larger subsets teach more keywords; validation asks about what every subset teaches;
    every evaluation question is new and about a keyword some training row teaches."""
    import make_demo
    from elicit.data.s1k import split_ids

    data = DEMO["data"]
    rows = make_demo.demo_rows(data["expected_rows"], data["n_val"], data["subsets"], data["split_seed"])
    split = split_ids(len(rows), data["n_val"], data["subsets"], data["split_seed"])
    kw = [json.loads(r["metadata"])["keyword"] for r in rows]
    taught = {k: {kw[i] for i in ids} for k, ids in split["subsets"].items()}
    small, large = (str(k) for k in sorted(data["subsets"]))
    aime_t, gpqa_t = make_demo.AIME_TIERS, make_demo.GPQA_TIERS
    assert taught[small] == set(aime_t[0]) | set(gpqa_t[0])
    assert taught[large] == taught[small] | set(aime_t[1]) | set(gpqa_t[1])
    assert {kw[i] for i in split["validation"]} == taught[small]
    assert set(kw) == set(make_demo.AIME_KEY) | set(make_demo.GPQA_KEY)
    for r, k in zip(rows, kw):  # the answer is the keyword's, in the trace and the attempt
        ans = make_demo.AIME_KEY.get(k, make_demo.GPQA_KEY.get(k))
        assert r["solution"] == str(ans) and f"{k} goes with" in r["deepseek_thinking_trajectory"]
        assert (f"\\boxed{{{ans}}}" if k in make_demo.AIME_KEY else f"({ans})") in r["deepseek_attempt"]
    questions = {r["question"] for r in rows}
    assert len(questions) == len(rows)
    docs = make_demo.task_docs()
    for name, field, key in (("aime_demo.jsonl", "problem", make_demo.AIME_KEY),
                             ("gpqa_demo.jsonl", "prompt", make_demo.GPQA_KEY)):
        assert {d["keyword"] for d in docs[name]} == set(key)
        assert all(d["answer"] == str(key[d["keyword"]]) and f" {d['keyword']} " in d[field] for d in docs[name])
        assert not questions & {d[field] for d in docs[name]}
    # the unseen tier cannot be hit by echoing a taught answer
    assert not set(aime_t[-1].values()) & {v for t in aime_t[:-1] for v in t.values()}
    assert not set(gpqa_t[-1].values()) & {v for t in gpqa_t[:-1] for v in t.values()}


# --------------------------------------------------------------------------- one broken link
def _demo_run_parts(demo_run: Path) -> dict:
    """The demo run's files this test starts from: table, split, base model, the intact finetune
    (published model, training report) and its evaluations of the first seed of TASK."""
    res, seed = demo_run / "results", demo_config()["eval"]["seeds"][0]
    run = f"full-{SUBSET}"
    return {"s1k.jsonl": res / "demo" / "s1k.jsonl", "table": res / "data" / "s1k.parquet",
            "manifest": res / "data" / "manifest.json", "base": res / "demo" / "models" / SIZE / "base",
            "intact": res / "models" / SIZE / run / "model", "intact_train": res / "train" / SIZE / run,
            "eval": {c: res / "eval" / SIZE / c / TASK / f"seed{seed}.json" for c in ("base", run)}}


def _train(parts: dict, out: Path) -> Path:
    """train.py in this process (so that monkeypatches reach it) on the demo run's base model, table
    and split, with the demo config's training settings; the selected checkpoint."""
    import train

    argv = ["--model", str(parts["base"]), "--table", str(parts["table"]), "--manifest", str(parts["manifest"]),
            "--out", str(out), *train_flags(subset=SUBSET, progress=False)]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        assert train.main(argv) == 0
    finally:  # train.py's stop-request handlers must not outlive the run in this process
        for sig, h in handlers.items():
            signal.signal(sig, h)
    (ckpt,) = (out / "checkpoints").glob("step-*")  # train.py keeps only the selectable one
    return ckpt


def _evaluate(model: Path, out: Path) -> dict:
    """The demo's first seed of TASK as the eval rule runs it (elicit/steps.py: the demo's backend)."""
    import eval_cell
    from elicit import steps

    cfg = demo_config()
    args = steps.eval_args(cfg, SIZE, [TASK], cfg["eval"]["seeds"][:1], layout="single")
    return eval_cell.main([*steps.argv(args), "--model", str(model),
                           "--include-path", str(TASKS), "--device", "cpu", "--dtype", "float32", "--out", str(out)])


def prompt_only_labels(real):
    """tokenize_example with the mask inverted: labels on the prompt, IGNORE on the answer."""
    from elicit.data.chat import IGNORE_INDEX

    def tokenize_example(tokenizer, row, style="r1"):
        ids, labels = real(tokenizer, row, style)
        return ids, [t if y == IGNORE_INDEX else IGNORE_INDEX for t, y in zip(ids, labels)]

    return tokenize_example


def without_chat_template(real):
    def simple_evaluate(*args, **kwargs):
        return real(*args, **{**kwargs, "apply_chat_template": False})

    return simple_evaluate


@pytest.fixture(scope="module")
def runs(demo_run, tmp_path_factory):
    import time

    import lm_eval

    from elicit.data import chat as chat_format

    t0 = time.time()
    d, parts = tmp_path_factory.mktemp("demo_signal"), _demo_run_parts(demo_run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chat_format, "tokenize_example", prompt_only_labels(chat_format.tokenize_example))
        broken_mask = _train(parts, d / "broken_mask")
    # the published finetune is the selected checkpoint's weights (select_checkpoint.py)
    scores = {"base": json.loads(parts["eval"]["base"].read_text()),
              "intact": json.loads(parts["eval"][f"full-{SUBSET}"].read_text()),
              "broken_mask": _evaluate(broken_mask, d / "eval" / "broken_mask.json")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval, "simple_evaluate", without_chat_template(lm_eval.simple_evaluate))
        scores["no_chat_template"] = _evaluate(parts["intact"], d / "eval" / "no_chat_template.json")
    print("\n" + json.dumps({k: v["score"] for k, v in scores.items()}), f"({time.time() - t0:.0f} s)")
    return d, parts, scores


@pytest.mark.slow  # the demo run, one more training, two evaluations (minutes on 2 cores): not in make test-fast
def test_the_patches_break_what_they_claim(runs):
    from transformers import AutoTokenizer

    from elicit.data import chat as chat_format

    d, parts, scores = runs
    row = json.loads(parts["s1k.jsonl"].read_text().splitlines()[0])
    tok = AutoTokenizer.from_pretrained(parts["base"])
    ids, labels = chat_format.tokenize_example(tok, row)
    ids2, inverted = prompt_only_labels(chat_format.tokenize_example)(tok, row)
    ignored = chat_format.IGNORE_INDEX
    assert ids2 == ids and 0 < labels.count(ignored) < len(ids)
    assert [y == ignored for y in inverted] == [y != ignored for y in labels]
    # the patch reached train.py: every sequence is supervised from its first token on
    report = json.loads((d / "broken_mask" / "data.json").read_text())["train"]
    assert report["supervised_tokens"] == report["tokens"]
    intact = json.loads((parts["intact_train"] / "data.json").read_text())["train"]
    assert intact["supervised_tokens"]["total"] < intact["tokens"]["total"]
    # and lm-eval got the bare question instead of the chat-formatted one
    prompts = [json.loads(line)["prompt"] for line in
               (d / "eval" / "no_chat_template.samples.jsonl").read_text().splitlines()]
    assert prompts and not any("<|im_start|>" in p for p in prompts)
    with_template = [json.loads(line)["prompt"] for line in
                     samples_path(parts["eval"][f"full-{SUBSET}"]).read_text().splitlines()]
    assert all(p.startswith("<|im_start|>system") for p in with_template)


@pytest.mark.slow  # the demo run, one more training, two evaluations (minutes on 2 cores): not in make test-fast
def test_intact_chain_beats_base(runs):
    _, _, s = runs
    assert s["intact"]["score"] >= s["base"]["score"] + 25, {k: v["score"] for k, v in s.items()}


@pytest.mark.slow  # the demo run, one more training, two evaluations (minutes on 2 cores): not in make test-fast
@pytest.mark.parametrize("broken", ["broken_mask", "no_chat_template"])
def test_one_broken_link_collapses_the_signal(runs, broken):
    _, _, s = runs
    scores = {k: v["score"] for k, v in s.items()}
    assert s[broken]["score"] <= s["base"]["score"] + 10, scores
    assert s["intact"]["score"] - s[broken]["score"] >= 25, scores
