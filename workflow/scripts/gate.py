#!/usr/bin/env python
"""The fail-fast gate (elicit/plan/gate.py): is the smallest size's pilot sane?

Checks the pilot's training metrics (every loss and gradient norm finite, at least one finite
training loss), its selection (a selected step, finite losses) and one evaluation cell (a finite
score, answers of which at least one parses: an integer in the last \\boxed{} or a choice letter,
elicit/eval/scoring.py). Writes --out (the file the larger sizes' jobs wait for) only when every
check passes; otherwise exits 1 naming each failed check and the fix, and Snakemake submits none
of the jobs waiting for it. <out stem>.pending.json, written at the start and removed on success,
keeps the larger sizes' finished jobs waiting for the next check after a failed or killed one.

Usage:
  python workflow/scripts/gate.py --metrics results/train/1.5B/full-29/metrics.jsonl \\
      --selection results/models/1.5B/full-29/selection.json \\
      --cell results/eval/1.5B/full-29/aime24/seed0.json --out results/gate/1.5B.json
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from elicit.atomic import CorruptFile, read_json, read_jsonl, write_json
from elicit.eval.scoring import extract_aime, extract_gpqa
from elicit.grid import samples_path
from elicit.plan.gate import pending

LOSS_KEYS = ("train_loss", "val_loss", "best_val_loss", "grad_norm")


def nonfinite(x) -> bool:
    return isinstance(x, (int, float)) and not math.isfinite(x)


def metrics_problems(rows: list[dict]) -> list[str]:
    bad = [(r.get("step"), k, r[k]) for r in rows for k in LOSS_KEYS if nonfinite(r.get(k))]
    out = [f"{k} is {v} at step {s}" for s, k, v in bad[:3]]
    if not any(isinstance(r.get("train_loss"), (int, float)) and math.isfinite(r["train_loss"]) for r in rows):
        out.append("no finite train_loss logged")
    return out


def selection_problems(sel: dict) -> list[str]:
    out = [] if isinstance(sel.get("selected_step"), int) else ["no selected_step"]
    return out + [f"{k} is {v}" for k, v in sel.items() if k.endswith("loss") and nonfinite(v)]


def parses(response) -> bool:
    return bool(response) and (extract_aime(response) is not None or extract_gpqa(response) is not None)


def cell_check(record: dict, samples: list[dict]) -> tuple[list[str], int]:
    """The cell's problems, and how many of its answers parse."""
    out = [] if isinstance(record.get("score"), (int, float)) and math.isfinite(record["score"]) else [
        f"score is {record.get('score')}"]
    parsed = sum(parses(s.get("response")) for s in samples)
    if not parsed:
        empty = sum(not s.get("response") for s in samples)
        out.append(f"no answer parses: 0 of {len(samples)} answers hold a \\boxed{{}} integer or a choice letter"
                   + (f" ({empty} empty)" if empty else ""))
    return out, parsed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", required=True, help="the pilot run's metrics.jsonl")
    ap.add_argument("--selection", required=True, help="the pilot run's selection.json")
    ap.add_argument("--cell", required=True, help="one evaluation cell of the pilot run (its .samples.jsonl beside it)")
    ap.add_argument("--out", required=True, help="written when the pilot is sane: the larger sizes' jobs wait for it")
    args = ap.parse_args(argv)
    problems, parsed, answers = {}, 0, 0
    write_json(pending(args.out), {"checking": args.cell})  # the larger sizes keep waiting until it passed
    try:
        problems[args.metrics] = metrics_problems(read_jsonl(args.metrics))
        problems[args.selection] = selection_problems(read_json(args.selection))
        samples = read_jsonl(samples_path(args.cell))
        problems[args.cell], parsed, answers = *cell_check(read_json(args.cell), samples), len(samples)
    except (CorruptFile, OSError) as e:
        problems["read"] = [str(e)]
    failed = {f: p for f, p in problems.items() if p}
    if failed:
        write_json(pending(args.out), {"failed": failed})
        sys.exit(
            "fail-fast gate: the pilot is not sane, so the larger sizes' jobs were not started:\n"
            + "".join(f"  {f}: {'; '.join(p)}\n" for f, p in failed.items())
            + "fix: correct the recipe (config train:/eval:, the model or the data) and rerun: the changed settings "
            "rerun the pilot and this check, the larger sizes waiting; or, if these results are expected, start the "
            "larger sizes anyway "
            "with `--config gate=open`"
        )
    write_json(args.out, {"metrics": args.metrics, "selection": args.selection, "cell": args.cell,
                          "answers": answers, "answers_parsed": parsed, "passed": True})
    os.remove(pending(args.out))
    print(f"fail-fast gate passed: {args.cell} ({parsed} of {answers} answers parse); the larger sizes' jobs may start")


if __name__ == "__main__":
    main()
