"""The second scorer: the final answer after the reasoning trace, over the saved answers (no new
generation). Table 1 stays on upstream's metric; this one shows how much it depends on extraction.

  score(response, target) -> (0/1, extracted answer or None)

The text scored is what follows the last think-section end (elicit.eval.scoring.strip_thinking),
NFKC-normalised (full-width letters, digits and brackets read as ASCII), \\fbox read as \\boxed.
The LAST explicit answer wins, by position: an explicit answer is a \\boxed{...} or an answer
anchor ("Answer: X", "**Answer:** X", "The (final / correct) answer is X", "Final answer: X",
"answer is option X"). Wrappers around it are taken off: \\text, \\textbf, \\mathbf, \\mathrm, \\mbox,
$...$, \\( \\), **bold**, trailing punctuation.
  AIME-shaped target (an integer): a box's content goes to math-verify (Hugging Face's maintained
      answer parser: leading zeros, \\dfrac, "1,000", 98^\\circ), and is compared symbolically; an
      anchor counts when a number starts its sentence ("The answer is 42 because ..."); a bare number
      elsewhere is no answer.
  GPQA-shaped target (a letter A-D, "(C)" or "C"): the letter that starts the box or the anchor's
      text ("C", "(C)", "c)", "Option C", "C: 2.5 eV"); a lower-case letter only where it cannot be a
      word ("(b)", "b." or "b" at the end). Without any explicit answer, the last bare "(C)".
"""
from __future__ import annotations

import re
import unicodedata

from elicit.eval.scoring import strip_thinking

_WRAP = re.compile(r"\\(?:text(?:bf|rm|it)?|math(?:bf|rm|it)|mbox|bf|emph|boldsymbol)\s*\{([^{}]*)\}")
_ANCHOR = re.compile(r"(?i)(?:final\s+answer|correct\s+(?:answer|option|choice)|answer)\s*(?:\*\*)?\s*"
                     r"(?:is|should\s+be|would\s+be|=)?\s*:?\s*(?:\*\*)?\s*:?")
_UPPER = re.compile(r"(?:option|choice)?\s*[(\[]?\s*([A-D])(?![A-Za-z0-9])", re.I)
_LOWER = re.compile(r"(?:option|choice)?\s*(?:\(([a-d])\)|([a-d])(?=\s*(?:[.):\]]|$)))", re.I)
_NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?(?![\d*/^+=×-])")
_BARE = re.compile(r"\(([A-D])\)")


def final_text(response) -> str:
    text = unicodedata.normalize("NFKC", response or "")
    return strip_thinking(text).replace("\\fbox", "\\boxed")


def unwrap(s: str) -> str:
    """Formatting around an answer taken off: \\text{..}-style wrappers, $, \\( \\), **, trailing punctuation."""
    prev = None
    while prev != s:
        prev, s = s, _WRAP.sub(r"\1", s)
    for w in ("$", "**", "\\(", "\\)", "\\[", "\\]", "\\,", "\\!", "\\ ", "\\displaystyle"):
        s = s.replace(w, " ")
    return s.strip().rstrip(".,;:!").strip()


def boxes(text: str) -> list[tuple[int, str]]:
    """(end position, content) of every \\boxed{...} (nested braces allowed) and "\\boxed 5"."""
    out = []
    for m in re.finditer(r"\\boxed", text):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            for k in range(j, len(text)):
                depth += {"{": 1, "}": -1}.get(text[k], 0)
                if depth == 0:
                    out.append((k + 1, text[j + 1:k]))
                    break
        elif j > m.end() and (tok := re.match(r"[^\s$]+", text[j:])):
            out.append((j + tok.end(), tok.group(0)))
    return out


def anchors(text: str) -> list[tuple[int, str]]:
    """(end position, the rest of its line) of every answer anchor not followed by a box on that line
    (the box is the answer then, and counts by its own position)."""
    out = []
    for m in _ANCHOR.finditer(text):
        rest = text[m.end():].split("\n", 1)[0]
        if "\\boxed" not in rest:
            out.append((m.end(), rest))
    return out


def letter_of(chunk: str) -> str | None:
    """The option letter an answer's text starts with, or None."""
    s = unwrap(chunk)
    m = _UPPER.match(s)
    if m and m.group(1).isupper():
        return m.group(1)
    m = _LOWER.match(s)
    return (m.group(1) or m.group(2)).upper() if m else None


def gpqa_letter(response) -> str | None:
    """The letter of the last explicit answer of the final text, else of its last bare "(X)"."""
    text = final_text(response)
    found = [(end, letter_of(c)) for end, c in boxes(text)] + [(end, letter_of(c)) for end, c in anchors(text)]
    found = sorted((e, v) for e, v in found if v)
    if found:
        return found[-1][1]
    bare = _BARE.findall(text)
    return bare[-1] if bare else None


def aime_answer(response):
    """math-verify's parse of the last explicit answer of the final text: [sympy value, string], or []
    (a bare number is no answer)."""
    from math_verify import parse

    text = final_text(response)
    found = []
    for end, c in boxes(text):
        found.append((end, parse(f"$\\boxed{{{unwrap(c)}}}$")))
    for end, rest in anchors(text):
        m = _NUMBER.match(unwrap(re.split(r"\.\s|\.$", rest, maxsplit=1)[0]))
        if m:
            found.append((end, parse(f"${m.group(0)}$")))
    found = [p for _, p in sorted(found, key=lambda f: f[0]) if p]
    return found[-1] if found else []


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
