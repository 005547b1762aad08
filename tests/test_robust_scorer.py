"""The second scorer (elicit/eval/robust.py) on hard outputs, each with the answer it must extract,
beside what upstream's metric (lm-eval's filters) and our first scorer (elicit/eval/scoring.py) get."""
from __future__ import annotations

import pytest

from elicit.eval import robust

# (response, target, expected extraction, expected 0/1)
AIME = [
    (r"<think>try \boxed{12}</think> The answer is $\boxed{042}$.", "42", "42", 1),
    (r"<think>x</think>\boxed{\text{42}}", "42", "42", 1),
    (r"<think>x</think>So \fbox{42}.", "42", "42", 1),
    (r"<think>x</think>**Answer:** 42", "42", "42", 1),
    (r"<think>x</think>Answer: 42", "42", "42", 1),
    (r"<think>x</think>The answer is $42$.", "42", "42", 1),
    (r"<think>x</think>\boxed{1,000}", "1000", "1000", 1),
    (r"<think>x</think>$\boxed{ 7 }$", "7", "7", 1),
    (r"<think>x</think>\boxed{\dfrac{84}{2}}", "42", "42", 1),
    (r"<think>\boxed{41}</think>first \boxed{40}, then corrected: \boxed{42}", "42", "42", 1),
    (r"<think>\boxed{42}</think>\boxed{41}", "42", "41", 0),             # the final answer, not the trace's
    (r"<think>x</think>\boxed{042}", "420", "42", 0),                    # 042 is 42, not 420
    (r"<think>long trace cut off at the limit. Answer: 42", "42", "42", 1),  # no </think>: the whole text
    (r"<think>cut off at the limit, maybe 42", "42", None, 0),               # a bare number is no answer
    ("ted parce key coral marblemaple willow its week7$. classifiesD", "7", None, 0),  # the demo's base
    (r"<think>x</think>The answer is $42$. Then Question: 7", "42", "42", 1),  # the answer's line only
    ("think\nmaybe 7\nanswer\nAnswer: \\boxed{392}", "392", "392", 1),  # s1 format, special tokens stripped
    (r"<think>x</think>The final answer is \boxed{98^\circ}", "98", "98", 1),
    (r"<think>x</think>no answer here", "42", None, 0),
]
GPQA = [
    (r"<think>(A)? (B)?</think>The answer is $\boxed{C}$.", "(C)", "C", 1),
    (r"<think>(A)?</think>**Answer:** C", "(C)", "C", 1),
    (r"<think>(A)?</think>**Answer: C**", "(C)", "C", 1),
    (r"<think>(A)?</think>Answer: C", "(C)", "C", 1),
    (r"<think>(A)?</think>The answer is (C).", "(C)", "C", 1),
    (r"<think>(A)?</think>\boxed{(C)}", "(C)", "C", 1),
    (r"<think>(A)?</think>\boxed{\text{C}}", "(C)", "C", 1),
    (r"<think>(A)?</think>\boxed{\textbf{(C)}}", "(C)", "C", 1),
    (r"<think>(A)?</think>\fbox{C}", "C", "C", 1),
    (r"<think>x</think>Option (A) is wrong and (B) too, so the final answer is D", "(D)", "D", 1),
    (r"<think>x</think>The answer is (B), not (C) as I thought: \boxed{B}", "(B)", "B", 1),
    (r"<think>\boxed{A}</think>Final: (B)", "(A)", "B", 0),              # after the trace only
    (r"<think>x</think>answer: b", "(B)", None, 0),                        # lower-case letters are words
    (r"<think>x</think>Answer: Carbon dioxide (C)", "(C)", "C", 1),
    (r"<think>x</think>I pick (D)", "(D)", "D", 1),
    (r"<think>x</think>\[\boxed{A}\]", "(A)", "A", 1),
    (r"<think>x</think>The correct answer is **B**.", "(B)", "B", 1),
    (r"<think>x</think>Nothing fits.", "(A)", None, 0),
]


@pytest.mark.parametrize("response,target,extracted,correct", AIME + GPQA)
def test_second_scorer(response, target, extracted, correct):
    score, got = robust.score(response, target)
    assert (score, got) == (correct, extracted)


def test_enough_hard_cases():
    assert len(AIME + GPQA) >= 30


def test_upstream_misses_what_the_second_scorer_reads():
    """The point of the second scorer: lm-eval's GPQA flexible-extract takes the last "(X)" of the
    WHOLE text, so an R1-style \\boxed{C} after a trace that mentions (A) scores (A)."""
    import re

    text = AIME[0][0], GPQA[0][0]
    upstream_gpqa = re.findall(r"(\([A-Z]\))", text[1])[-1]
    assert upstream_gpqa == "(B)" and robust.score(text[1], "(C)") == (1, "C")
