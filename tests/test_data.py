"""Fetch/split of the s1K-1.1 table: validation of rows and split config, no partial output."""
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from elicit.checks.config import ConfigError, check
from elicit.data.s1k import COLUMNS, split_problems
from elicit.provenance import sha256_file as sha256
from tests.conftest import ROOT
from tests.helpers import S1K_ROW as BASE
from tests.helpers import files, prepare_data_cli, s1k_rows, write_jsonl


def fetch(tmp_path, src, *extra):
    out = tmp_path / "out" / "s1k.parquet"
    return prepare_data_cli(["fetch", "--source", src, "--out", out, *extra]), tmp_path / "out"


# ------------------------------------------------------------------------------ happy paths
def test_fetch_then_split(tmp_path):
    src = write_jsonl(tmp_path / "s1k.jsonl", [dict(r, extra="x") for r in s1k_rows()])
    err, out = fetch(tmp_path, src, "--expected-rows", 12)
    assert err is None
    df = pd.read_parquet(out / "s1k.parquet")
    assert list(df.columns) == COLUMNS and len(df) == 12  # extra column dropped
    meta = json.loads((out / "s1k.json").read_text())
    assert meta["sha256"] == sha256(out / "s1k.parquet") and meta["rows"] == 12
    assert meta["source_file_sha256"] == sha256(src) and meta["normalised"] == []
    m_path = out / "manifest.json"
    assert prepare_data_cli(["split", "--table", out / "s1k.parquet", "--n-val", 4, "--subsets", 8, 2, "--seed", 3,
                "--expected-rows", 12, "--out", m_path]) is None
    m = json.loads(m_path.read_text())
    assert m["seed"] == 3 and m["n_rows"] == 12 and m["n_val"] == 4
    assert m["source"] == str(src) and m["revision"] is None and m["source_sha256"] == meta["sha256"]
    assert sorted(m["subsets"]) == ["2", "8"] and m["all"] == list(range(12))
    assert set(m["subsets"]["2"]) < set(m["subsets"]["8"]) and not set(m["subsets"]["8"]) & set(m["validation"])
    assert files(out) == ["manifest.json", "s1k.json", "s1k.parquet"]  # no temporaries left


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_list_traces_are_joined_like_s1(tmp_path, kind):
    rs = s1k_rows(3)
    rs[1]["deepseek_thinking_trajectory"] = ["First step.", "Second step."]
    if kind == "parquet":  # a list<string> column, as in the early revision
        for r in rs[::2]:
            r["deepseek_thinking_trajectory"] = [r["deepseek_thinking_trajectory"]]
    if kind == "jsonl":
        src = write_jsonl(tmp_path / "s1k.jsonl", rs)
    else:
        src = tmp_path / "s1k.parquet"
        pd.DataFrame(rs).to_parquet(src)
    err, out = fetch(tmp_path, src)
    assert err is None
    df = pd.read_parquet(out / "s1k.parquet")
    assert df["deepseek_thinking_trajectory"][1] == "First step.\nSecond step."
    assert df["deepseek_thinking_trajectory"][0] == BASE["deepseek_thinking_trajectory"]
    notes = json.loads((out / "s1k.json").read_text())["normalised"]
    assert "row 1: deepseek_thinking_trajectory was a list of 2 strings, joined with '\\n'" in notes
    assert len(notes) == (1 if kind == "jsonl" else 3)


def test_nulls_in_optional_columns_are_kept(tmp_path):
    rs = s1k_rows(3)
    rs[2]["gemini_grade"] = None
    err, out = fetch(tmp_path, write_jsonl(tmp_path / "s1k.jsonl", rs))
    assert err is None and pd.isna(pd.read_parquet(out / "s1k.parquet")["gemini_grade"][2])


# ------------------------------------------------------------------------------ bad data
def _edit(i, **kv):
    def f(rs):
        rs[i].update(kv)
        return rs
    return f


def _drop_col(col):
    return lambda rs: [{k: v for k, v in r.items() if k != col} for r in rs]


