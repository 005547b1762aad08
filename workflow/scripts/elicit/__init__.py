"""What the workflow's step programs share (workflow/scripts/*.py import it; it imports none of them).

  grid          the configurations (base, skyline, lora, full-N), their labels and order, result paths,
                a training run's folder layout
  config        config and site checks against workflow/schemas/, with the schemas' defaults
  data          the s1K-1.1 columns, row validation, the nested split and its checks
  demo          the tiny demo models' architecture (make_demo.py builds it, the memory plan reads it)
  chat          chat format, the demo's Qwen2.5 template (resources/) or a model's chat_template, label masks, length policy
  loss          the training loss without the whole sequence's logits
  schedule      the recipe's arithmetic: grad accumulation, learning rate, data order
  engine        one training backend: plain torch / DDP or DeepSpeed
  checkpoints   the selection rule, checkpoint save / prune / publish, the resume state
  slurm         launching ranks, SLURM's clock, shell arguments, the onstart guards
  provenance    versions, hub commits, content fingerprints
  atomic        atomic and checksummed files; done_cache: finished results kept by content
  integrity     the plan-time check of every result file
  lm_tasks, lm_backend, lm_backend_cb, scoring     evaluation on lm-evaluation-harness
  eval_record   a cell's result record: generation kwargs, primary metric, per-document rows
  arch                                              a model's architecture facts from its own config
  memory_plan, zero_estimates, cost                 per-GPU memory of every job, GPU-hours
  stats, bootstrap_ci, tables, figures              Table 1, intervals, figures
  figure_names                                      the figure registry (names, titles, report labels)
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
