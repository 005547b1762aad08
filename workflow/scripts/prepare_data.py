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
from pathlib import Path

from elicit.atomic import atomic_path, json_text, read_json, write_json
from elicit.data.chat import use_template
from elicit.data.s1k import COLUMNS, DataError, load_source, split_ids, validate
from elicit.provenance import sha256_file as sha256


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
    from elicit.data.chat import length_report, prompt_length, tokenize_example

    counts = {}
    for i in manifest["all"]:
        x, y = tokenize_example(tokenizer, df.iloc[i].to_dict(), style)
        counts[i] = (len(x), prompt_length(y))

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
    use_template(tok, args.chat_template)
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
    p.add_argument("--seed", type=int, required=True, help="data.split_seed")
    p.add_argument("--expected-rows", type=int, default=None)
    p.add_argument("--out", required=True)
    p = sub.add_parser("lengths", help="token counts per subset under one tokenizer")
    p.add_argument("--table", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--tokenizer", required=True, help="model dir or hub id (offline: from the HF cache)")
    p.add_argument("--revision", default=None)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--format", required=True, choices=["r1", "s1"], help="data.format")
    p.add_argument("--max-seq-len", type=int, required=True)
    p.add_argument("--on-too-long", required=True, choices=["truncate", "drop"], help="data.on_too_long")
    p.add_argument("--chat-template", default="", help="models.<size>.chat_template ('': the tokenizer's own)")
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        {"fetch": cmd_fetch, "split": cmd_split, "lengths": cmd_lengths}[args.cmd](args)
    except DataError as e:
        raise SystemExit(f"prepare_data: {e}")


if __name__ == "__main__":
    main()