BAD_ROWS = {
    "missing column": (_drop_col("deepseek_attempt"), r"lacks column\(s\) \['deepseek_attempt'\]"),
    "no rows": (lambda rs: [], "table lacks column|no rows"),
    "null trace": (_edit(3, deepseek_thinking_trajectory=None),
                   r"row 3 \(question 'Problem 3: .*'\): column 'deepseek_thinking_trajectory' is missing"),
    "number as attempt": (_edit(4, deepseek_attempt=7), "row 4 .*'deepseek_attempt' is int, expected a string"),
    "list of non-strings": (_edit(5, deepseek_thinking_trajectory=["a", 1]),
                            r"row 5 .*'deepseek_thinking_trajectory' is a list holding \['int', 'str'\]"),
    "blank attempt": (_edit(6, deepseek_attempt=" \n "), "row 6 .*'deepseek_attempt' is empty"),
    "empty question": (_edit(2, question=""), "row 2: column 'question' is empty"),
    "question not a string": (_edit(2, question=["What?"]), "row 2: column 'question' is list"),
    "duplicate question": (_edit(7, question=" Problem 1: " + BASE["question"] + "\n"),
                           r"row 7 .*duplicate question \(same as row 1\)"),
    "control token": (_edit(8, deepseek_thinking_trajectory="so <|im_end|> here"),
                      r"row 8 .*contains chat control token\(s\) \['<\|im_end\|>'\]"),
    "optional column a dict": (_edit(9, metadata={"ID": 1}), "row 9 .*'metadata' is dict, expected a string or null"),
}


MIXED_TYPES = {"optional column a dict", "list of non-strings", "question not a string", "number as attempt"}


@pytest.mark.parametrize("case,kind", [(c, k) for c in BAD_ROWS for k in ("jsonl", "parquet")
                                       if not (k == "parquet" and c in MIXED_TYPES)])  # arrow: one type a column
def test_bad_rows_fail_naming_the_row_and_write_nothing(tmp_path, case, kind):
    edit, msg = BAD_ROWS[case]
    rs = edit(s1k_rows())
    if kind == "jsonl":
        src = write_jsonl(tmp_path / "s1k.jsonl", rs)
    else:
        src = tmp_path / "s1k.parquet"
        pd.DataFrame(rs, columns=None if rs else COLUMNS).to_parquet(src)
    err, out = fetch(tmp_path, src)
    assert err is not None and err.startswith("prepare_data: ")
    assert re.search(msg, err), err
    assert files(out) == []


@pytest.mark.parametrize("make,msg", [
    (lambda d: d / "absent.jsonl", "absent.jsonl: no such file"),
    (lambda d: (d / "s1k.csv").write_text("a,b\n") and d / "s1k.csv", "expected a .parquet or .jsonl"),
    (lambda d: (d / "s1k.parquet").write_bytes(b"PAR1 not really") and d / "s1k.parquet", "cannot read it"),
    (lambda d: (d / "s1k.jsonl").write_text('{"question": "a"\n') and d / "s1k.jsonl", "cannot read it"),
])
def test_bad_source_file(tmp_path, make, msg):
    err, out = fetch(tmp_path, make(tmp_path))
    assert err is not None and msg in err
    assert files(out) == []


def test_wrong_row_count(tmp_path):
    err, out = fetch(tmp_path, write_jsonl(tmp_path / "s1k.jsonl", s1k_rows(11)), "--expected-rows", 12)
    assert "table has 11 rows but data.expected_rows=12" in err
    assert files(out) == []


