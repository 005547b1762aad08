"""The s1K-1.1 table: its columns, row validation, and the nested split (one rule, two callers).

  COLUMNS, validate(df)   the 13 columns; every failure names the row and the column
  split_problems(...)     what makes a split impossible, naming the config key; the config check
                          calls it at plan time (with data.expected_rows), split_ids at run time
  split_ids(...)          validation ids and nested subset ids from one seeded permutation
"""
from __future__ import annotations

import math
from pathlib import Path

COLUMNS = [
    "solution", "question", "cot_type", "source_type", "metadata",
    "gemini_thinking_trajectory", "gemini_attempt",
    "deepseek_thinking_trajectory", "deepseek_attempt",
    "gemini_grade", "gemini_grade_reason", "deepseek_grade", "deepseek_grade_reason",
]
REQUIRED_TEXT = ["question", "deepseek_thinking_trajectory", "deepseek_attempt"]
JOINABLE = ["deepseek_thinking_trajectory", "deepseek_attempt"]
CONTROL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


class DataError(ValueError):
    pass


# ----------------------------------------------------------------------------- loading
def load_source(source: str, revision: str | None = None):
    import pandas as pd

    path = Path(source)
    if path.suffix in (".parquet", ".jsonl", ".json"):
        if not path.is_file():
            raise DataError(f"data.source {source}: no such file")
        if path.stat().st_size == 0 or (path.suffix != ".parquet" and not path.read_text(errors="replace").strip()):
            raise DataError(f"data.source {source}: the file is empty (no rows)")
        try:
            if path.suffix == ".parquet":
                return pd.read_parquet(path)
            return pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
        except Exception as e:  # noqa: BLE001 -- any parse failure is a bad source file
            raise DataError(f"data.source {source}: cannot read it ({type(e).__name__}: {e})") from e
    if path.exists() or source.startswith(("/", "./", "../", "results/")):
        raise DataError(f"data.source {source}: expected a .parquet or .jsonl file or a hub dataset id")
    import datasets  # a hub id: only the local `fetch` rule gets here

    return datasets.load_dataset(source, revision=revision, split="train").to_pandas()


# ----------------------------------------------------------------------------- validation
def _is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _where(i: int, df) -> str:
    q = df["question"].iloc[i]
    return f"row {i}" + (f" (question {q[:50]!r})" if isinstance(q, str) and q.strip() else "")


def validate(df, expected_rows: int | None = None):
    """(clean table with exactly COLUMNS, list of normalisation notes) or DataError."""
    if len(df) == 0:
        raise DataError("table is empty: it has no rows")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"table lacks column(s) {missing}; s1K-1.1 has {COLUMNS}")
    if expected_rows is not None and len(df) != expected_rows:
        raise DataError(f"table has {len(df)} rows but data.expected_rows={expected_rows}")
    df = df[COLUMNS].reset_index(drop=True).copy()
    notes = []
    for col in COLUMNS:
        values = df[col].tolist()
        for i, v in enumerate(values):
            if hasattr(v, "tolist") and not isinstance(v, str):  # numpy arrays from parquet lists
                v = v.tolist()
            if col in JOINABLE and isinstance(v, (list, tuple)):
                if not all(isinstance(s, str) for s in v):
                    kinds = sorted({type(s).__name__ for s in v})
                    raise DataError(f"{_where(i, df)}: column {col!r} is a list holding {kinds}, "
                                    "expected a string or a list of strings")
                v = "\n".join(v)
                notes.append(f"row {i}: {col} was a list of {len(values[i])} strings, joined with '\\n'")
            if col in REQUIRED_TEXT:
                if _is_null(v):
                    raise DataError(f"{_where(i, df)}: column {col!r} is missing (null)")
                if not isinstance(v, str):
                    raise DataError(f"{_where(i, df)}: column {col!r} is {type(v).__name__}, expected a string")
                if not v.strip():
                    raise DataError(f"{_where(i, df)}: column {col!r} is empty")
                bad = [t for t in CONTROL_TOKENS if t in v]
                if bad:
                    raise DataError(f"{_where(i, df)}: column {col!r} contains chat control token(s) {bad}")
            elif not (_is_null(v) or isinstance(v, str)):
                raise DataError(f"{_where(i, df)}: column {col!r} is {type(v).__name__}, expected a string or null")
            else:
                v = None if _is_null(v) else v
            values[i] = v
        df[col] = values
    seen = {}
    for i, q in enumerate(df["question"]):
        key = q.strip()
        if key in seen:
            raise DataError(f"{_where(i, df)}: duplicate question (same as row {seen[key]})")
        seen[key] = i
    return df, notes


