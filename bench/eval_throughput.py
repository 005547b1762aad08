#!/usr/bin/env python
"""Evaluation decode throughput: HF generate (lockstep batches, what `hf` / `hf-resumable`
run) vs transformers continuous batching (what `hf-cb` runs), on the SAME prompts with the
SAME forced answer lengths.

Answer lengths are drawn from a long tail (Pareto, shape --alpha, scale --min-len) capped at
--max-gen-toks, like reasoning traces: most short, a few at the cap. Lengths are forced:
  * hf: a logits processor bans EOS before row i's length L_i and forces it at L_i; the
    batch keeps decoding (padding) until its longest row ends, as lm-eval's HF backend does
    (requests sorted longest prompt first, cut every --batch-size);
  * cb: each request gets max_new_tokens = L_i and no EOS.
Printed per backend: generated tokens (sum L_i), wall time, generated tokens/s, and the
useful fraction = generated tokens / sequence-steps computed, where sequence-steps are
counted by a forward hook: every token position fed to the model beyond the prompts
(padding rows included) plus the one token per sequence that the prefill yields.

  python bench/eval_throughput.py                      # tiny demo model, CPU (~1-2 min)
  python bench/eval_throughput.py --model Qwen/Qwen2.5-1.5B-Instruct --random-init \\
      --device cuda --dtype bfloat16 --n 64 --batch-size 16 --max-gen-toks 4096   # GPU
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def long_tail_lengths(n, max_gen_toks, min_len, alpha, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = min_len * (1.0 + rng.pareto(alpha, size=n))
    return [int(min(max_gen_toks, max(1, round(x)))) for x in raw]


def build_demo_model(d: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "workflow" / "scripts" / "make_demo.py"), "tiny", "--out", str(d)],
                   check=True, capture_output=True)
    return d / "base"


def demo_prompts(tok, n):
    tasks = ROOT / "workflow" / "tasks" / "demo"
    texts = []
    for name, key in (("aime_demo.jsonl", "problem"), ("gpqa_demo.jsonl", "prompt")):
        texts += [json.loads(l)[key] for l in (tasks / name).read_text().splitlines() if l.strip()]
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": texts[i % len(texts)]}]
        out.append(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return out


class StepCounter:
    """Counts token positions fed to the model's forward (prefill + decode)."""

    def __init__(self, model):
        self.tokens = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            emb = kwargs.get("inputs_embeds")
            self.tokens += int(emb.shape[0] * emb.shape[1]) if emb is not None else 0
        else:
            self.tokens += int(ids.numel())

    def close(self):
        self.handle.remove()


def run_hf(model, tok, prompts, lengths, batch_size, device):
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    eos = tok.eos_token_id

    class ForceLength(LogitsProcessor):
        def __init__(self, start, lens):
            self.start, self.lens = start, torch.tensor(lens, device=device)

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start  # tokens generated so far
            ban = step < self.lens - 1
            force = step >= self.lens - 1
            scores[ban, eos] = float("-inf")
            forced = torch.full_like(scores[force], float("-inf"))
            forced[:, eos] = 0.0
            scores[force] = forced
            return scores

    order = sorted(range(len(prompts)), key=lambda i: -len(tok(prompts[i])["input_ids"]))
    tok.padding_side = "left"
    counter = StepCounter(model)
    prompt_tokens, seqs, generated = 0, 0, 0
    t0 = time.perf_counter()
    for j in range(0, len(order), batch_size):
        idx = order[j:j + batch_size]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        lens = [lengths[i] for i in idx]
        out = model.generate(**enc, max_new_tokens=max(lens), do_sample=False, top_k=None, top_p=None,
                             temperature=None, repetition_penalty=None, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                             logits_processor=LogitsProcessorList([ForceLength(enc["input_ids"].shape[1], lens)]))
        new = out[:, enc["input_ids"].shape[1]:]
        for row, L in zip(new.tolist(), lens):
            got = row.index(eos) + 1 if eos in row else len(row)
            assert got == L, (got, L)
        generated += sum(lens)
        prompt_tokens += int(enc["input_ids"].numel())
        seqs += len(idx)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    counter.close()
    steps = counter.tokens - prompt_tokens + seqs
    return {"generated_tokens": generated, "wall_s": wall, "sequence_steps": steps}


