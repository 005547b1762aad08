#!/usr/bin/env python
"""Pick the last checkpoint within `tolerance` nats of the best validation loss (the rule is
elicit/train/checkpoints.py's `select`, the one train.py applies online to keep only that checkpoint).

Reads a training run's metrics.jsonl, chooses the step, and materialises that
checkpoint as <out>/model by copying its files, verified first against the manifest train.py
wrote (a copy, so that a damaged model can be re-published from the checkpoint). Writes
<out>/selection.json with the published files' sizes and sha256.
A run without validation loss (LoRA on all rows) selects its final step.

Usage:
  python workflow/scripts/select_checkpoint.py --train-dir results/train/7B/full-29 \\
      --out results/models/7B/full-29 --tolerance 0.1
"""
from __future__ import annotations

import argparse
from pathlib import Path

from elicit import grid
from elicit.atomic import atomic_dir, read_json, read_jsonl, write_json
from elicit.train.checkpoints import Diverged, copy_tree, file_manifest, manifest_problems, select


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", required=True, help="holds metrics.jsonl and checkpoints/step-N")
    ap.add_argument("--out", required=True, help="gets model/ and selection.json")
    ap.add_argument("--tolerance", type=float, required=True, help="nats (train.tolerance)")
    args = ap.parse_args(argv)
    train_dir, out = Path(args.train_dir), Path(args.out)
    metrics, ckpts = grid.run_outputs(train_dir).values()
    try:
        sel = select(read_jsonl(metrics), args.tolerance)
    except Diverged as e:
        raise SystemExit(f"select_checkpoint: {metrics}: {e}")
    ckpt = grid.step_dir(ckpts, sel["selected_step"])
    if not ckpt.is_dir():
        kept = [p.name for p in grid.step_dirs(ckpts)]
        raise SystemExit(f"select_checkpoint: selected {ckpt.name} but the run kept only {kept}")
    prov = read_json(ckpt / "provenance.json") if (ckpt / "provenance.json").exists() else {}
    damaged = manifest_problems(ckpt, prov.get("files") or {}, full=True)
    if damaged:
        raise SystemExit(f"select_checkpoint: {ckpt} is damaged:\n  " + "\n  ".join(damaged)
                         + f"\n  fix: rm -rf {train_dir}, then rerun: the next run retrains it")
    with atomic_dir(out / "model") as tmp:
        copy_tree(ckpt, tmp)
        files = prov.get("files") or file_manifest(tmp)
    write_json(out / "selection.json", {**sel, "checkpoint": str(ckpt), "trained_on": prov.get("fingerprint_parts"),
                                        "files": files}, checksum=True)
    print(f"selected step {sel['selected_step']} (best step {sel['best_step']})")


if __name__ == "__main__":
    main()