def split_problems(n_rows: int | None, n_val, subsets, seed=0) -> list[str]:
    """Problems that make the split of an n_rows table impossible (n_rows None: not known yet,
    only the subsets are checked), each naming the config key (data.subsets, data.n_val, ...)."""
    problems = []
    subsets = list(subsets or [])
    if not subsets:
        problems.append("data.subsets: at least one training subset size is needed")
    if len(set(subsets)) != len(subsets):
        problems.append(f"data.subsets: sizes repeat in {subsets}")
    bad = [k for k in subsets if not isinstance(k, int) or k <= 0]
    if bad:
        problems.append(f"data.subsets: sizes must be positive integers, got {bad}")
    if isinstance(seed, int) and seed < 0:
        problems.append(f"data.split_seed: {seed} must be non-negative")
    if n_rows is not None and isinstance(n_val, int):
        if not 0 < n_val < n_rows:
            problems.append(f"data.n_val: {n_val} must be in [1, {n_rows}) for a {n_rows}-row table")
        else:
            pool = n_rows - n_val
            over = sorted(k for k in subsets if isinstance(k, int) and k > pool)
            if over:
                problems.append(f"data.subsets: {over} exceed the {pool} rows left by {n_rows} rows minus "
                                f"data.n_val={n_val} (a subset may not overlap validation)")
    return problems


def split_ids(n_rows: int, n_val: int, subsets: list[int], seed: int) -> dict:
    """Validation ids and nested subset ids (row indices) from one seeded permutation: validation
    is its first n_val entries, the subset of size k the next k, so every smaller subset is a
    prefix, hence a strict subset, of every larger one, and none touches validation."""
    import numpy as np

    problems = split_problems(n_rows, n_val, subsets, seed)
    if problems:
        raise DataError("; ".join(problems))
    perm = np.random.default_rng(seed).permutation(n_rows).tolist()
    val, rest = perm[:n_val], perm[n_val:]
    return {"validation": sorted(val),
            "subsets": {str(k): sorted(rest[:k]) for k in sorted(subsets)},
            "all": list(range(n_rows))}


def training_examples(table: str, manifest_path: str, subset: str, tokenizer, style: str, max_seq_len: int,
                      on_too_long: str):
    """(train, validation, length report) of one run: subset `n` of the manifest and its validation
    rows, or `all` rows and no validation; each row tokenized with its label mask (elicit.data.chat),
    sequences over max_seq_len truncated or dropped and counted, never silently."""
    import pandas as pd

    from elicit.atomic import read_json
    from elicit.data.chat import encode_rows

    df = pd.read_parquet(table)
    manifest = read_json(manifest_path, keys=("all", "subsets", "validation"))
    if subset == "all":
        train_ids, val_ids = manifest["all"], []
    else:
        if subset not in manifest["subsets"]:
            raise SystemExit(f"subset {subset} not in manifest (has {sorted(manifest['subsets'])})")
        train_ids, val_ids = manifest["subsets"][subset], manifest["validation"]

    def encode(ids):
        return encode_rows(tokenizer, [df.iloc[i].to_dict() for i in ids], style, max_seq_len, on_too_long, ids=ids)

    (train_set, train_report), (val_set, val_report) = encode(train_ids), encode(val_ids)
    if not train_set:
        raise SystemExit(f"no training example fits max_seq_len={max_seq_len} (on_too_long={on_too_long})")
    return train_set, val_set, {"train": train_report, "validation": val_report}
