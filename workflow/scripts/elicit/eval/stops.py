"""Why an answer stopped, and after how many new tokens: from the generated token ids alone.

  stop_info(ids, eos_ids, until, max_gen_toks, decode) -> (n_new_tokens, stop_reason)

stop_reason is one of
  "eos"            an end-of-turn / end-of-sequence token id (the model ended its answer)
  "stop:<string>"  one of the task's stop strings (e.g. upstream AIME's "Question:"), the one
                   that occurs first in the decoded answer
  "max_gen_toks"   neither, and the answer used every allowed new token (truncated)
  "unknown"        neither, with fewer tokens (should not happen with HF generate)
n_new_tokens counts the tokens up to and including the one that ended the answer (the eos, or
the last token of the stop string); trailing padding of a batch is never counted.

A backend calls it once per answer with what it generated; nothing here depends on how the
batch was run (HF generate, continuous batching), so a rewritten backend can keep calling it.

  turn_end_ids(tokenizer) -> the chat template's end-of-turn token id ({} without one)

The backends add it to their EOS ids whatever the tokenizer file declares: Qwen3-Base's tokenizer
says <|endoftext|> while its chat template ends a turn with <|im_end|>, and GPQA's `until` holds
only "</s>", so a model that ends its turn would otherwise run on to max_gen_toks.
"""
from __future__ import annotations

from typing import Callable, Iterable

REASONS = ("eos", "stop", "max_gen_toks", "unknown")


def max_gen_toks_problem(max_gen_toks: int, context: int | None, context_name: str = "the context") -> str | None:
    """eval.max_gen_toks's rule, stated once (the plan: elicit/checks/config.py; a job: eval_cell.py): at least one
    new token, and fewer than the context holds, which leaves room for the prompt. None when it holds."""
    if max_gen_toks < 1:
        return f"{max_gen_toks} new tokens: at least 1"
    if context is not None and max_gen_toks >= context:
        return f"{max_gen_toks} new tokens leave no room for the prompt in {context_name}={context}"
    return None


def stop_info(ids: Iterable[int], eos_ids: Iterable[int], until: Iterable[str], max_gen_toks: int,
              decode: Callable[[list[int]], str], pad_id: int | None = None) -> tuple[int, str]:
    ids, eos = [int(t) for t in ids], {int(t) for t in eos_ids}
    first_eos = next((i for i, t in enumerate(ids) if t in eos), None)
    body = ids if first_eos is None else ids[:first_eos]
    text = decode(body)
    hits = sorted((text.find(s), i, s) for i, s in enumerate(until) if s and s in text)
    if hits:  # a stop string ended it before any eos (a batch's padding may be an eos id)
        s = hits[0][2]
        lo, hi = 1, len(body)
        while lo < hi:  # the fewest tokens whose text holds the stop string
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if s in decode(body[:mid]) else (mid + 1, hi)
        return lo, f"stop:{s}"
    if first_eos is not None:
        return first_eos + 1, "eos"
    while pad_id is not None and ids and ids[-1] == pad_id:
        ids.pop()
    return len(ids), "max_gen_toks" if len(ids) >= max_gen_toks else "unknown"


def turn_end_ids(tokenizer) -> set[int]:
    """The special token the chat template writes right after an assistant message (Qwen's <|im_end|>,
    R1-Distill's <｜end▁of▁sentence｜>), as a set of one id; empty without a chat template or where
    the template writes no special token there."""
    from jinja2.exceptions import TemplateError

    mark = "ELICIT_TURN_END_PROBE"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": mark}],
                                             tokenize=False)
    except (ValueError, TypeError, TemplateError):  # no chat template
        return set()
    at = text.rfind(mark)
    ids = tokenizer.encode(text[at + len(mark):], add_special_tokens=False) if at >= 0 else []
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return {int(ids[0])} if ids and ids[0] in special else set()


def kind(reason: str | None) -> str | None:
    """'stop:Question:' -> 'stop' (the table's columns); None stays None (no record)."""
    return None if reason is None else reason.split(":", 1)[0]
