#!/usr/bin/env python
"""Fetch the s1K-1.1 table once, validate it, split it into nested subsets, count tokens.

  fetch:   hub id at a pinned revision (a local rule on the submit host; compute nodes stay
           offline) or a local .parquet/.jsonl -> one validated parquet table + <table>.json
           (source, revision, the commit it resolved to, rows, sha256 of the stored table,
           normalisations applied).
  split:   one seeded permutation of the row indices; validation = its first `n_val`
           entries; training subset of size k = the next k, so every smaller subset is a
           prefix, hence a strict subset, of every larger one, and none touches validation.
           manifest.json: validation, subsets{k}, all (row indices of the stored table), seed,
           n_rows, n_val, source, revision, resolved_revision, source_sha256 (of the stored
           table, checked against the fetch record).
  lengths: per-example token counts (mean, sd, min, max per subset) and what the length
           policy (`data.max_seq_len`, `data.on_too_long`) does to each subset, for one
           tokenizer; needs the model's tokenizer, so it is separate from `split`.

Row validation (fetch) -- each failure names the row and the column, and nothing is written:
  * every one of the 13 s1K-1.1 columns present (extra columns are dropped);
  * at least one row, and exactly `--expected-rows` rows when given (data.expected_rows);
  * question, deepseek_thinking_trajectory, deepseek_attempt: non-empty strings without
    chat control tokens (<|im_start|>, <|im_end|>, <|endoftext|>), which would corrupt
    the chat template and the label mask;
  * the other ten columns: strings or null;
  * no two rows with the same question (after stripping whitespace): a duplicate could
    land in both validation and training.
  Documented normalisation: a trace/attempt stored as a list of strings (an early revision
  of s1K-1.1 typed the deepseek fields so) is joined with "\\n" -- exactly what s1's own
  data/tokenization.py does ("\\n".join(thinking_trajectories)); it is recorded in
  <table>.json. A list holding anything but strings is an error.

Usage:
  python workflow/scripts/prepare_data.py fetch --source simplescaling/s1K-1.1 --revision SHA \\
      --expected-rows 1000 --out results/data/s1k.parquet
  python workflow/scripts/prepare_data.py split --table results/data/s1k.parquet \\
      --n-val 72 --subsets 928 464 232 116 58 29 --seed 0 --expected-rows 1000 \\
      --out results/data/manifest.json
  python workflow/scripts/prepare_data.py lengths --table results/data/s1k.parquet \\
      --manifest results/data/manifest.json --tokenizer Qwen/Qwen2.5-7B-Instruct \\
      --format r1 --max-seq-len 32768 --on-too-long truncate --out results/data/lengths/7B.json
"""
from __future__ import annotations

import argparse
import hashlib
import math
from pathlib import Path

from atomic import atomic_path, json_text, read_json, write_json

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


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def meta_path(table) -> Path:
    return Path(table).with_suffix(".json")


