"""The second scorer: the final answer after the reasoning trace, over the saved answers (no new
generation). Table 1 stays on upstream's metric; this one shows how much it depends on extraction.

  score(response, target) -> (0/1, extracted answer or None)

The text scored is what follows the last think-section end (elicit.eval.scoring.strip_thinking).
  AIME-shaped target (an integer): math-verify (Hugging Face's maintained answer parser) reads
      the last \\boxed{...} (leading zeros, \\text{}, \\dfrac, "1,000", \\fbox read as \\boxed),
      else the line after the last "Answer: 42" / "**Answer:** 42" / "The answer is $42$" (a bare
      number elsewhere is no answer), and compares it with the target symbolically.
  GPQA-shaped target (a letter A-D, "(C)" or "C"): the LAST of \\boxed{C} (also "(C)", \\text{C},
      \\textbf{(C)}), "Answer: C", "**Answer:** C", "The answer is (C)", "final answer is C", or a
      bare "(C)", by position in the text.
"""
from __future__ import annotations

import re

from elicit.eval.scoring import last_boxed, strip_thinking

_LETTER = r"\(?\s*([A-D])\s*\)?"
_GPQA = [
    re.compile(r"\\(?:boxed|fbox)\s*\{\s*(?:\\text(?:bf|rm)?\s*\{\s*)?" + _LETTER + r"\s*\}?\s*\}"),
    re.compile(r"(?i:answer)\s*(?:\*\*)?\s*(?i:is)?\s*:?\s*(?:\*\*)?\s*:?\s*(?:\*\*)?\s*\$?\s*(?:\\text\{)?"
               + _LETTER + r"(?![A-Za-z])"),
    re.compile(r"\(([A-D])\)"),
]
_ANCHOR = re.compile(r"(?i)answer\s*(?:\*\*)?\s*(?:is)?\s*:?\s*(?:\*\*)?\s*:?")  # "Answer:", "answer is", ...


def final_text(response) -> str:
    return strip_thinking(response or "").replace("\\fbox", "\\boxed")


def gpqa_letter(response) -> str | None:
    """The letter of the last answer pattern in the final text, None if there is none."""
    text = final_text(response)
    best = None
    for pattern in _GPQA:
        for m in pattern.finditer(text):
            if best is None or m.end() > best[0]:
                best = (m.end(), m.group(1))
    return best[1] if best else None


def aime_answer(response):
    """math-verify's parse of the last \\boxed{} of the final text, else of the rest of the line after
    its last "Answer:" / "answer is": [sympy value, string], or [] (a bare number is no answer)."""
    from math_verify import parse

    text = final_text(response)
    box = last_boxed(text)
    if box is not None:
        return parse(f"$\\boxed{{{box}}}$")
    anchors = list(_ANCHOR.finditer(text))
    return parse(re.split(r"\.\s|\n", text[anchors[-1].end():], maxsplit=1)[0]) if anchors else []  # its sentence


def _letter(target) -> str | None:
    t = str(target).strip().strip("()").strip().upper()
    return t if t in ("A", "B", "C", "D") else None


def score(response, target) -> tuple[int, str | None]:
    """(1 if the final answer equals the target else 0, the answer extracted)."""
    letter = _letter(target)
    if letter is not None:
        got = gpqa_letter(response)
        return int(got == letter), got
    from math_verify import parse, verify

    pred = aime_answer(response)
    if not pred:
        return 0, None
    gold = parse(f"${str(target).strip()}$")
    return int(bool(gold) and verify(gold, pred)), str(pred[0])