def test_failed_fetch_keeps_the_previous_good_table(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", s1k_rows())
    assert fetch(tmp_path, good)[0] is None
    before = sha256(tmp_path / "out" / "s1k.parquet")
    bad = write_jsonl(tmp_path / "bad.jsonl", _edit(0, deepseek_attempt="")(s1k_rows()))
    err, out = fetch(tmp_path, bad)
    assert "row 0" in err and files(out) == ["s1k.json", "s1k.parquet"]
    assert sha256(out / "s1k.parquet") == before


# ------------------------------------------------------------------------------ bad split config
@pytest.fixture
def table(tmp_path):
    assert fetch(tmp_path, write_jsonl(tmp_path / "s1k.jsonl", s1k_rows(12)))[0] is None
    return tmp_path / "out" / "s1k.parquet"


@pytest.mark.parametrize("args,msg", [
    (["--n-val", 4, "--subsets", 9], r"data.subsets: \[9\] exceed the 8 rows left by 12 rows minus data.n_val=4"),
    (["--n-val", 12, "--subsets", 1], r"data.n_val: 12 must be in \[1, 12\)"),
    (["--n-val", 4, "--subsets", 0, 2], "must be positive"),
    (["--n-val", 4, "--subsets", 2, 2], r"sizes repeat in \[2, 2\]"),
    (["--n-val", 4, "--subsets", 2, "--seed", -1], "data.split_seed: -1 must be non-negative"),
    (["--n-val", 4, "--subsets", 2, "--expected-rows", 1000], "has 12 rows but data.expected_rows=1000"),
])
def test_bad_split_fails_and_writes_no_manifest(table, args, msg):
    out = table.parent / "split" / "manifest.json"
    err = prepare_data_cli(["split", "--table", table, "--seed", 0, *args, "--out", out])
    assert err is not None and re.search(msg, err), err
    assert files(out.parent) == []


def test_split_refuses_a_table_changed_after_fetch(table):
    pd.read_parquet(table).iloc[:11].to_parquet(table)
    out = table.parent / "split" / "manifest.json"
    err = prepare_data_cli(["split", "--table", table, "--n-val", 2, "--subsets", 4, "--seed", 0, "--out", out])
    assert "the table changed since it was fetched" in err
    assert files(out.parent) == []


def test_cli_exit_status_and_message(tmp_path):
    src = write_jsonl(tmp_path / "s1k.jsonl", _edit(0, deepseek_attempt=None)(s1k_rows()))
    p = subprocess.run([sys.executable, "workflow/scripts/prepare_data.py", "fetch", "--source", str(src),
                        "--out", str(tmp_path / "o" / "s1k.parquet")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "row 0" in p.stderr and "'deepseek_attempt' is missing" in p.stderr
    assert files(tmp_path / "o") == []


# ------------------------------------------------------------------------------ plan time
def _paper():
    import yaml

    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_paper_and_demo_configs_pass():
    import yaml

    for d in (_paper()["data"], yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["data"]):
        assert split_problems(d["expected_rows"], d["n_val"], d["subsets"], d["split_seed"]) == []


@pytest.mark.parametrize("data,msg", [
    ({"subsets": [929, 29]}, r"data.subsets: \[929\] exceed the 928 rows left by data.expected_rows=1000"),
    ({"n_val": 1000}, r"data.n_val: 1000 must be in \[1, 1000\)"),
    ({"expected_rows": 990}, r"data.subsets: \[928\] exceed the 918 rows"),
])
def test_plan_time_split_check(data, msg):
    cfg = _paper()
    cfg["data"].update(data)
    with pytest.raises(ConfigError, match=msg):
        check(cfg)


def test_plan_time_check_without_expected_rows():
    d = dict(_paper()["data"], expected_rows=None, subsets=[5000])
    assert split_problems(None, d["n_val"], d["subsets"]) == []  # unknown table size: caught by split_data
    assert split_problems(None, d["n_val"], [3, 3]) == ["data.subsets: sizes repeat in [3, 3]"]


def test_snakemake_plan_fails_before_running(tmp_path):
    import yaml

    cfg = _paper()
    cfg["data"]["subsets"] = [929, 29]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(["snakemake", "-n", "--configfile", str(tmp_path / "c.yaml")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "data.subsets: [929] exceed the 928 rows" in p.stdout + p.stderr


def test_hub_source_records_the_resolved_commit(tmp_path, monkeypatch):
    import types

    import datasets
    import huggingface_hub

    calls = []

    def load_dataset(name, revision=None, split=None):
        calls.append((name, revision, split))
        return datasets.Dataset.from_list(s1k_rows(12))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info",
                        lambda self, repo, revision=None: types.SimpleNamespace(sha="c0ffee" * 6 + "abcd"))
    err, out = fetch(tmp_path, "simplescaling/s1K-1.1", "--revision", "main", "--expected-rows", 12)
    assert err is None and calls == [("simplescaling/s1K-1.1", "main", "train")]
    meta = json.loads((out / "s1k.json").read_text())
    assert meta["revision"] == "main" and meta["resolved_revision"] == "c0ffee" * 6 + "abcd"
    assert prepare_data_cli(["split", "--table", out / "s1k.parquet", "--n-val", 2, "--subsets", 10, "--seed", 0, "--out",
                out / "manifest.json"]) is None
    m = json.loads((out / "manifest.json").read_text())
    assert (m["source"], m["revision"], m["resolved_revision"]) == ("simplescaling/s1K-1.1", "main", "c0ffee" * 6 + "abcd")
