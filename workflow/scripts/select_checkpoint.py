#!/usr/bin/env python
"""Pick the last checkpoint within `tolerance` nats of the best validation loss.

Reads a training run's metrics.jsonl, chooses the step, and materialises that
checkpoint as <out>/model by hard-linking its files (no copy of a 64 GB model;
falls back to a copy across file systems). Writes <out>/selection.json.
A run without validation loss (LoRA on all rows) selects its final step.

Usage:
  python workflow/scripts/select_checkpoint.py --train-dir results/train/7B/full-29 \\
      --out results/models/7B/full-29 --tolerance 0.1
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
from pathlib import Path

from atomic import atomic_dir, read_json, read_jsonl, write_json


def select(rows: list[dict], tolerance: float = 0.1) -> dict:
    """The selection rule of the paper, on rows of {step, val_loss}."""
    evals = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None
             and not math.isnan(r["val_loss"])]
    if not evals:
        last = max(r["step"] for r in rows)
        return {"selected_step": last, "best_step": None, "best_val_loss": None,
                "selected_val_loss": None, "base_val_loss": None, "val_loss_decrease": None}
    best_step, best = min(evals, key=lambda e: (e[1], e[0]))
    selected_step, selected = max((e for e in evals if e[1] <= best + tolerance), key=lambda e: e[0])
    base = next((loss for step, loss in evals if step == 0), None)
    return {"selected_step": selected_step, "selected_val_loss": selected,
            "best_step": best_step, "best_val_loss": best, "base_val_loss": base,
            "val_loss_decrease": None if base is None else base - selected, "tolerance": tolerance}


def link_tree(src: Path, dst: Path) -> None:
    for p in src.rglob("*"):
        target = dst / p.relative_to(src)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, target)
        except OSError:
            shutil.copy2(p, target)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", required=True, help="holds metrics.jsonl and checkpoints/step-N")
    ap.add_argument("--out", required=True, help="gets model/ and selection.json")
    ap.add_argument("--tolerance", type=float, default=0.1)
    args = ap.parse_args(argv)
    train_dir, out = Path(args.train_dir), Path(args.out)
    sel = select(read_jsonl(train_dir / "metrics.jsonl"), args.tolerance)
    ckpt = train_dir / "checkpoints" / f"step-{sel['selected_step']}"
    if not ckpt.is_dir():
        kept = sorted(p.name for p in (train_dir / "checkpoints").glob("step-*"))
        raise SystemExit(f"select_checkpoint: selected {ckpt.name} but the run kept only {kept}")
    with atomic_dir(out / "model") as tmp:
        link_tree(ckpt, tmp)
    prov = ckpt / "provenance.json"
    trained_on = read_json(prov).get("fingerprint_parts") if prov.exists() else None
    write_json(out / "selection.json", {**sel, "checkpoint": str(ckpt), "trained_on": trained_on}, checksum=True)
    print(f"selected step {sel['selected_step']} (best step {sel['best_step']})")


if __name__ == "__main__":
    main()