def resolve_revision(source: str, revision: str | None) -> str | None:
    """The commit sha a hub revision (branch, tag or sha) points at now; None if unknown."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source, revision=revision).sha
    except Exception as e:  # noqa: BLE001 -- provenance only; the download itself already succeeded
        print(f"fetch: could not resolve {source}@{revision} to a commit ({type(e).__name__}); "
              "pin data.revision to a commit sha for a reproducible run")
        return None


def cmd_fetch(args) -> None:
    revision = args.revision or None  # '' means: no revision
    df, notes = validate(load_source(args.source, revision), args.expected_rows)
    local = Path(args.source).is_file()
    resolved = None if local else resolve_revision(args.source, revision)
    # Both files are written to temporaries first and renamed only when both are complete.
    with atomic_path(args.out, suffix=".parquet") as tmp_table:
        df.to_parquet(tmp_table, index=False)
        with atomic_path(meta_path(args.out), suffix=".json") as tmp_meta:
            tmp_meta.write_text(json_text({
                "source": args.source, "revision": revision, "resolved_revision": resolved,
                "rows": len(df), "columns": COLUMNS,
                "sha256": sha256(tmp_table), "source_file_sha256": sha256(args.source) if local else None,
                "normalised": notes}, checksum=True))
    print(f"fetch: {len(df)} rows from {args.source}" + (f"@{revision}" if revision else "")
          + (f"; {len(notes)} normalisation(s)" if notes else ""))


# ----------------------------------------------------------------------------- split
def check_split_config(data: dict) -> list[str]:
    """Problems of config `data` that make the split impossible, found at plan time.

    With `data.expected_rows` known, a subset larger than the pool left after validation
    (which would overlap validation) is caught before anything runs. Called by
    workflow/scripts/config_check.py; returns messages that name the offending key.
    """
    problems = []
    subsets, n_val, rows = list(data.get("subsets") or []), data.get("n_val"), data.get("expected_rows")
    if not subsets:
        problems.append("data.subsets: at least one training subset size is needed")
    if len(set(subsets)) != len(subsets):
        problems.append(f"data.subsets: sizes repeat in {subsets}")
    bad = [k for k in subsets if not isinstance(k, int) or k <= 0]
    if bad:
        problems.append(f"data.subsets: sizes must be positive integers, got {bad}")
    if rows is not None and isinstance(n_val, int):
        if not 0 < n_val < rows:
            problems.append(f"data.n_val: {n_val} must be in [1, {rows}) for data.expected_rows={rows}")
        else:
            pool = rows - n_val
            over = sorted(k for k in subsets if isinstance(k, int) and k > pool)
            if over:
                problems.append(f"data.subsets: {over} exceed the {pool} rows left by data.expected_rows="
                                f"{rows} minus data.n_val={n_val} (a subset may not overlap validation)")
    return problems


def split_ids(n_rows: int, n_val: int, subsets: list[int], seed: int) -> dict:
    """Validation ids and nested subset ids (row indices) from one seeded permutation."""
    import numpy as np

    if not subsets:
        raise DataError("data.subsets is empty: at least one training subset size is needed")
    if len(set(subsets)) != len(subsets):
        raise DataError(f"data.subsets: sizes repeat in {list(subsets)}")
    if any(k <= 0 for k in subsets):
        raise DataError(f"data.subsets must be positive, got {list(subsets)}")
    if n_val < 0 or n_val >= n_rows:
        raise DataError(f"data.n_val={n_val} must be in [0, {n_rows}) for a {n_rows}-row table")
    if seed < 0:
        raise DataError(f"data.split_seed={seed} must be non-negative")
    pool = n_rows - n_val
    too_big = sorted(k for k in subsets if k > pool)
    if too_big:
        raise DataError(f"data.subsets {too_big} exceed the {pool} rows left after {n_val} validation "
                        f"rows of a {n_rows}-row table (a subset may not overlap validation)")
    perm = np.random.default_rng(seed).permutation(n_rows).tolist()
    val, rest = perm[:n_val], perm[n_val:]
    return {"validation": sorted(val),
            "subsets": {str(k): sorted(rest[:k]) for k in sorted(subsets)},
            "all": list(range(n_rows))}


def cmd_split(args) -> None:
    import pandas as pd

    table_sha = sha256(args.table)
    meta = read_json(meta_path(args.table)) if meta_path(args.table).exists() else {}
    if meta.get("sha256") and meta["sha256"] != table_sha:
        raise DataError(f"{args.table}: sha256 {table_sha[:12]}… differs from {meta['sha256'][:12]}… "
                        f"recorded by fetch in {meta_path(args.table)}; the table changed since it was fetched")
    n_rows = len(pd.read_parquet(args.table, columns=["question"]))
    if args.expected_rows is not None and n_rows != args.expected_rows:
        raise DataError(f"{args.table} has {n_rows} rows but data.expected_rows={args.expected_rows}")
    manifest = split_ids(n_rows, args.n_val, args.subsets, args.seed)
    manifest.update(seed=args.seed, n_rows=n_rows, n_val=args.n_val, source=meta.get("source"),
                    revision=meta.get("revision"), resolved_revision=meta.get("resolved_revision"),
                    source_sha256=table_sha)
    write_json(args.out, manifest, checksum=True)
    print(f"split: {n_rows} rows -> validation {args.n_val}, subsets {sorted(args.subsets, reverse=True)}")


# ----------------------------------------------------------------------------- lengths
def lengths_report(tokenizer, df, manifest: dict, style: str, max_seq_len: int, on_too_long: str) -> dict:
    """Token counts and length-policy outcome per subset, validation and all rows."""
    from chat_format import IGNORE_INDEX, length_report, tokenize_example

    counts = {}
    for i in manifest["all"]:
        x, y = tokenize_example(tokenizer, df.iloc[i].to_dict(), style)
        counts[i] = (len(x), next((j for j, t in enumerate(y) if t != IGNORE_INDEX), len(y)))

    def rep(ids):
        return length_report(counts, list(ids), max_seq_len, on_too_long, style)

    return {"format": style, "max_seq_len": max_seq_len, "on_too_long": on_too_long,
            "source_sha256": manifest.get("source_sha256"),
            "subsets": {k: rep(ids) for k, ids in manifest["subsets"].items()},
            "validation": rep(manifest["validation"]), "all": rep(manifest["all"])}


def cmd_lengths(args) -> None:
    import pandas as pd
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer, revision=args.revision or None,
                                        trust_remote_code=args.trust_remote_code)
    manifest = read_json(args.manifest, keys=("all", "subsets", "validation"))
    if manifest.get("source_sha256") and manifest["source_sha256"] != sha256(args.table):
        raise DataError(f"{args.table} is not the table {args.manifest} was split from (sha256 differs)")
    report = lengths_report(tok, pd.read_parquet(args.table), manifest, args.format,
                            args.max_seq_len, args.on_too_long)
    report["tokenizer"] = args.tokenizer
    write_json(args.out, report)
    a = report["all"]
    print(f"lengths: mean {a['tokens']['mean']} sd {a['tokens']['sd']} max {a['tokens']['max']}; "
          f"{a['too_long']} over {args.max_seq_len} ({args.on_too_long})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch", help="load, validate and store the table as parquet")
    p.add_argument("--source", required=True, help="hub dataset id or a local .parquet/.jsonl")
    p.add_argument("--revision", default=None, help="hub revision (commit sha or tag)")
    p.add_argument("--expected-rows", type=int, default=None, help="fail unless the table has this many rows")
    p.add_argument("--out", required=True)
    p = sub.add_parser("split", help="write the validation/subset manifest")
    p.add_argument("--table", required=True)
    p.add_argument("--n-val", type=int, required=True)
    p.add_argument("--subsets", type=int, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--expected-rows", type=int, default=None)
    p.add_argument("--out", required=True)
    p = sub.add_parser("lengths", help="token counts per subset under one tokenizer")
    p.add_argument("--table", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--tokenizer", required=True, help="model dir or hub id (offline: from the HF cache)")
    p.add_argument("--revision", default=None)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--format", default="r1", choices=["r1", "s1"])
    p.add_argument("--max-seq-len", type=int, required=True)
    p.add_argument("--on-too-long", default="truncate", choices=["truncate", "drop"])
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        {"fetch": cmd_fetch, "split": cmd_split, "lengths": cmd_lengths}[args.cmd](args)
    except DataError as e:
        raise SystemExit(f"prepare_data: {e}")


if __name__ == "__main__":
    main()
