"""Data loading for the demo lm-eval tasks; their scoring is elicit.eval.scoring's, re-exported here.

lm-eval loads this file by path (`!function utils.<name>` in a task YAML next to it).

Loading
  `load_jsonl` is a `custom_dataset` callable. lm-eval 0.4.13 calls it as
  `custom_dataset(**task.metadata, **dataset_kwargs)`; the YAML names the file in
  `dataset_kwargs.data_file`. A relative name is resolved against the directory of the
  YAML that defined the task (lm-eval puts its path in `metadata.config_source`), falling
  back to this file's directory, so it works whatever the current working directory is.
  (`dataset_kwargs.data_files` with the `json` builder would be resolved against CWD.)

Scoring (workflow/scripts/elicit/eval/scoring.py): the answer after the last think-section end;
AIME: the integer in the last \\boxed{}; GPQA: the last "(X)".
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
try:  # the project's library: importable when eval_cell.py (or the installed project) runs lm-eval
    from elicit.eval import scoring
except ImportError:  # lm-eval started by hand from another environment: the library beside the tasks
    sys.path.insert(0, str(_HERE.parents[1] / "scripts"))
    from elicit.eval import scoring

strip_thinking, extract_aime, extract_gpqa = scoring.strip_thinking, scoring.extract_aime, scoring.extract_gpqa
score_aime, score_gpqa = scoring.score_aime, scoring.score_gpqa
process_results_aime, process_results_gpqa = scoring.process_results_aime, scoring.process_results_gpqa


def load_jsonl(data_file: str, split: str = "test", config_source: str | None = None, **_ignored):
    """custom_dataset loader: one JSONL file -> DatasetDict({split: Dataset})."""
    import datasets

    path = Path(data_file).expanduser()
    if not path.is_absolute():
        base = _HERE
        if config_source and config_source != "inline" and Path(config_source).is_file():
            base = Path(config_source).resolve().parent
        path = base / path
    with open(path) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})
