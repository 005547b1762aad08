#!/usr/bin/env python
"""Peak memory of one training forward+backward: the materialised loss vs elicit.train.loss's chunked path.

A Qwen2 of the real vocabulary (151,936) with a small body (hidden 64, 2 layers) on CPU, fp32,
one sequence of T tokens, labels on all but a 64-token prompt. Each (path, T) runs in its own
process; its peak is the process's high-water RSS (VmHWM) minus its RSS just before the step, so
the model and the interpreter cancel out. Side by side in one run:

  materialised  logits [T, vocab] upcast to fp32, cross_entropy(sum): what train.py did before
  chunked       LM head + cross-entropy over `--chunk` supervised tokens at a time, each chunk
                under torch.utils.checkpoint (elicit/train/loss.py; what train.py runs on CPU)

A run whose predicted peak (3 fp32 copies of the logits for the materialised path) exceeds the
memory available now is not started; the table says so. At the end: the ratio per T, and how the
chunked path grows from the smallest to the largest T against the per-token cost of the
materialised path's logits (3 x vocab x 4 bytes) and of the hidden-state terms.

Usage:
  OMP_NUM_THREADS=2 python bench/loss_memory.py                    # 4k and 16k tokens (~1-2 min)
  python bench/loss_memory.py --tokens 2048 4096 8192 16384
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VOCAB = 151936


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(impl: str, tokens: int, hidden: int, layers: int, chunk: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from elicit.train.loss import TokenLoss

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=max(tokens, 4096), tie_word_embeddings=True,
                      attn_implementation="sdpa")
    model = Qwen2ForCausalLM(cfg).train()
    ids = torch.randint(0, VOCAB, (tokens,)).tolist()
    labels = [-100] * 64 + ids[64:]
    loss_fn = TokenLoss(model, impl, chunk)
    before = _status("VmRSS")
    loss = loss_fn(model, ids, labels, torch.device("cpu"))
    loss.backward()
    print(json.dumps({"peak": _status("VmHWM") - before, "loss": loss.item()}))


def available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]), args.hidden, args.layers, args.chunk)
    gib = 2 ** 30
    print(f"Qwen2 vocab {VOCAB}, hidden {args.hidden}, {args.layers} layers, fp32 CPU, chunk {args.chunk}")
    print(f"{'tokens':>7} {'materialised GiB':>17} {'chunked GiB':>12} {'ratio':>7} {'loss diff':>10}")
    res = {}
    for t in args.tokens:
        row = {}
        for impl in ("materialised", "chunked"):
            need = 3 * t * VOCAB * 4 if impl == "materialised" else 0
            if need > 0.9 * available():
                row[impl] = None
                continue
            out = subprocess.run([sys.executable, __file__, "--child", impl, str(t), "--hidden", str(args.hidden),
                                  "--layers", str(args.layers), "--chunk", str(args.chunk)],
                                 capture_output=True, text=True, check=True).stdout
            row[impl] = json.loads(out.strip().splitlines()[-1])
        res[t] = row
        m, c = row["materialised"], row["chunked"]
        mt = f"{m['peak'] / gib:17.2f}" if m else f"{'not run (> RAM)':>17}"
        ratio = f"{m['peak'] / c['peak']:6.1f}x" if m else f"{'—':>7}"
        diff = f"{abs(m['loss'] - c['loss']) / abs(m['loss']):10.1e}" if m else f"{'—':>10}"
        print(f"{t:>7} {mt} {c['peak'] / gib:12.2f} {ratio} {diff}")
        if not m:
            print(f"        materialised at {t} tokens needs ~{3 * t * VOCAB * 4 / gib:.1f} GiB of logits alone; "
                  f"{available() / gib:.1f} GiB available")
    lo, hi = min(res), max(res)
    grow = (res[hi]["chunked"]["peak"] - res[lo]["chunked"]["peak"]) / (hi - lo)
    print(f"chunked path grows {grow / 1024:.1f} KiB per extra token from {lo} to {hi} tokens; "
          f"the materialised logits cost {3 * VOCAB * 4 / 1024:.0f} KiB per token "
          f"(hidden-state activations of this body: ~{(14 * args.hidden * args.layers + 4 * args.hidden) * 4 / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
