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
    (r"<think>x</think>answer: b", "(B)", "B", 1),                         # a lone lower-case letter at the end
    (r"<think>x</think>The answer is a bit unclear.", "(A)", None, 0),      # "a" as a word is no letter
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


# ---------------------------------------------------------------- the graded set
# Realistic endings of R1-Distill-style answers (the prompt ends with "<think>\n", so the response
# holds the rest of the trace, "</think>" and the final answer) and of the base models, which do not
# think. Each: (task, response, gold, grade a careful reader gives, the grader's reasoning).
def r1(final: str, trace: str = "Okay, so I need to work this out step by step. Let me set it up.") -> str:
    return f"{trace}\n</think>\n\n{final}"


GRADED = [
    # -- AIME: integer answers
    ("aime", r1("**Final Answer**\n\\[\n\\boxed{204}\n\\]"), "204", 1, "the standard R1 ending"),
    ("aime", r1("Thus the number of ordered pairs is $\\boxed{042}$."), "42", 1, "042 is 42; AIME asks for 3 digits"),
    ("aime", r1("So $m+n = \\boxed{\\text{204}}$."), "204", 1, "\\text wrapper inside the box"),
    ("aime", r1("The remainder is $\\boxed{\\mathbf{204}}$."), "204", 1, "\\mathbf wrapper inside the box"),
    ("aime", r1("The answer is $\\boxed{\\textbf{204}}$"), "204", 1, "\\textbf wrapper inside the box"),
    ("aime", r1("Hence the answer is \\fbox{204}."), "204", 1, "\\fbox is a box"),
    ("aime", r1("Summing the three cases gives 204.\n\n**Answer:** 204"), "204", 1, "explicit answer line, no box"),
    ("aime", r1("Adding up, the total is 204. The answer is $204$."), "204", 1, "explicit 'the answer is', no box"),
    ("aime", r1("So the probability is $\\frac{m}{n}$ with $m+n=\\boxed{\\dfrac{408}{2}}$"), "204", 1,
     "the box's value is 204, written as a fraction"),
    ("aime", r1("Therefore $N = \\boxed{２０４}$."), "204", 1, "full-width digits are 204"),
    ("aime", r1("The final answer is \\boxed{204.}"), "204", 1, "a period inside the box"),
    ("aime", r1("The angle is $\\boxed{204^\\circ}$."), "204", 1, "degrees: the number asked for is 204"),
    ("aime", r1("So the answer is $\\boxed{210}$."), "204", 0, "a wrong final answer"),
    ("aime", r1("Final answer: \\boxed{204}", trace="First guess: \\boxed{210}. Hmm, that double counts."), "204", 1,
     "the trace's box is not the final answer"),
    ("aime", r1("This gives \\boxed{210}.\n\nWait, I double counted the diagonal. Subtracting 6: \\boxed{204}."),
     "204", 1, "corrected after the think section: the last box"),
    ("aime", r1("This gives \\boxed{210}.\n\nHowever, the empty set must be excluded, so the answer is 209."), "209", 1,
     "the last explicit answer is 209, after the box"),
    ("aime", "Okay, let me list the cases. Case 1 gives 17, case 2 gives", "17", 0,
     "cut off at the token limit: no answer yet"),
    ("aime", "think\nCase analysis... 204 total.\nanswer\nAnswer: 204", "204", 1,
     "s1 format, special tokens stripped: 'Answer: 204' after the answer marker"),
    ("aime", r1("Final Answer: $\\boxed{204}$"), "204", 1, "box in math mode"),
    ("aime", r1("We get \\(\\boxed{204}\\)."), "204", 1, "box in \\( \\)"),
    ("aime", r1("So $\\boxed{n = 204}$."), "204", 1, "the box states n = 204"),
    ("aime", r1("The number of ways is $\\boxed{204 \\text{ ways}}$."), "204", 1, "a unit beside the number"),
    ("aime", r1("So there are 204 such numbers in total."), "204", 1,
     "a reader takes the last sentence's number; no box or answer line"),
    ("aime", r1("Thus $\\boxed{ 204 }$"), "204", 1, "spaces inside the box"),
    ("aime", r1("The answer is \\boxed{204}.\n\n(Note: counting ordered pairs instead would give 408.)"), "204", 1,
     "a remark after the answer is no answer"),
    ("aime", r1("Therefore the minimum is $\\boxed{0}$."), "0", 1, "zero is an answer"),
    ("aime", r1("The answer is $\\boxed{204}$."), "240", 0, "wrong final answer"),
    ("aime", r1("So the final result is\n\nanswer: ２０４"), "204", 1, "full-width digits on an answer line"),
    ("aime", r1("Answer: 204."), "204", 1, "answer line with a period"),
    ("aime", r1("Answer: 17\n"), "204", 0, "wrong answer line"),
    ("aime", r1("\\boxed{204}\n\nAnswer: The number of such paths is 204."), "204", 1,
     "both say 204; the answer line starts with words"),
    ("aime", r1("$\\boxed{204}$. The answer is correct because $6 \\times 34 = 204$."), "204", 1,
     "'the answer is correct' is no new answer"),
    ("aime", r1("Therefore, the answer is $\\boxed{204}$", trace="Let me restate. Question: how many"), "204", 1,
     "the uncut text: a restated 'Question:' inside the trace"),
    ("aime", "Let me restate the problem.", "204", 0, "cut at 'Question:' before any answer"),
    # -- GPQA: letter choices
    ("gpqa", r1("Comparing the options, only one fits.\n\n\\boxed{C}"), "C", 1, "the boxed letter"),
    ("gpqa", r1("The correct answer is (C)."), "C", 1, "the parenthesised letter"),
    ("gpqa", r1("**Answer: (C)**"), "C", 1, "bold answer line"),
    ("gpqa", r1("\\boxed{(C)}"), "C", 1, "parentheses inside the box"),
    ("gpqa", r1("So the answer is $\\boxed{\\text{C}}$."), "C", 1, "\\text inside the box"),
    ("gpqa", r1("Thus \\boxed{c}"), "C", 1, "lower-case letter inside the box"),
    ("gpqa", r1("Answer: b"), "B", 1, "lower-case letter alone on the answer line"),
    ("gpqa", r1("The answer is （Ｃ）."), "C", 1, "full-width brackets and letter"),
    ("gpqa", r1("\\boxed{C.}"), "C", 1, "a period inside the box"),
    ("gpqa", r1("The answer is \\boxed{C) 2.5 eV}"), "C", 1, "the option's text beside its letter"),
    ("gpqa", r1("\\boxed{\\textbf{(B)}}"), "B", 1, "bold letter in parentheses"),
    ("gpqa", r1("The answer is \\boxed{C}.\n\nOption (A) ignores the spin; (D) violates parity."), "C", 1,
     "options named after the answer are explanations"),
    ("gpqa", r1("The answer is \\boxed{C}.\n\nOption (A) ignores the spin; (D) violates parity."), "D", 0,
     "the answer is C, not the last option named"),
    ("gpqa", r1("**Final Answer**\n\\boxed{B}", trace="(A) fails the symmetry test. (D) too. Maybe (C)?"), "B", 1,
     "options in the trace are not the answer"),
    ("gpqa", r1("\\boxed{A}"), "B", 0, "a wrong letter"),
    ("gpqa", r1("So the answer is (A). Wait, no: with the spin-orbit term it is (B).\n\n\\boxed{B}"), "B", 1,
     "corrected, then boxed"),
    ("gpqa", r1("Final answer: Option D"), "D", 1, "'Option D'"),
    ("gpqa", r1("Putting it together, the answer is D."), "D", 1, "bare letter after 'the answer is'"),
    ("gpqa", r1("Answer: Carbon dioxide (C)"), "C", 1, "the option's text, then its letter"),
    ("gpqa", r1("None of the options match exactly."), "A", 0, "no answer"),
    ("gpqa", "Let me check each option. (A) seems plausible... but (B) has the right sign, and", "B", 0,
     "cut off at the token limit while still weighing options: no final answer"),
    ("gpqa", "The answer is (B).", "B", 1, "a base model that does not think"),
    ("gpqa", "Answer: B", "B", 1, "a base model's answer line"),
    ("gpqa", r1("(C) is tempting, but it ignores the solvent.\n\n\\boxed{B}"), "B", 1,
     "an option named before the boxed answer"),
    ("gpqa", r1("$\\boxed{\\mathrm{D}}$"), "D", 1, "\\mathrm inside the box"),
    ("gpqa", r1("**Answer: D) 4.2 × 10^-3 M**"), "D", 1, "bold answer line with the option's text"),
    ("gpqa", r1("The correct option is (a)."), "A", 1, "lower-case letter in parentheses"),
    ("gpqa", r1("\\boxed{Ｂ}"), "B", 1, "full-width letter in the box"),
    ("gpqa", r1("\\boxed{\\text{(D) } 1.5 \\times 10^{3}}"), "D", 1, "letter and value in the box"),
    ("gpqa", r1("Therefore, the answer is $\\boxed{A}$.\n\nNote: (C) would hold at high temperature."), "A", 1,
     "a note after the answer"),
    ("gpqa", r1("Final Answer: \\boxed{D}"), "A", 0, "a wrong boxed letter"),
    ("gpqa", "think\n(A)? (C)?\nanswer\nAnswer: C", "C", 1, "s1 format: the answer line after the marker"),
    ("gpqa", r1("The answer is a bit subtle: the right choice is \\boxed{B}."), "B", 1, "'a' is a word here"),
    ("gpqa", r1("So I'd pick (B).", trace="The answer is (A)? No."), "B", 1, "the answer after the trace"),
]


