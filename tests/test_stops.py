"""Why each answer stopped and after how many tokens (elicit/eval/stops.py), in the samples files."""
from __future__ import annotations

import json

import pytest

from elicit.eval import cell
from elicit.eval.stops import stop_info
from tests.conftest import eval_settings

# a toy vocabulary: id -> text; 0 = eos (also the padding), 9 = a special token decoded to ""
VOCAB = {0: "", 1: "a", 2: "b", 3: "Ques", 4: "tion:", 5: " ", 6: "42", 9: ""}


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


@pytest.mark.parametrize("ids,until,expected", [
    ([1, 2, 0], [], (3, "eos")),                                   # ended its turn
    ([1, 2, 0, 0, 0], [], (3, "eos")),                             # then padded with eos ids
    ([1, 5, 3, 4, 0, 0], ["Question:"], (4, "stop:Question:")),    # stop string over two tokens, padding = eos
    ([1, 3, 4, 1, 2], ["Question:"], (3, "stop:Question:")),       # batch-level stop: kept generating
    ([1, 2, 1, 2], ["Question:"], (4, "max_gen_toks")),            # cut at the limit
    ([6, 1, 2, 1], ["b", "Question:"], (3, "stop:b")),             # the first stop string in the text
    ([1, 2, 9, 9], [], (2, "unknown")),                            # neither, padding 9 not counted
])
def test_stop_info(ids, until, expected):
    assert stop_info(ids, [0], until, 4, decode, pad_id=9) == expected


def test_eval_cell_records_tokens_and_reason_in_any_batch(tmp_path, demo_model):
    """Greedy answers of the tiny model, one batch of 4 against four batches of 1: the per-answer
    record follows its document through HFLM's reordering of a batch."""
    import eval_cell

    got = {}
    for bs in (1, 4):
        out = tmp_path / f"bs{bs}.json"
        eval_cell.main([*eval_settings(), "--model", str(demo_model), "--task", "demo_aime", "--include-path",
                        "workflow/tasks/demo", "--seed", "0", "--temperature", "0", "--max-gen-toks", "12",
                        "--limit", "4", "--batch-size", str(bs), "--device", "cpu", "--dtype", "float32",
                        "--out", str(out)])
        rows = [json.loads(x) for x in cell.samples_path(out).read_text().splitlines()]
        got[bs] = {r["doc_id"]: (r["response"], r["n_new_tokens"], r["stop_reason"]) for r in rows}
    assert got[1] == got[4] and len(got[1]) == 4
    for response, n, why in got[1].values():
        assert why in ("eos", "max_gen_toks") or why.startswith("stop:")
        assert (n == 12) == (why == "max_gen_toks") and 0 < n <= 12


def test_cb_cut_keeps_the_uncut_text(tmp_path):
    """hf-cb generates past a multi-token stop string until EOS and cuts afterwards (lm_backend_cb._finish):
    an R1 trace that restates the problem ("Question: ...") loses its final answer to upstream AIME's stop
    string. The whole text is kept as `uncut` in the sidecar row (and read back on resume), and the
    second scorer says what it would score, as a separate column."""
    from types import SimpleNamespace

    import pandas as pd

    from elicit.eval import answers
    from elicit.eval.lm_backend import ResumableMixin
    from elicit.eval.lm_backend_cb import ContinuousBatchingHFLM

    text = "Let me restate it. Question: how many pairs? ... 42 in all.\n</think>\n\nThe answer is $\\boxed{42}$."
    side = tmp_path / "seed0.partial.jsonl"
    fake = SimpleNamespace(tok_decode=lambda toks: text, cb_stats={"generated_tokens": 0}, answer_meta={},
                           stop_meta=lambda toks, until, m: {"n_new_tokens": len(toks), "stop_reason": "stop:Question:"},
                           writer=True, dp_world=1, dp_rank=0, answers_written=0)
    cell = {"requests": [SimpleNamespace(task_name="aime24", doc_id=3)], "keys": ["k"], "done": {},
            "stats": {"generated": 0}, "sidecar": side}
    ContinuousBatchingHFLM._finish(fake, cell, 0, [5, 6, 7], ["Question:"], 100)
    assert cell["done"]["k"] == "Let me restate it. "
    row = json.loads(side.read_text())
    assert row["response"] == "Let me restate it. " and row["uncut"] == text and fake.answer_meta["k"]["uncut"] == text
    back = SimpleNamespace(answer_meta={}, sidecar_files=lambda: [side])  # resume reads it back
    assert ResumableMixin._load_sidecar(back) == {"k": "Let me restate it. "} and back.answer_meta["k"]["uncut"] == text
    got = answers.sample_row({**row, "target": "42", "score": 0})
    assert (got["score_robust"], got["score_robust_uncut"], got["cut_lost_answer"]) == (0.0, 1.0, True)
    plain = answers.sample_row({"response": "\\boxed{42}", "target": "42", "score": 1, "stop_reason": "eos"})
    assert (plain["score_robust_uncut"], plain["cut_lost_answer"]) == (1.0, False)  # nothing cut: the same score
    key = {"size": "7B", "configuration": "base", "train_examples": pd.NA, "task": "aime24"}
    stops = answers.stop_table(pd.DataFrame([{**key, **got}, {**key, **plain}]), {"AIME": ["aime24"]})
    assert stops[["cut_lost_answer", "robust_uncut_pct"]].iloc[0].tolist() == [1, 100.0]


def test_chat_templates_end_of_turn_is_always_an_eos_id():
    """Qwen3-Base: the tokenizer declares <|endoftext|> as EOS, its chat template ends a turn with
    <|im_end|>, and GPQA's `until` holds only "</s>". Before, an answer that ended its turn ran on
    (hf-cb) and was recorded as max_gen_toks / unknown."""
    from types import SimpleNamespace

    from elicit.data.demo import train_tokenizer
    from elicit.eval.lm_backend import ResumableMixin
    from elicit.eval.lm_backend_cb import ContinuousBatchingHFLM
    from elicit.eval.stops import turn_end_ids

    tok = train_tokenizer(["the answer is (B)", "seven plus five"], vocab_size=400)
    tok.eos_token = "<|endoftext|>"  # as Qwen3-Base's tokenizer declares it
    endoftext, im_end = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert turn_end_ids(tok) == {im_end}

    class Backend(ResumableMixin):
        pass

    b = object.__new__(Backend)
    b.tokenizer, b.eot_token_id = tok, endoftext
    b.model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=endoftext))
    b.tok_decode = lambda ids: tok.decode(ids)
    assert im_end in ContinuousBatchingHFLM._eos_ids(b, ["</s>"])
    ids = tok.encode("the answer is (B)", add_special_tokens=False) + [im_end, 5, 6]
    assert b.stop_meta(ids, ["</s>"], 100) == {"n_new_tokens": len(ids) - 2, "stop_reason": "eos"}
    tok.chat_template = None
    assert turn_end_ids(tok) == set()  # no template: nothing to add
