"""Scoring for the paper's reasoning task variants (aime24/aime25/gpqa_diamond_cot_zeroshot).

lm-eval loads this file by path (`!function utils.<name>` in a YAML next to it). The
scoring itself lives in ../demo/utils.py (one implementation for demo and paper tasks),
loaded here by file path; GPQA's choice shuffle is upstream's own process_docs, unchanged
(it uses Python's global `random`, which eval_cell.py seeds identically for every seed).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_reasoning_demo_utils", Path(__file__).resolve().parent.parent / "demo" / "utils.py")
_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_demo)

strip_thinking = _demo.strip_thinking
extract_aime = _demo.extract_aime
extract_gpqa = _demo.extract_gpqa
score_aime = _demo.score_aime
score_gpqa = _demo.score_gpqa
process_results_aime = _demo.process_results_aime
process_results_gpqa = _demo.process_results_gpqa


def process_docs_gpqa(dataset):
    """Upstream gpqa cot_zeroshot process_docs (choice shuffle, answer "(X)")."""
    from lm_eval.tasks.gpqa.cot_zeroshot.utils import process_docs

    return process_docs(dataset)
