#!/usr/bin/env python
"""Evaluation throughput on the paper workload: today's default against the new default, side by side.

Workload (synthetic token ids, no tokenizer, no download): the paper grid's evaluation of one
model: AIME (aime24 + aime25, --aime problems each, default the paper's 30, prompts of 60-300
tokens) and GPQA (--gpqa problems, default 198, prompts of 150-900 tokens), --seeds seeds each
(4). Answer lengths are long-tailed like reasoning traces (Pareto: most short, some at --max-new;
AIME's tail heavier), drawn per (task, problem, seed), and FORCED: whatever a random-init model
samples, every answer has exactly its length, so both sides do the same useful work. Prompts are
shortened by the factor the answers are (--max-new / 29,000, at least 4 tokens;
--prompt-scale 1 keeps real lengths): in the paper's evaluation prompts are ~4 % of the tokens,
and at real length against 256-token answers the prefill would be 95 % of the work.

  lockstep  today's default (hf-resumable, eval.batch_size 8, one job per task and seed): every
            job's problems sorted longest prompt first, cut into batches of 8, HF `generate`
            sampling at T=0.6 with a logits processor that bans EOS before row i's length and
            forces it there; a batch decodes until its LONGEST answer ends.
  cb        the new default (hf-cb, seeds_per_job auto): the AIME tasks x all seeds in one job,
            GPQA x one seed per job (elicit/plan/eval_jobs.py with --slots), each job ONE continuous-
            batching run with the project's per-request Gumbel sampler (lm_backend_cb.py),
            max_new_tokens = the answer's length; a finished answer frees its slot at once.
Printed per side: generated tokens, wall time, tokens/s, useful fraction (generated tokens /
sequence-steps computed, counted by a forward hook: token positions fed beyond the prompts, +1
per sequence for the prefill's token) and mean sequences in flight (sequence-steps / forward
calls), then the ratio.

  python bench/eval_throughput.py                                # tiny demo architecture, CPU (~30 s)
  python bench/eval_throughput.py --arch resources/models/Qwen--Qwen2.5-1.5B-Instruct.json \\
      --device cuda --dtype bfloat16 --max-new 4096 --aime 8 --gpqa 16 --seeds 2 --lockstep-batches 2
  python bench/eval_throughput.py --profile ...   # where a step's time goes (cb side, first job only)
--lockstep-batches N times N batches of today's plan, drawn at random (seeded), and rates the
whole plan by them (tokens/s is per batch stationary); 0 = every batch (the default).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def workload(args, vocab: int):
    """[{task, doc, seed, prompt (ids), length}] of one model's evaluation."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    tasks = {"aime24": (args.aime, (60, 300), 0.9), "aime25": (args.aime, (60, 300), 0.9),
             "gpqa": (args.gpqa, (150, 900), 1.3)}
    reqs = []
    for task, (n, (lo, hi), alpha) in tasks.items():
        for doc in range(n):
            length = max(4, round(int(rng.integers(lo, hi)) * prompt_scale(args)))
            prompt = rng.integers(10, vocab - 10, size=length).tolist()
            for seed in range(args.seeds):
                raw = args.max_new / 48 * (1.0 + rng.pareto(alpha))
                reqs.append({"task": task, "doc": doc, "seed": seed, "prompt": prompt,
                             "length": int(min(args.max_new, max(1, round(raw))))})
    return reqs


PAPER_CAP = 29000  # the paper's max_gen_toks


def prompt_scale(args) -> float:
    """Prompts shortened by the factor the answers are (--max-new against the paper's 29,000), so
    prefill keeps its share of the work (~4 % of the tokens in the paper's evaluation); 1 = real lengths."""
    return args.prompt_scale if args.prompt_scale is not None else min(1.0, args.max_new / PAPER_CAP)


def build_model(args):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from elicit.data import demo

    fields = json.loads(Path(args.arch).read_text()) if args.arch else demo.architecture(128, 2, 4)
    fields = {k: v for k, v in fields.items() if not k.startswith("_") and k != "torch_dtype"}
    cfg = AutoConfig.for_model(**fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, args.dtype), attn_implementation="sdpa")
    return model.to(args.device).eval()


class StepCounter:
    """Token positions fed to the model's forward and forward calls (prefill + decode)."""

    def __init__(self, model):
        self.tokens = self.calls = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(ids.numel()) if ids is not None else int(kwargs["inputs_embeds"].shape[1])
        self.calls += 1

    def close(self):
        self.handle.remove()


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def lockstep_batches(reqs, bs=8):
    """Today's plan: one job per (task, seed), longest prompt first, batches of bs."""
    jobs = {}
    for r in reqs:
        jobs.setdefault((r["task"], r["seed"]), []).append(r)
    out = []
    for job in jobs.values():
        job.sort(key=lambda r: -len(r["prompt"]))
        out += [job[i:i + bs] for i in range(0, len(job), bs)]
    return out


