#!/usr/bin/env python
"""Training throughput: train.py's padding-free path vs a plainly padded batch-16 step.

Same tiny random-init Qwen2, same sequences, measured side by side in one run (the two
paths alternate batch by batch, so machine noise hits both alike). Sequence lengths are
drawn from s1K-1.1's token-length distribution under the Qwen tokenizer (mean 10038,
sd 4531, max 26969; normal, clipped to [256, 26969]) divided by --scale to CPU size.

  padding-free: one sequence per micro-batch, gradients accumulated over the global batch,
                loss = token sum / tokens of the global batch (elicit.train.loss.TokenLoss) - what
                train.py runs; no pad token is ever computed.
  padded:       the global batch as ONE [16, max_len] tensor, right-padded, attention mask,
                labels -100 on pads (a plain HF Trainer step with per_device_batch 16).

Both report real (non-pad) tokens per second; the pad fraction is pad / computed tokens.

Usage:
  OMP_NUM_THREADS=2 python bench/train_throughput.py                 # ~1-2 min on 2 cores
  python bench/train_throughput.py --scale 20 --hidden 256 --batches 4
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from elicit.train.loss import TokenLoss  # the exact loss train.py computes

S1K_MEAN, S1K_SD, S1K_MAX, S1K_MIN = 10038, 4531, 26969, 256


def draw_lengths(n: int, scale: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = min(S1K_MAX, max(S1K_MIN, rng.gauss(S1K_MEAN, S1K_SD)))
        out.append(max(8, round(x / scale)))
    return out


def tiny_model(hidden: int, layers: int, vocab: int, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4,
                      num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
                      num_key_value_heads=max(1, hidden // 64), max_position_embeddings=4096,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    return Qwen2ForCausalLM(cfg).train()


def step_padding_free(model, batch):
    n_tok = sum(len(ids) - 1 for ids, _ in batch)
    loss_fn = TokenLoss(model, "auto")
    for ids, labels in batch:
        (loss_fn(model, ids, labels, torch.device("cpu")) / n_tok).backward()
    return sum(len(ids) for ids, _ in batch), 0


def step_padded(model, batch, pad_id: int):
    L = max(len(ids) for ids, _ in batch)
    x = torch.full((len(batch), L), pad_id)
    y = torch.full((len(batch), L), -100)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    for r, (ids, labels) in enumerate(batch):
        x[r, :len(ids)], y[r, :len(ids)], mask[r, :len(ids)] = torch.tensor(ids), torch.tensor(labels), 1
    logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                             y[:, 1:].reshape(-1), ignore_index=-100)
    loss.backward()
    real = int(mask.sum())
    return real, x.numel() - real


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=40.0, help="divide s1K-1.1 lengths by this")
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=3, help="measured global batches per path")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    model = tiny_model(args.hidden, args.layers, args.vocab, args.seed)
    n = args.global_batch * (args.batches + 1)
    lengths = draw_lengths(n, args.scale, args.seed)
    seqs = [(ids := torch.randint(1, args.vocab, (L,)).tolist(), ids) for L in lengths]
    batches = [seqs[i:i + args.global_batch] for i in range(0, n, args.global_batch)]
    print(f"model: hidden {args.hidden}, {args.layers} layers, "
          f"{sum(p.numel() for p in model.parameters()):,} params; torch threads {torch.get_num_threads()}")
    print(f"lengths (s1K-1.1 / {args.scale:g}): mean {sum(lengths) / n:.0f}, "
          f"max {max(lengths)}, min {min(lengths)}; {args.batches} measured batches of "
          f"{args.global_batch} (+1 warm-up)")

    res = {"padding-free": [0.0, 0, 0], "padded": [0.0, 0, 0]}  # seconds, real, pad
    for b, batch in enumerate(batches):
        for name in (("padding-free", "padded") if b % 2 else ("padded", "padding-free")):
            t0 = time.perf_counter()
            real, pad = (step_padding_free(model, batch) if name == "padding-free"
                         else step_padded(model, batch, pad_id=0))
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            if b == 0:
                continue  # warm-up
            res[name][0] += dt
            res[name][1] += real
            res[name][2] += pad
    print(f"{'path':<14}{'tokens/s':>12}{'pad fraction':>15}{'seconds':>10}")
    tps = {}
    for name, (sec, real, pad) in res.items():
        tps[name] = real / sec
        print(f"{name:<14}{tps[name]:>12.0f}{pad / (real + pad):>15.2%}{sec:>10.2f}")
    print(f"ratio padding-free / padded tokens/s: {tps['padding-free'] / tps['padded']:.2f}x")


if __name__ == "__main__":
    main()
