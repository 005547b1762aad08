#!/usr/bin/env python
"""Fetch the s1K-1.1 table once, validate it, and split it into nested subsets.

  fetch: hub id at a pinned revision (run on the submit host; compute nodes stay
         offline) or a local parquet/JSONL file -> one parquet table + its sha256.
  split: one seeded permutation; validation = its first `n_val` rows; training
         subset of size k = the next k rows, so every smaller subset is a prefix,
         hence a strict subset, of every larger one, and none touches validation.

Usage:
  python workflow/scripts/prepare_data.py fetch --source simplescaling/s1K-1.1 --revision main \\
      --out results/data/s1k.parquet
  python workflow/scripts/prepare_data.py split --table results/data/s1k.parquet \\
      --n-val 72 --subsets 928 464 232 116 58 29 --seed 0 --out results/data/manifest.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from atomic import atomic_path, write_json

COLUMNS = [
    "solution", "question", "cot_type", "source_type", "metadata",
    "gemini_thinking_trajectory", "gemini_attempt",
    "deepseek_thinking_trajectory", "deepseek_attempt",
    "gemini_grade", "gemini_grade_reason", "deepseek_grade", "deepseek_grade_reason",
]
REQUIRED_TEXT = ["question", "deepseek_thinking_trajectory", "deepseek_attempt"]


class DataError(ValueError):
    pass


def load_source(source: str, revision: str | None = None) -> pd.DataFrame:
    path = Path(source)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
    if path.exists():
        raise DataError(f"{source}: expected a .parquet or .jsonl file")
    import datasets  # a hub id: only the local `fetch` rule gets here

    return datasets.load_dataset(source, revision=revision, split="train").to_pandas()


def validate(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"table lacks column(s) {missing}; s1K-1.1 has {COLUMNS}")
    for col in REQUIRED_TEXT:
        for i, v in enumerate(df[col]):
            if not isinstance(v, str):
                raise DataError(f"row {i}: column {col!r} is {type(v).__name__}, expected a string")
            if not v.strip():
                raise DataError(f"row {i}: column {col!r} is empty")
    dup = df["question"].duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"row {i}: duplicate question (first seen earlier in the table)")
    return df[COLUMNS].reset_index(drop=True)


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cmd_fetch(args) -> None:
    args.revision = args.revision or None  # '' means: no revision
    df = validate(load_source(args.source, args.revision))
    with atomic_path(args.out, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    write_json(Path(args.out).with_suffix(".json"), {
        "source": args.source, "revision": args.revision, "rows": len(df), "sha256": sha256(args.out)})


def split_ids(n_rows: int, n_val: int, subsets: list[int], seed: int) -> dict:
    """Validation ids and nested subset ids (row indices) from one seeded permutation."""
    if n_val < 0 or n_val >= n_rows:
        raise DataError(f"data.n_val={n_val} must be in [0, {n_rows}) for a {n_rows}-row table")
    pool = n_rows - n_val
    too_big = [k for k in subsets if k > pool]
    if too_big:
        raise DataError(f"data.subsets {too_big} exceed the {pool} rows left after {n_val} validation rows")
    if any(k <= 0 for k in subsets):
        raise DataError(f"data.subsets must be positive, got {subsets}")
    perm = np.random.default_rng(seed).permutation(n_rows).tolist()
    val, rest = perm[:n_val], perm[n_val:]
    return {"validation": sorted(val),
            "subsets": {str(k): sorted(rest[:k]) for k in sorted(subsets)},
            "all": list(range(n_rows))}


def cmd_split(args) -> None:
    df = pd.read_parquet(args.table)
    manifest = split_ids(len(df), args.n_val, args.subsets, args.seed)
    meta_path = Path(args.table).with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    manifest.update(seed=args.seed, n_rows=len(df), source=meta.get("source"),
                    revision=meta.get("revision"), source_sha256=sha256(args.table))
    write_json(args.out, manifest)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch", help="load, validate and store the table as parquet")
    p.add_argument("--source", required=True, help="hub dataset id or a local .parquet/.jsonl")
    p.add_argument("--revision", default=None, help="hub revision (commit sha or tag)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("split", help="write the validation/subset manifest")
    p.add_argument("--table", required=True)
    p.add_argument("--n-val", type=int, required=True)
    p.add_argument("--subsets", type=int, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        {"fetch": cmd_fetch, "split": cmd_split}[args.cmd](args)
    except DataError as e:
        raise SystemExit(f"prepare_data: {e}")


if __name__ == "__main__":
    main()
