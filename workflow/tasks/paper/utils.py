"""Scoring for the paper's reasoning task variants (aime24/aime25/gpqa_diamond_cot_zeroshot).

lm-eval loads this file by path (`!function utils.<name>` in a YAML next to it). The scoring
is elicit.eval.scoring's (one implementation for demo and paper tasks), re-exported here; GPQA's
choice shuffle is upstream's own process_docs, unchanged (it uses Python's global `random`,
which eval_cell.py seeds identically for every seed).
"""
from __future__ import annotations

import sys
from pathlib import Path

try:  # the project's library: importable when eval_cell.py (or the installed project) runs lm-eval
    from elicit.eval import scoring
except ImportError:  # lm-eval started by hand from another environment: the library beside the tasks
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from elicit.eval import scoring

strip_thinking, extract_aime, extract_gpqa = scoring.strip_thinking, scoring.extract_aime, scoring.extract_gpqa
score_aime, score_gpqa = scoring.score_aime, scoring.score_gpqa
process_results_aime, process_results_gpqa = scoring.process_results_aime, scoring.process_results_gpqa


def process_docs_gpqa(dataset):
    """Upstream gpqa cot_zeroshot process_docs (choice shuffle, answer "(X)")."""
    from lm_eval.tasks.gpqa.cot_zeroshot.utils import process_docs

    return process_docs(dataset)
