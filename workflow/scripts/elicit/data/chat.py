"""Turn an s1K-1.1 row into a chat conversation and token labels (loss on the answer only).

The conversation is [user: question, assistant: formatted trace + attempt], rendered by the
model's own chat template (Qwen2.5: its default system prompt is added because none is given).
Two assistant formats (config `data.format`):

  s1: "<|im_start|>think\\n" + trajectory.strip() + "\\n<|im_start|>answer\\n" + answer.strip()
      with answer = attempt if "Answer:" in attempt else "Answer: " + attempt.
      Exactly how simplescaling built the `text` column of s1K-1.1_tokenized (s1's
      data/tokenization.py: Qwen2.5-32B-Instruct's chat template, user = question). Rendered
      with the Qwen2.5 template, `chat_text(tok, row, "s1")` equals that `text` byte for byte.
  r1: "<think>\\n" + trajectory.strip() + "\\n</think>\\n\\n" + attempt.strip()
      The DeepSeek-R1 convention. THE DEFAULT, because the traces are DeepSeek-R1's own,
      the skylines (DeepSeek-R1-Distill-Qwen) emit exactly this format, so finetunes and
      skylines are scored by the same answer extraction (which strips the think block),
      and "<|im_start|>think" would re-use Qwen's turn-start control token inside a turn.
      Choose `s1` to reproduce s1's training text instead.

Labels (`tokenize_example`): IGNORE_INDEX on everything before the assistant's content
(system prompt, user turn, "<|im_start|>assistant\\n"); supervised tokens run from the first
think marker through the closing <|im_end|>. The template's newline after <|im_end|> is
neither supervised nor part of input_ids (the sequence ends where generation stops).

Length (`encode_rows`): sequences longer than `max_seq_len` are dropped or truncated
(config `data.on_too_long`) and counted in the returned report, never silently.
"""
from __future__ import annotations

import math

from elicit import REPO

# Qwen2.5-Instruct's chat template, verbatim (the `chat_template` of Qwen/Qwen2.5-*-Instruct's
# tokenizer_config.json, identical across sizes, tools branch included), in ONE file: the demo
# tokenizer carries it and the tests render with it, so the demo formats conversations byte for
# byte as the real tokenizer does. Without tools or a system message it renders
#   <|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n
#   <|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n
QWEN25_CHAT_TEMPLATE = (REPO / "resources" / "qwen2_5_chat_template.jinja").read_text()
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

QUESTION_FIELD = "question"
TRACE_FIELD = "deepseek_thinking_trajectory"
ATTEMPT_FIELD = "deepseek_attempt"
IGNORE_INDEX = -100
STYLES = ("r1", "s1")
DEFAULT_STYLE = "r1"
THINK_MARKER = {"r1": "<think>", "s1": "<|im_start|>think"}
ON_TOO_LONG = ("truncate", "drop")


def s1_answer(attempt: str) -> str:
    return attempt if "Answer:" in attempt else "Answer: " + attempt


def assistant_text(row: dict, style: str = DEFAULT_STYLE) -> str:
    trace, attempt = row[TRACE_FIELD], row[ATTEMPT_FIELD]
    if style == "r1":
        return "<think>\n" + trace.strip() + "\n</think>\n\n" + attempt.strip()
    if style == "s1":
        return "<|im_start|>think\n" + trace.strip() + "\n<|im_start|>answer\n" + s1_answer(attempt).strip()
    raise ValueError(f"unknown data.format {style!r}: expected one of {STYLES}")


def use_template(tokenizer, path: str) -> None:
    """Render with the jinja file at `path` (relative to the repo: models.<size>.chat_template)
    instead of the tokenizer's own template; '' keeps the tokenizer's own."""
    if path:
        from pathlib import Path

        from elicit import repo_path

        tokenizer.chat_template = Path(repo_path(path)).read_text()


def conversation(row: dict, style: str = DEFAULT_STYLE) -> list[dict]:
    return [{"role": "user", "content": row[QUESTION_FIELD]},
            {"role": "assistant", "content": assistant_text(row, style)}]


def chat_text(tokenizer, row: dict, style: str = DEFAULT_STYLE) -> str:
    """The whole rendered conversation (for s1 and Qwen2.5: s1K-1.1_tokenized's `text`)."""
    return tokenizer.apply_chat_template(conversation(row, style), tokenize=False)


