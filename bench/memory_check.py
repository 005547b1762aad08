#!/usr/bin/env python
"""The memory planner against measurement, on this CPU: predicted vs measured peak, side by side.

Each point runs in its own subprocess (one thread, fp32, tiny random-init Qwen2 configs):
  train-mat   one training forward + backward with the MATERIALISED loss (train.py's
              token_loss_sum: logits of the whole sequence, upcast to fp32, cross_entropy sum)
  train-chunk the same with the CHUNKED loss (LM head + cross-entropy 512 tokens at a time,
              each chunk under torch.utils.checkpoint)
  eval        one HF generate batch (left-padded prompts: an attention mask, as lm-eval's
              batches have), exactly `new` tokens sampled, DynamicCache
Measured = peak RSS during the step (VmHWM after `echo 5 > /proc/self/clear_refs`) minus the
RSS just before it, after building the model and a short warm-up step. glibc's mmap threshold
is pinned at 1 MiB (MALLOC_MMAP_THRESHOLD_) so freed tensors go back to the OS at once and
RSS follows the live tensors, like a GPU allocator's max_memory_allocated.
Predicted = memory_plan with dtype_bytes=4: parameter gradients (4 B/param) + activation_bytes
+ loss_*_bytes for training; kv cache + generation transients of eval_parts for eval.
Tolerance: measured / predicted within [0.7, 1.3].

CPU notes: SDPA on CPU uses its flash kernel for a causal mask-free sequence (training), but
a padded batch's explicit mask may fall back to the math kernel, which materialises
batch x heads x q x kv scores: prompts stay short (<= 256 tokens) so those stay small.
eval-p256-g64 peaks in the prefill, the others at the last decoding step.

Usage:  python bench/memory_check.py            # every point (~2 min on 2 cores)
        python bench/memory_check.py --points train-mat-512 eval-p32-g256
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from elicit.plan.memory_plan import Arch, activation_bytes, eval_parts, loss_chunked_bytes, loss_materialised_bytes

ROOT = Path(__file__).resolve().parents[1]

TOLERANCE = (0.7, 1.3)
ARCHS = {  # loss-dominated (the real vocabulary), activation-dominated, KV-cache-dominated
    "vocab": Arch(hidden=64, inter=128, layers=2, heads=4, kv_heads=2, vocab=151936, tied=True),
    "act": Arch(hidden=512, inter=1536, layers=4, heads=8, kv_heads=2, vocab=1024, tied=True),
    "kv": Arch(hidden=512, inter=1024, layers=4, heads=8, kv_heads=4, vocab=4096, tied=True),
}
CHUNK, BATCH = 512, 16
POINTS = {
    **{f"train-mat-{t}": dict(kind="train", arch="vocab", seq=t, loss="mat", gc=True) for t in (256, 512, 1024)},
    **{f"train-chunk-{t}": dict(kind="train", arch="vocab", seq=t, loss="chunk", gc=True) for t in (1024, 2048, 4096)},
    **{f"act-gc-{t}": dict(kind="train", arch="act", seq=t, loss="chunk", gc=True) for t in (2048, 4096)},
    "act-nogc-2048": dict(kind="train", arch="act", seq=2048, loss="chunk", gc=False),
    **{f"eval-p{p}-g{g}": dict(kind="eval", arch="kv", prompt=p, new=g)
       for p, g in ((256, 64), (32, 256), (128, 512), (128, 1024))},
}


def predict(p: dict) -> int:
    a = ARCHS[p["arch"]]
    if p["kind"] == "eval":
        parts = eval_parts(a, BATCH, p["prompt"], p["new"], dtype_bytes=4)
        return parts["kv cache"] + parts["generation"]
    loss = (loss_materialised_bytes(a, p["seq"], 4) if p["loss"] == "mat"
            else loss_chunked_bytes(a, min(CHUNK, p["seq"]), 4))
    return 4 * a.params() + activation_bytes(a, p["seq"], 4, p["gc"]) + loss


# ----------------------------------------------------------------------------- child process
def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _model(a: Arch):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=a.hidden, intermediate_size=a.inter, num_hidden_layers=a.layers,
                      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, vocab_size=a.vocab,
                      tie_word_embeddings=a.tied, max_position_embeddings=8192, attn_implementation="sdpa")
    return Qwen2ForCausalLM(cfg).float()


def _train_step(model, seq: int, loss: str) -> None:
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    ids = torch.randint(0, model.config.vocab_size, (1, seq))
    if loss == "mat":  # train.py's token_loss_sum
        logits = model(input_ids=ids).logits[:, :-1].float()
        out = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum")
        del logits
    else:
        hidden = model.model(input_ids=ids).last_hidden_state[0, :-1]
        labels, head = ids[0, 1:], model.lm_head

        def chunk_loss(h, y):
            return F.cross_entropy(head(h).float(), y, reduction="sum")

        out = sum(checkpoint(chunk_loss, hidden[s:s + CHUNK], labels[s:s + CHUNK], use_reentrant=False)
                  for s in range(0, seq - 1, CHUNK))
        del hidden
    out.backward()


def _eval_step(model, prompt: int, new: int) -> None:
    import torch

    ids = torch.randint(0, model.config.vocab_size, (BATCH, prompt))
    mask = torch.ones_like(ids)
    for r in range(BATCH):  # left padding, lm-eval style: row r's prompt is shorter by r/2B of it
        mask[r, : r * prompt // (2 * BATCH)] = 0
    model.generation_config.eos_token_id = None
    model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=True,
                   temperature=0.6, top_k=0, top_p=1.0, pad_token_id=0)


def child(p: dict) -> int:
    import gc

    import torch

    torch.set_num_threads(1)
    model = _model(ARCHS[p["arch"]])
    if p["kind"] == "train":
        model.train()
        if p["gc"]:
            model.gradient_checkpointing_enable()
        run = lambda n: _train_step(model, n, p["loss"])  # noqa: E731
    else:
        model.eval()
        run = lambda n: _eval_step(model, p["prompt"], n)  # noqa: E731
    with torch.inference_mode(p["kind"] == "eval"):
        run(64 if p["kind"] == "train" else 4)  # warm-up: kernels, one-off buffers
        model.zero_grad(set_to_none=True)
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
        run(p["seq"] if p["kind"] == "train" else p["new"])
        return _status("VmHWM") - base


def measure(name: str, timeout: int = 600) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True, env=env,
                         timeout=timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("MEASURED ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{name}: {out.stderr[-3000:]}")
    return int(lines[-1].split()[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(f"MEASURED {child(POINTS[args.child])}", flush=True)
        return 0
    print(f"{'point':<17}{'what':<44}{'predicted MiB':>14}{'measured MiB':>14}{'ratio':>7}")
    bad = 0
    for name in args.points:
        p, got = POINTS[name], measure(name)
        want = predict(p)
        ratio = got / want
        bad += not TOLERANCE[0] <= ratio <= TOLERANCE[1]
        a = ARCHS[p["arch"]]
        what = (f"{p['arch']} h{a.hidden} L{a.layers} V{a.vocab}, "
                + (f"batch {BATCH} x ({p['prompt']}+{p['new']})" if p["kind"] == "eval"
                   else f"T={p['seq']} {p['loss']} loss{'' if p['gc'] else ', no ckpt'}"))
        print(f"{name:<17}{what:<44}{want / 2**20:>14.1f}{got / 2**20:>14.1f}{ratio:>7.2f}", flush=True)
    print(f"tolerance: measured/predicted in [{TOLERANCE[0]}, {TOLERANCE[1]}]: "
          + ("all within" if not bad else f"{bad} point(s) outside"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