def run_lockstep(model, batches, args, eos: int):
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class ForceLength(LogitsProcessor):
        def __init__(self, start, lens):
            self.start, self.lens = start, torch.tensor(lens, device=args.device)

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start
            scores[step < self.lens - 1, eos] = float("-inf")
            force = step >= self.lens - 1
            forced = torch.full_like(scores[force], float("-inf"))
            forced[:, eos] = 0.0
            scores[force] = forced
            return scores

    counter, prompt_tokens, seqs, generated = StepCounter(model), 0, 0, 0
    sync(args.device)
    t0 = time.perf_counter()
    for batch in batches:
        width = max(len(r["prompt"]) for r in batch)
        ids = torch.tensor([[eos] * (width - len(r["prompt"])) + r["prompt"] for r in batch], device=args.device)
        mask = torch.tensor([[0] * (width - len(r["prompt"])) + [1] * len(r["prompt"]) for r in batch],
                            device=args.device)
        lens = [r["length"] for r in batch]
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(lens), do_sample=True,
                             temperature=0.6, top_k=None, top_p=None, eos_token_id=eos, pad_token_id=eos,
                             logits_processor=LogitsProcessorList([ForceLength(width, lens)]))
        for row, n in zip(out[:, width:].tolist(), lens):
            assert (row.index(eos) + 1 if eos in row else len(row)) == n
        generated, prompt_tokens, seqs = generated + sum(lens), prompt_tokens + ids.numel(), seqs + len(batch)
    sync(args.device)
    wall = time.perf_counter() - t0
    counter.close()
    return {"generated_tokens": generated, "wall_s": wall, "sequence_steps": counter.tokens - prompt_tokens + seqs,
            "forward_calls": counter.calls, "jobs": len({(b[0]["task"], b[0]["seed"]) for b in batches})}


def cb_jobs(reqs, args):
    """The new default's jobs: AIME tasks x k seeds, GPQA x k seeds (eval_jobs' rule with --slots)."""
    out = []
    for tasks in (("aime24", "aime25"), ("gpqa",)):
        per_seed = sum(1 for r in reqs if r["task"] in tasks and r["seed"] == 0)
        k = args.seeds if not args.slots else max(1, min(args.seeds, math.ceil(args.slots / per_seed)))
        for lo in range(0, args.seeds, k):
            out.append([r for r in reqs if r["task"] in tasks and lo <= r["seed"] < lo + k])
    return out


class ForwardClock:
    """Host time inside the model's forward (launches included, the device not waited for) vs the wall."""

    def __init__(self, model):
        self.inside, self.t = 0.0, None
        self.handles = [model.register_forward_pre_hook(self._pre), model.register_forward_hook(self._post)]

    def _pre(self, *_):
        self.t = time.perf_counter()

    def _post(self, *_):
        self.inside += time.perf_counter() - self.t

    def close(self):
        for h in self.handles:
            h.remove()


