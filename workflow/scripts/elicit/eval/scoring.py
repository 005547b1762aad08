"""How a response is scored: the answer after the thinking, AIME integers, GPQA letters.

One implementation for the demo and the paper's task variants: their `utils.py` files
(loaded by lm-eval by path, `!function utils.<name>`) re-export the lm-eval hooks below.
Standard library only.

Only the text after the model's last think-section end is scored:
  * r1 style: "<think> ... </think> final answer"            -> after the last "</think>"
  * s1 style: "<|im_start|>think ... <|im_start|>answer ..." -> after the last
    "<|im_start|>answer"; lm-eval decodes with skip_special_tokens=True, so the markers
    usually arrive as bare lines: "think\\n ... \\nanswer\\n ..."; a bare "answer" line
    counts only when the text starts with the "think" marker.
If there is no think-section end (no thinking, or thinking cut off), the whole text is scored.
AIME-shaped: the integer inside the LAST \\boxed{...} (nested braces allowed) must equal the
integer answer. GPQA-shaped: the LAST "(X)" with X in A-D must equal the answer letter
("B" or "(B)").
"""
from __future__ import annotations

import re

R1_END = "</think>"
S1_ANSWER = "<|im_start|>answer"
_S1_START = re.compile(r"\s*(?:<\|im_start\|>)?think[ \t]*(?:\n|$)")
_S1_BARE_ANSWER = re.compile(r"(?m)^[ \t]*answer[ \t]*$")
_GPQA_LETTER = re.compile(r"\(([A-D])\)")
_INT = re.compile(r"[+-]?\d+")


# --------------------------------------------------------------------------- extraction
def strip_thinking(text: str) -> str:
    """The part of a response after its last think-section end, else the whole text."""
    text = text or ""
    i = text.rfind(R1_END)
    if i >= 0:
        return text[i + len(R1_END):]
    i = text.rfind(S1_ANSWER)
    if i >= 0:
        return text[i + len(S1_ANSWER):]
    if _S1_START.match(text):
        last = None
        for last in _S1_BARE_ANSWER.finditer(text):
            pass
        if last is not None:
            return text[last.end():]
    return text


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}, or "\\boxed 5"); None if absent."""
    text = text or ""
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)", text)]
    for m in reversed(starts):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            for k in range(j, len(text)):
                if text[k] == "{":
                    depth += 1
                elif text[k] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[j + 1:k]
            continue  # unbalanced: try an earlier box
        if j > m.end():  # "\boxed 42" form
            tok = re.match(r"[^\s$]+", text[j:])
            if tok:
                return tok.group(0)
    return None


def parse_int(s) -> int | None:
    """An integer written plainly ("042", "1,000", "$7$", "\\text{7}"), else None."""
    if s is None:
        return None
    s = str(s).strip()
    s = re.sub(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}", lambda m: m.group(1) or m.group(2) or "", s)
    s = s.replace("$", "").replace("\\!", "").replace("\\,", "").replace(",", "").replace(" ", "")
    s = s.rstrip(".")
    if _INT.fullmatch(s):
        return int(s)
    return None


def extract_aime(response: str) -> int | None:
    return parse_int(last_boxed(strip_thinking(response)))


def extract_gpqa(response: str) -> str | None:
    letters = _GPQA_LETTER.findall(strip_thinking(response))
    return letters[-1] if letters else None


def _answer(doc: dict):
    if "answer" in doc:
        return doc["answer"]
    return next(v for k, v in doc.items() if k.lower() == "answer")


def score_aime(response: str, answer) -> int:
    pred, gold = extract_aime(response), parse_int(answer)
    return int(pred is not None and gold is not None and pred == gold)


def score_gpqa(response: str, answer) -> int:
    gold = str(answer).strip().strip("()").strip().upper()
    return int(extract_gpqa(response) == gold)


# --------------------------------------------------------------------------- lm-eval hooks
def process_results_aime(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": score_aime(results[0], _answer(doc))}


def process_results_gpqa(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": score_gpqa(results[0], _answer(doc))}
