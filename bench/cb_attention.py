#!/usr/bin/env python
"""Continuous batching without flash-attn: transformers' masked SDPA vs elicit/eval/cb_attention, side by side.

Without flash-attn, transformers' continuous batching scores every query of a step against the
keys of EVERY sequence in flight (one masked SDPA over the concatenated cache): its attention
grows with the square of the sequences in flight. elicit/eval/cb_attention.py (installed by the
hf-cb backend) attends per sequence. This runs the same continuous-batching job both ways and
prints, per number of sequences in flight: ms per step, tokens/s, the ratio, and whether the
greedy tokens are identical.

Default model (CPU, ~2 min): Qwen2.5-1.5B's attention (12 query heads, 2 KV heads, head dim
128) in 2 layers with a small MLP and vocabulary, random weights, float32; prompts of 200-600
tokens, 64 new tokens each.

  python bench/cb_attention.py
  python bench/cb_attention.py --arch resources/models/Qwen--Qwen2.5-1.5B-Instruct.json --device cuda \\
      --dtype bfloat16 --in-flight 8 64 256 --new 512
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))


def build(args):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = json.loads(Path(args.arch).read_text()) if args.arch else {
        "model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 2048, "tie_word_embeddings": True}
    fields = {k: v for k, v in fields.items() if not k.startswith("_") and k != "torch_dtype"}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**fields), dtype=getattr(torch, args.dtype),
                                             attn_implementation="sdpa")
    return model.to(args.device).eval(), fields["vocab_size"]


def run(model, prompts, args, varlen: bool):
    """(tokens per answer, seconds, forward calls) of one continuous-batching job, all answers args.new long."""
    import contextlib

    import torch
    from transformers import GenerationConfig

    from elicit.eval import cb_attention
    from elicit.eval.lm_backend_cb import cb_config, kv_bytes_per_token

    calls = [0]
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    gc = GenerationConfig(do_sample=False, max_new_tokens=args.new, eos_token_id=-1, pad_token_id=0)
    cfg = cb_config(prompts, args.new, args.device, allow_block_sharing=False, kv_bytes=kv_bytes_per_token(model))
    cfg.auto_switch_to_flash = False  # the no-flash path on both sides, whatever is installed
    with torch.no_grad(), (cb_attention.installed() if varlen else contextlib.nullcontext()):
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate_batch(inputs=prompts, generation_config=gc, continuous_batching_config=cfg,
                                   progress_bar=False)
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    hook.remove()
    toks = [list(out[k].generated_tokens) for k in sorted(out, key=lambda k: int(k.split("_")[-1]))]
    assert all(len(t) == args.new for t in toks)
    return toks, wall, calls[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default=None, help="HF config.json fields (resources/models/*.json); random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[8, 32, 64], help="sequences per job")
    ap.add_argument("--new", type=int, default=64, help="new tokens per answer")
    ap.add_argument("--prompt", type=int, nargs=2, default=[200, 600], help="prompt length range")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, vocab = build(args)
    rng = np.random.default_rng(0)
    print(f"{'in flight':>9} | {'masked ms/step':>14} | {'varlen ms/step':>14} | {'masked tok/s':>12} | "
          f"{'varlen tok/s':>12} | {'ratio':>5} | same tokens")
    for n in args.in_flight:
        prompts = [rng.integers(10, vocab - 10, size=int(rng.integers(*args.prompt))).tolist() for _ in range(n)]
        run(model, prompts[:2], args, True)  # warm up both paths' first-call costs
        masked, tm, cm = run(model, prompts, args, False)
        varlen, tv, cv = run(model, prompts, args, True)
        tokens = n * args.new
        print(f"{n:>9} | {tm / cm * 1e3:>14.1f} | {tv / cv * 1e3:>14.1f} | {tokens / tm:>12.1f} | "
              f"{tokens / tv:>12.1f} | {tm / tv:>4.2f}x | {masked == varlen}")


if __name__ == "__main__":
    main()
