"""Turn an s1K-1.1 row into a chat conversation and token labels (loss on the answer only).

Two assistant formats (config `data.format`):
  r1: "<think>\\n" + trajectory + "\\n</think>\\n\\n" + attempt
      The DeepSeek-R1-Distill convention; the default, because the skyline models and
      the traces themselves (DeepSeek R1) use it, and scoring strips it cleanly.
  s1: "<|im_start|>think\\n" + trajectory + "\\n<|im_start|>answer\\n" + answer
      How simplescaling/s1K-1.1_tokenized built its `text` column, where
      answer = "Answer: " + attempt unless "Answer:" is already in it.
"""
from __future__ import annotations

TRACE_FIELD = "deepseek_thinking_trajectory"
ATTEMPT_FIELD = "deepseek_attempt"
IGNORE_INDEX = -100


def assistant_text(row: dict, style: str = "r1") -> str:
    trace, attempt = row[TRACE_FIELD].strip(), row[ATTEMPT_FIELD]
    if style == "r1":
        return f"<think>\n{trace}\n</think>\n\n{attempt.strip()}"
    if style == "s1":
        answer = attempt if "Answer:" in attempt else "Answer: " + attempt
        return f"<|im_start|>think\n{trace}\n<|im_start|>answer\n{answer}"
    raise ValueError(f"unknown data.format {style!r}: expected 'r1' or 's1'")


def conversation(row: dict, style: str = "r1") -> list[dict]:
    return [{"role": "user", "content": row["question"]},
            {"role": "assistant", "content": assistant_text(row, style)}]


def tokenize_example(tokenizer, row: dict, style: str = "r1") -> tuple[list[int], list[int]]:
    """input_ids and labels; labels are IGNORE_INDEX up to the assistant's content.

    Supervised tokens run from the first think marker through <|im_end|>; the chat
    template's trailing newline after <|im_end|> is not supervised.
    """
    msgs = conversation(row, style)
    prompt = tokenizer.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("chat template does not extend the generation prompt; cannot mask labels")
    eos = tokenizer.eos_token or "<|im_end|>"
    completion = full[len(prompt):]
    end = completion.rfind(eos)
    if end < 0:
        raise ValueError(f"chat template did not close the assistant turn with {eos!r}")
    completion = completion[: end + len(eos)]
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return p_ids + c_ids, [IGNORE_INDEX] * len(p_ids) + c_ids
