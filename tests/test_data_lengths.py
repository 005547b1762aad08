"""`prepare_data.py lengths`: per-subset token counts and the length policy, never silent."""
import json

import pytest

import prepare_data
from elicit.data.chat import encode_rows, summarize, tokenize_example
from tests.helpers import build_tokenizer, files, prepare_data_cli, s1k_rows, write_jsonl


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("lengths")
    rs = s1k_rows(12)
    for i, r in enumerate(rs):  # lengths that differ from row to row
        r["deepseek_thinking_trajectory"] = " ".join(["step"] * (5 + 7 * i))
    assert prepare_data_cli(["fetch", "--source", write_jsonl(d / "s1k.jsonl", rs), "--out", d / "s1k.parquet"]) is None
    assert prepare_data_cli(["split", "--table", d / "s1k.parquet", "--n-val", 3, "--subsets", 8, 4, "--seed", 0,
                "--out", d / "manifest.json"]) is None
    tok = build_tokenizer([str(v) for r in rs for v in r.values()])
    tok.save_pretrained(d / "tok")
    return d, tok


@pytest.mark.parametrize("style", ["r1", "s1"])
def test_lengths_per_subset(setup, style):
    d, tok = setup
    out = d / f"lengths-{style}.json"
    assert prepare_data_cli(["lengths", "--table", d / "s1k.parquet", "--manifest", d / "manifest.json", "--tokenizer",
                d / "tok", "--format", style, "--max-seq-len", 100000, "--on-too-long", "truncate", "--out", out]) is None
    rep = json.loads(out.read_text())
    manifest = json.loads((d / "manifest.json").read_text())
    import pandas as pd

    df = pd.read_parquet(d / "s1k.parquet")
    n = {i: len(tokenize_example(tok, df.iloc[i].to_dict(), style)[0]) for i in manifest["all"]}
    assert sorted(rep["subsets"]) == ["4", "8"] and rep["format"] == style
    for k, ids in manifest["subsets"].items():
        assert rep["subsets"][k]["tokens"] == summarize([n[i] for i in ids])
        assert rep["subsets"][k]["too_long"] == 0 and rep["subsets"][k]["kept"] == int(k)
    assert rep["validation"]["tokens"] == summarize([n[i] for i in manifest["validation"]])
    assert rep["all"]["tokens"]["n"] == 12 and rep["source_sha256"] == manifest["source_sha256"]


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_lengths_count_the_long_ones_like_training_does(setup, policy):
    d, tok = setup
    import pandas as pd

    df = pd.read_parquet(d / "s1k.parquet")
    manifest = json.loads((d / "manifest.json").read_text())
    lens = sorted(len(tokenize_example(tok, df.iloc[i].to_dict(), "r1")[0]) for i in manifest["all"])
    cut = lens[6]  # half the rows are over
    out = d / f"lengths-{policy}.json"
    assert prepare_data_cli(["lengths", "--table", d / "s1k.parquet", "--manifest", d / "manifest.json", "--tokenizer",
                d / "tok", "--format", "r1", "--max-seq-len", cut, "--on-too-long", policy, "--out", out]) is None
    rep = json.loads(out.read_text())
    assert rep["all"]["too_long"] == sum(x > cut for x in lens) > 0
    for k, ids in manifest["subsets"].items():
        _, train_rep = encode_rows(tok, [df.iloc[i].to_dict() for i in ids], "r1", cut, policy, ids=ids)
        assert rep["subsets"][k] == train_rep  # the same numbers the training job will log
        if policy == "drop":
            assert train_rep["dropped"] == train_rep["too_long"]
        else:
            assert train_rep["truncated"] + train_rep["dropped"] == train_rep["too_long"]


def test_lengths_refuse_a_foreign_table(setup, tmp_path):
    d, _ = setup
    other = tmp_path / "s1k.parquet"
    assert prepare_data_cli(["fetch", "--source", write_jsonl(tmp_path / "o.jsonl", s1k_rows(12)), "--out", other]) is None
    out = tmp_path / "res" / "lengths.json"
    err = prepare_data_cli(["lengths", "--table", other, "--manifest", d / "manifest.json", "--tokenizer", d / "tok",
               "--format", "r1", "--max-seq-len", 100, "--on-too-long", "truncate", "--out", out])
    assert "is not the table" in err and files(out.parent) == []
    assert prepare_data.DataError  # the CLI turned it into a message, not a traceback


def test_lengths_render_with_the_models_chat_template(setup, tmp_path):
    """--chat-template (models.<size>.chat_template): the counts are those of the text train.py renders
    with the same file (here without the Qwen2.5 system prompt: fewer tokens per row)."""
    d, tok = setup
    f = tmp_path / "plain.jinja"
    f.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    reps = {}
    for name, extra in (("own", []), ("file", ["--chat-template", f])):
        out = tmp_path / f"{name}.json"
        assert prepare_data_cli(["lengths", "--table", d / "s1k.parquet", "--manifest", d / "manifest.json", "--tokenizer", d / "tok",
                    "--format", "r1", "--max-seq-len", 100000, "--on-too-long", "truncate", "--out", out, *extra]) is None
        reps[name] = json.loads(out.read_text())["all"]["tokens"]
    assert reps["file"]["n"] == reps["own"]["n"] == 12 and reps["file"]["total"] < reps["own"]["total"]
