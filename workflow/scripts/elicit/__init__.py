"""What the workflow's step programs share (workflow/scripts/*.py import it; it imports none of them).

The core, here: grid (configurations, labels, every result path), steps (the step programs' command
lines, one renderer) and flags (their typed configs), variants, slurm, provenance, atomic, done_cache,
code_hash, run, snakemake_locks. Then the stages, each importing only those before it
(tests/test_layers.py; ARCHITECTURE.md has a line per module):

  data/     the s1K-1.1 table, the nested split, the chat format, the demo's tiny models
  train/    the loss, the recipe's schedule, the engine (torch/DDP, DeepSpeed), checkpoints, tracking, weights
  plan/     architecture facts, per-GPU memory, GPU-hours, evaluation jobs, the decode model, the gate
  eval/     lm-eval tasks and backends (hf-resumable, hf-cb, hf-slots), a cell, its record, the scorers
  report/   Table 1, intervals, the claim, the scaling fit, training seeds, figures
  checks/   the plan-time checks over all of them: the config and site settings, result integrity
"""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parents[2]  # the checkout: workflow/, resources/, config/


def repo_path(path):
    """A path from the config (relative to the checkout, e.g. eval.include_path) as this process can
    open it: as given when it exists from here, else under the checkout. The rules pass the config's
    relative value (no checkout path in params: a moved checkout reruns nothing)."""
    p = Path(path)
    return str(p if p.is_absolute() or p.exists() else REPO / p)
