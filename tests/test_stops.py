"""Why each answer stopped and after how many tokens (elicit/eval/stops.py), in the samples files."""
from __future__ import annotations

import json

import pytest

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
        rows = [json.loads(x) for x in eval_cell.samples_path(out).read_text().splitlines()]
        got[bs] = {r["doc_id"]: (r["response"], r["n_new_tokens"], r["stop_reason"]) for r in rows}
    assert got[1] == got[4] and len(got[1]) == 4
    for response, n, why in got[1].values():
        assert why in ("eos", "max_gen_toks") or why.startswith("stop:")
        assert (n == 12) == (why == "max_gen_toks") and 0 < n <= 12