def profile_cb(model, job, args):
    """One cb job profiled: ms per step, the share of it inside the model's forward (host side), the
    Python functions of the batching thread by own time (cProfile) and, on a GPU, the kernels by device
    time (torch.profiler). A step far above the forward's device time is host overhead."""
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity, profile

    cuda = str(args.device).startswith("cuda")
    clock, prof = ForwardClock(model), cProfile.Profile()

    def wrap(manager):  # cProfile the generation thread (it is where every step runs)
        loop = manager._run_generation_loop
        manager._run_generation_loop = lambda **kw: prof.runcall(loop, **kw)

    with profile(activities=[ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as tp:
        r = run_cb(model, [job], args, wrap=wrap)
    clock.close()
    steps = max(1, r["forward_calls"])
    print(f"profile: {steps} steps, {r['wall_s'] / steps * 1e3:.1f} ms per step, of which {clock.inside / steps * 1e3:.1f} "
          f"ms host time inside the model's forward; mean sequences in flight {r['sequence_steps'] / steps:.1f}")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if cuda:
        print(tp.key_averages().table(sort_by="self_cuda_time_total", row_limit=20))


def run_cb(model, jobs, args, wrap=None):
    import torch
    from transformers import GenerationConfig

    from elicit.eval import cb_attention
    from elicit.eval.lm_backend_cb import cb_config, kv_bytes_per_token, row_key, sampler_processor_list

    counter, generated, prompts, n = StepCounter(model), 0, 0, 0
    sync(args.device)
    t0 = time.perf_counter()
    for job in jobs:
        inputs, lengths = [r["prompt"] for r in job], [r["length"] for r in job]
        gc = GenerationConfig(do_sample=False, max_new_tokens=max(lengths), eos_token_id=-1, pad_token_id=0,
                              top_k=None, top_p=None, temperature=None)
        # prefix caching off so every prompt token is computed, as in lockstep (sequence-steps compare)
        cfg = cb_config(inputs, max(lengths), args.device, allow_block_sharing=False, slots=args.slots or None,
                        kv_bytes=kv_bytes_per_token(model))
        manager = model.init_continuous_batching(generation_config=gc, continuous_batching_config=cfg)
        manager.logit_processor = sampler_processor_list(0.6, 0, 1.0, None)
        if wrap:
            wrap(manager)
        attention = contextlib.nullcontext() if getattr(args, "masked_attention", False) else cb_attention.installed()
        got = {}
        with attention:  # restored whatever happens, as in the backend
            manager.start()
            try:
                with torch.no_grad():
                    ids = [manager.add_request(x, request_id=f"q{i}", max_new_tokens=L, eos_token_id=-1,
                                               sample_seed=row_key(r["seed"], r["doc"] * 7 + len(r["task"])))
                           for i, (x, L, r) in enumerate(zip(inputs, lengths, job))]
                    while len(got) < len(ids):
                        res = manager.get_result(timeout=1)
                        if res is not None and res.is_finished():
                            got[res.request_id] = res
                        elif res is None and not manager.is_running():
                            raise RuntimeError("continuous batching stopped early")
            finally:
                manager.stop(block=True, timeout=5)
                manager.destroy()
        assert [len(got[i].generated_tokens) for i in ids] == lengths
        generated, prompts, n = generated + sum(lengths), prompts + sum(len(x) for x in inputs), n + len(inputs)
    sync(args.device)
    wall = time.perf_counter() - t0
    counter.close()
    return {"generated_tokens": generated, "wall_s": wall, "sequence_steps": counter.tokens - prompts + n,
            "forward_calls": counter.calls, "jobs": len(jobs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default=None, help="HF config.json fields (resources/models/*.json); random weights. "
                                                 "Default: the demo's tiny architecture")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16")
    ap.add_argument("--max-new", type=int, default=256, help="answer length cap (eval.max_gen_toks)")
    ap.add_argument("--prompt-scale", type=float, default=None,
                    help="prompt length factor (default: --max-new / 29000, as the answers; 1: real lengths)")
    ap.add_argument("--aime", type=int, default=30, help="problems per AIME task (the paper's 30)")
    ap.add_argument("--gpqa", type=int, default=198, help="GPQA problems (the paper's 198)")
    ap.add_argument("--seeds", type=int, default=4, help="the paper's 4")
    ap.add_argument("--slots", type=int, default=0, help="cb: most sequences in flight (0: as the KV cache holds)")
    ap.add_argument("--lockstep-batches", type=int, default=0, help="time only N random batches of today's plan")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--profile", action="store_true", help="only profile the cb side's first job (torch.profiler)")
    ap.add_argument("--masked-attention", action="store_true",
                    help="cb: transformers' own SDPA over every sequence's keys (no flash-attn), not elicit/eval/cb_attention")
    args = ap.parse_args(argv)

    import random

    import torch

    model = build_model(args)
    eos = model.config.vocab_size - 1
    reqs = workload(args, model.config.vocab_size)
    lengths = sorted(r["length"] for r in reqs)
    print(f"arch={args.arch or 'demo tiny'} device={args.device} dtype={args.dtype} requests={len(reqs)} "
          f"(aime 2x{args.aime}, gpqa {args.gpqa}, x{args.seeds} seeds) max_new={args.max_new} answer lengths: "
          f"mean={sum(lengths) / len(lengths):.0f} median={lengths[len(lengths) // 2]} "
          f"at_cap={lengths.count(args.max_new)}; prompts x{prompt_scale(args):.4g}: mean "
          f"{sum(len(r['prompt']) for r in reqs) / len(reqs):.0f} tokens", flush=True)
    plan = lockstep_batches(reqs)
    timed = random.Random(args.seed).sample(plan, args.lockstep_batches) if args.lockstep_batches else plan
    rows = {}

    def report(name, r):  # each side as soon as it is measured (a run cut short keeps the first)
        r.update(tokens_per_s=r["generated_tokens"] / r["wall_s"], useful_fraction=r["generated_tokens"] / r["sequence_steps"],
                 mean_in_flight=r["sequence_steps"] / max(1, r["forward_calls"]))
        part = f" ({len(timed)} of {len(plan)} batches)" if name == "lockstep" and timed is not plan else ""
        print(f"{name:>8}: {r['jobs']} jobs{part}, {r['generated_tokens']} tokens in {r['wall_s']:.2f}s = "
              f"{r['tokens_per_s']:.1f} tokens/s; useful fraction {r['useful_fraction']:.3f}; "
              f"mean sequences in flight {r['mean_in_flight']:.1f}", flush=True)
        rows[name] = r

    if args.profile:
        return profile_cb(model, cb_jobs(reqs, args)[0], args)
    with torch.no_grad():
        report("lockstep", run_lockstep(model, timed, args, eos))
    report("cb", run_cb(model, cb_jobs(reqs, args), args))
    ratio = rows["cb"]["tokens_per_s"] / rows["lockstep"]["tokens_per_s"]
    print(f"cb / lockstep tokens/s: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows, "ratio": ratio}, indent=1))
    return rows


if __name__ == "__main__":
    main()