def upstream(task: str, response: str, gold: str) -> int:
    """The lm-eval task's metric as elicit/eval/scoring.py implements it."""
    from elicit.eval import scoring

    return scoring.score_aime(response, gold) if task == "aime" else scoring.score_gpqa(response, gold)


def agreement() -> dict[str, float]:
    got = {"upstream": [], "robust": []}
    for task, response, gold, grade, _ in GRADED:
        got["upstream"].append(upstream(task, response, gold) == grade)
        got["robust"].append(robust.score(response, gold)[0] == grade)
    return {k: sum(v) / len(v) for k, v in got.items()}


def test_graded_set_is_large_and_covers_both_tasks():
    assert len(GRADED) >= 60
    assert {t for t, *_ in GRADED} == {"aime", "gpqa"} and sum(t == "gpqa" for t, *_ in GRADED) >= 25


def test_agreement_with_the_grades():
    """Measured on this set: upstream agrees with the grader on 49 % (33 of 68), the robust scorer on 97 % (66; its two
    misses: a bare number a reader accepts, a trace cut while weighing options that ends in "(B)")."""
    a = agreement()
    print(f"agreement with the grades over {len(GRADED)} answers: upstream {a['upstream']:.1%}, "
          f"robust {a['robust']:.1%}")
    assert a["robust"] >= 0.95 and a["robust"] > a["upstream"]


@pytest.mark.parametrize("task,response,gold,grade,why", GRADED, ids=[g[4][:40] for g in GRADED])
def test_never_wrong_where_upstream_is_right(task, response, gold, grade, why):
    if upstream(task, response, gold) == grade:
        assert robust.score(response, gold)[0] == grade, why