def split_text(tokenizer, row: dict, style: str = DEFAULT_STYLE) -> tuple[str, str]:
    """(prompt, completion): the generation prompt, and the assistant content + end of turn."""
    msgs = conversation(row, style)
    prompt = tokenizer.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("chat template does not extend the generation prompt; cannot mask labels")
    completion = full[len(prompt):]
    eos = "<|im_end|>" if "<|im_end|>" in completion else tokenizer.eos_token
    if not completion.startswith(msgs[1]["content"]):
        raise ValueError("chat template altered the assistant content; cannot mask labels")
    end = completion.find(eos, len(msgs[1]["content"])) if eos else -1
    if end < 0:
        raise ValueError(f"chat template did not close the assistant turn with {eos!r}")
    return prompt, completion[: end + len(eos)]


def tokenize_example(tokenizer, row: dict, style: str = DEFAULT_STYLE) -> tuple[list[int], list[int]]:
    """input_ids and labels; labels are IGNORE_INDEX up to the assistant's content.

    Prompt and completion are tokenized separately so the mask boundary is exact; with
    Qwen's tokenizer this equals tokenizing the joined text (tests check it).
    """
    prompt, completion = split_text(tokenizer, row, style)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return p_ids + c_ids, [IGNORE_INDEX] * len(p_ids) + c_ids


def prompt_length(labels: list[int]) -> int:
    """Tokens before the first supervised one (the label mask's boundary)."""
    return next((j for j, t in enumerate(labels) if t != IGNORE_INDEX), len(labels))


def supervised_tokens(labels: list[int]) -> int:
    """Tokens the loss is taken on: the labels a causal LM predicts (positions 1..n-1), unmasked."""
    return sum(1 for t in labels[1:] if t != IGNORE_INDEX)


def summarize(lengths: list[int]) -> dict:
    """n, mean, sd (population), min, max and total of token counts (zeros when empty)."""
    n = len(lengths)
    if not n:
        return {"n": 0, "mean": 0.0, "sd": 0.0, "min": 0, "max": 0, "total": 0}
    mean = sum(lengths) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in lengths) / n)
    return {"n": n, "mean": round(mean, 2), "sd": round(sd, 2), "min": min(lengths),
            "max": max(lengths), "total": sum(lengths)}


def classify(n_tokens: int, n_prompt: int, max_seq_len: int, on_too_long: str) -> str:
    """'ok', 'truncated' or 'dropped' under the length policy.

    With "truncate", an example left with no supervised token (its prompt alone fills
    max_seq_len) is dropped instead.
    """
    if on_too_long not in ON_TOO_LONG:
        raise ValueError(f"unknown data.on_too_long {on_too_long!r}: expected one of {ON_TOO_LONG}")
    if n_tokens <= max_seq_len:
        return "ok"
    if on_too_long == "drop" or n_prompt >= max_seq_len:
        return "dropped"
    return "truncated"


def length_report(counts: dict, ids: list, max_seq_len: int, on_too_long: str, style: str) -> dict:
    """Report of the length policy over rows `ids`; counts[id] = (n_tokens, n_prompt_tokens)."""
    fate = {i: classify(*counts[i], max_seq_len, on_too_long) for i in ids}
    too_long = [i for i in ids if counts[i][0] > max_seq_len]
    return {"n_rows": len(ids), "kept": sum(f != "dropped" for f in fate.values()),
            "too_long": len(too_long), "too_long_ids": too_long,
            "truncated": sum(f == "truncated" for f in fate.values()),
            "dropped": sum(f == "dropped" for f in fate.values()),
            "max_seq_len": max_seq_len, "on_too_long": on_too_long, "format": style,
            "tokens": summarize([counts[i][0] for i in ids]),
            "supervised_tokens": summarize([counts[i][0] - counts[i][1] for i in ids])}


def encode_rows(tokenizer, rows: list[dict], style: str, max_seq_len: int,
                on_too_long: str = "truncate", ids: list | None = None):
    """Tokenize rows and apply the length policy (config data.max_seq_len, data.on_too_long).

    Returns (examples, report): examples is a list of (input_ids, labels) in row order, less
    the dropped ones, truncated ones cut to max_seq_len; report = length_report(): counts of
    too_long / truncated / dropped (with the row ids) and token statistics of the untruncated
    sequences. `ids` names the rows in the report (default: positions).
    """
    if max_seq_len < 1:
        raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
    classify(0, 0, max_seq_len, on_too_long)  # validates on_too_long before any work
    ids = list(range(len(rows))) if ids is None else list(ids)
    examples, counts = [], {}
    for rid, row in zip(ids, rows, strict=True):
        x, y = tokenize_example(tokenizer, row, style)
        n_prompt = prompt_length(y)
        counts[rid] = (len(x), n_prompt)
        fate = classify(len(x), n_prompt, max_seq_len, on_too_long)
        if fate != "dropped":
            examples.append((x[:max_seq_len], y[:max_seq_len]))
    return examples, length_report(counts, ids, max_seq_len, on_too_long, style)
