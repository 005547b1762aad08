#!/usr/bin/env python
"""Build the offline demo: an s1K-1.1-shaped table, a Qwen-style tokenizer, tiny Qwen2 models.

Nothing here touches the network. The demo stands in for the paper's grid:
  * `data`      writes an s1K-1.1-shaped JSONL table (same 13 string columns).
  * `tokenizer` trains a byte-level BPE with Qwen2's pre-tokenizer rule (single digits)
                and Qwen's special tokens and chat template.
  * `model`     random-initialises a Qwen2ForCausalLM of a given width/depth.
  * `skyline`   the demo's stand-in for DeepSeek-R1-Distill: the same-size base model
                trained until it has memorised the demo tasks' answers, so that it
                scores clearly above base (an oracle; it exists only to make
                Recovered % meaningful in the demo).

Usage:
  python workflow/scripts/make_demo.py data --out results/demo/s1k.jsonl --rows 48
  python workflow/scripts/make_demo.py tokenizer --corpus results/demo/s1k.jsonl --out results/demo/tokenizer
  python workflow/scripts/make_demo.py model --tokenizer results/demo/tokenizer --out DIR --hidden 64 --layers 2
  python workflow/scripts/make_demo.py skyline --base DIR --tasks workflow/tasks/demo --out DIR2
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from atomic import atomic_dir, write_jsonl
from chat_template import QWEN25_CHAT_TEMPLATE, SPECIAL_TOKENS

S1K_COLUMNS = [
    "solution", "question", "cot_type", "source_type", "metadata",
    "gemini_thinking_trajectory", "gemini_attempt",
    "deepseek_thinking_trajectory", "deepseek_attempt",
    "gemini_grade", "gemini_grade_reason", "deepseek_grade", "deepseek_grade_reason",
]
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def demo_rows(n: int, seed: int = 0) -> list[dict]:
    """Arithmetic word problems with R1-style traces, shaped like s1K-1.1 rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        ans = (a + b) * c
        q = f"Problem {i}: compute ({a} + {b}) * {c}. Give the final answer as an integer."
        trace = (
            f"Let me add first: {a} + {b} = {a + b}.\nNow multiply: {a + b} * {c} = {ans}.\n"
            f"Check: {ans} / {c} = {a + b}, and {a + b} - {b} = {a}. Correct."
        )
        rows.append({
            "solution": str(ans), "question": q, "cot_type": "math",
            "source_type": "demo/arithmetic", "metadata": json.dumps({"i": i}),
            "gemini_thinking_trajectory": trace, "gemini_attempt": f"The answer is $\\boxed{{{ans}}}$.",
            "deepseek_thinking_trajectory": trace, "deepseek_attempt": f"**Final answer:** $\\boxed{{{ans}}}$",
            "gemini_grade": "Yes", "gemini_grade_reason": "matches", "deepseek_grade": "Yes",
            "deepseek_grade_reason": "matches",
        })
    return rows


def cmd_data(args) -> None:
    write_jsonl(args.out, demo_rows(args.rows, args.seed))


def _corpus(paths: list[str]) -> list[str]:
    texts = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise SystemExit(f"{f}: line {n} is not valid JSON ({e}): a truncated or damaged file")
                texts.extend(str(v) for v in row.values())
    return texts


def cmd_tokenizer(args) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(args.corpus) + ["<think>", "</think>", "Answer:"], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = QWEN25_CHAT_TEMPLATE
    with atomic_dir(args.out) as tmp:
        fast.save_pretrained(tmp)


def cmd_model(args) -> None:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    torch.manual_seed(args.seed)
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.hidden * 2,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=max(1, args.heads // 2), max_position_embeddings=args.context,
        tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(cfg)
    # Like Qwen2.5-Instruct's own generation_config: sampling settings that differ from
    # ours, so that evaluation must override them explicitly.
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05,
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
    )
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def task_answers(tasks_dir: str) -> list[tuple[str, str]]:
    """(prompt, target) pairs of the demo tasks, used to build the oracle skyline."""
    pairs = []
    for line in (Path(tasks_dir) / "aime_demo.jsonl").read_text().splitlines():
        d = json.loads(line)
        pairs.append((d["problem"], f"<think>\nsolve\n</think>\n\nThe answer is \\boxed{{{d['answer']}}}"))
    for line in (Path(tasks_dir) / "gpqa_demo.jsonl").read_text().splitlines():
        d = json.loads(line)
        pairs.append((d["prompt"], f"<think>\nthink\n</think>\n\nThe answer is ({d['answer']})"))
    return pairs


def cmd_skyline(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base)
    batch = []
    for prompt, target in task_answers(args.tasks):
        head = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        p_ids = tok(head, add_special_tokens=False)["input_ids"]
        t_ids = tok(target + "<|im_end|>", add_special_tokens=False)["input_ids"]
        batch.append((p_ids + t_ids, [-100] * len(p_ids) + t_ids))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    for step in range(args.steps):
        total = 0.0
        for ids, labels in batch:
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            out.loss.backward()
            total += out.loss.item()
        opt.step()
        opt.zero_grad()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"skyline step {step}: mean loss {total / len(batch):.4f}", flush=True)
    model.eval()
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data", help="write an s1K-1.1-shaped demo table")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("tokenizer", help="train the demo BPE tokenizer")
    p.add_argument("--corpus", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, default=512)
    p = sub.add_parser("model", help="random-init a tiny Qwen2 model")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("skyline", help="train the oracle skyline from a base model")
    p.add_argument("--base", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    {"data": cmd_data, "tokenizer": cmd_tokenizer, "model": cmd_model, "skyline": cmd_skyline}[args.cmd](args)


if __name__ == "__main__":
    main()