def run_cb(model, tok, prompts, lengths, device):
    import torch
    from transformers import GenerationConfig

    gc = GenerationConfig(do_sample=False, max_new_tokens=max(lengths), eos_token_id=-1,
                          pad_token_id=tok.pad_token_id, top_k=None, top_p=None, temperature=None)
    inputs = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    counter = StepCounter(model)
    t0 = time.perf_counter()
    results = {}
    from elicit.lm_backend_cb import cb_config

    # CPU: a workload-sized paged cache; prefix caching off so that every prompt token is
    # computed (as in hf) and sequence-steps = fed tokens - prompt tokens + one per request
    cfg = cb_config(inputs, max(lengths), device, allow_block_sharing=False)
    with model.continuous_batching_context_manager(generation_config=gc, warmup=False, block=True, timeout=5,
                                                   continuous_batching_config=cfg) as mgr:
        ids = [mgr.add_request(ids_, max_new_tokens=L) for ids_, L in zip(inputs, lengths)]
        while len(results) < len(ids):
            r = mgr.get_result(timeout=1)
            if r is not None and r.is_finished():
                results[r.request_id] = r
            elif r is None and not mgr.is_running():
                raise RuntimeError("continuous batching stopped early")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    counter.close()
    generated = sum(len(results[i].generated_tokens) for i in ids)
    assert [len(results[i].generated_tokens) for i in ids] == lengths
    steps = counter.tokens - sum(len(x) for x in inputs) + len(inputs)
    return {"generated_tokens": generated, "wall_s": wall, "sequence_steps": steps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir / hub id (default: build the tiny demo model)")
    ap.add_argument("--random-init", action="store_true", help="config only, random weights (no download of weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n", type=int, default=32, help="number of prompts")
    ap.add_argument("--batch-size", type=int, default=8, help="hf lockstep batch size")
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--min-len", type=int, default=16, help="Pareto scale (typical short answer)")
    ap.add_argument("--alpha", type=float, default=1.2, help="Pareto shape (smaller = longer tail)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", default="hf,cb")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    tmp = tempfile.TemporaryDirectory()
    path = args.model or str(build_demo_model(Path(tmp.name)))
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = getattr(torch, args.dtype)
    if args.random_init:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(args.device).eval()
    prompts = demo_prompts(tok, args.n)
    lengths = long_tail_lengths(args.n, args.max_gen_toks, args.min_len, args.alpha, args.seed)
    print(f"model={path} device={args.device} dtype={args.dtype} n={args.n} hf_batch={args.batch_size} "
          f"max_gen_toks={args.max_gen_toks} lengths: mean={sum(lengths) / len(lengths):.1f} "
          f"median={sorted(lengths)[len(lengths) // 2]} max={max(lengths)} at_cap={lengths.count(args.max_gen_toks)}")
    rows = {}
    for b in args.backends.split(","):
        with torch.no_grad():
            r = run_hf(model, tok, prompts, lengths, args.batch_size, args.device) if b == "hf" else \
                run_cb(model, tok, prompts, lengths, args.device)
        r["tokens_per_s"] = r["generated_tokens"] / r["wall_s"]
        r["useful_fraction"] = r["generated_tokens"] / r["sequence_steps"]
        rows[b] = r
        print(f"{b:>3}: generated {r['generated_tokens']} tokens in {r['wall_s']:.2f}s = "
              f"{r['tokens_per_s']:.1f} tokens/s; sequence-steps {r['sequence_steps']}; "
              f"useful fraction {r['useful_fraction']:.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "lengths": lengths, "results": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
