#!/usr/bin/env python
"""What one decode step costs the host: hf-cb against hf-slots, side by side, on CPU.

Model: a random-init Qwen2 with the 1.5B's 28 layers at tiny width (hidden 64, 4 heads, 1 KV
head; the op counts do not depend on the width), fp32. Answers are forced to run (no EOS), every
slot busy. Per backend and sequences in flight N (1, 8, 64), over a window of steady decode steps:

  host_ops      aten ops dispatched per step OUTSIDE the captured call (TorchDispatchMode). hf-slots:
                the step (`SlotDecoder.step_fn`) is one CUDA graph replay on a GPU, so only what
                runs around it counts; hf-cb captures nothing (transformers keeps CUDA graphs
                off without flash-attn), so every op of its step counts.
  syncs         device->host reads per step: Tensor.tolist / .item / aten._local_scalar_dense,
                data-dependent shapes (nonzero, masked_select), stream/event/device synchronize.
  h2d           torch.tensor(...) built from host data per step (a blocking copy on a GPU).
  graph_breaks  torch._dynamo.explain of the step's model call (fullgraph=True needs 0).
  host_ms       at N=64 with --context cached tokens per sequence: the host's milliseconds per step
                outside the captured call (scheduling, bookkeeping, copies; the compute does not
                count: on a GPU it runs on the device), the median step. hf-cb: the step's wall time less its
                model forward (a lower bound of its host time: the forward's eager dispatch
                is host work on a GPU too).

  python bench/step_ops.py                 # table (~2 min on 2 cores)
  python bench/step_ops.py --json          # {backend: {in_flight: {host_ops, syncs, graph_breaks, host_ms}}}
Goal for hf-slots: 0 graph breaks, <= 50 host ops and <= 1 sync per step at every N, and
<= 1 ms of host time at 64 x 8k.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import threading
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

LAYERS, HIDDEN = 28, 64
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "item"}


class Counter(TorchDispatchMode):
    """aten ops and device->host reads while `on` (per thread: the mode is entered where it counts)."""

    def __init__(self):
        super().__init__()
        self.ops = self.syncs = self.h2d = 0
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            self.ops += 1
            if func.__name__.split(".")[0] in SYNC_OPS:
                self.syncs += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def host_reads(counter_of):
    """Count Tensor.tolist/.item and torch.tensor(...) of the current thread's counter."""
    patched = {}

    def wrap(owner, name, attr):
        orig = getattr(owner, name)
        patched[(owner, name)] = orig

        def f(*a, **k):
            c = counter_of()
            if c is not None and not c.paused:
                setattr(c, attr, getattr(c, attr) + 1)
            return orig(*a, **k)
        setattr(owner, name, f)

    wrap(torch.Tensor, "tolist", "syncs")
    wrap(torch, "tensor", "h2d")
    try:
        yield
    finally:
        for (owner, name), orig in patched.items():
            setattr(owner, name, orig)


def model(layers: int = LAYERS):
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(vocab_size=1024, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=65536)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


def requests(n: int, prompt: int):
    g = torch.Generator().manual_seed(n)
    return [(torch.randint(10, 1000, (prompt,), generator=g).tolist(), 1000 + i) for i in range(n)]


# ------------------------------------------------------------------------------------------ hf-slots
def slots_counts(m, n: int, steps: int = 12, context: int | None = None) -> dict:
    """Counts per steady decode step of the slot engine (window: steps 4..steps)."""
    from elicit.eval.slots import Sampling, SlotDecoder

    length = (context or 64) + steps + 64
    dec = SlotDecoder(m, n, length, Sampling(temperature=0.6))
    inner, counter, window = dec.step_fn, Counter(), {"i": 0, "on": False, "end": None, "host": []}

    def step():
        window["i"] += 1
        t = time.perf_counter()
        if window["on"]:  # the host's time since the previous step's call returned
            window["host"].append(t - window["end"])
        if window["i"] == 4:  # steady: every slot decoding
            window["on"] = True
            counter.__enter__()
        counter.paused = True
        inner()
        counter.paused = False
        window["end"] = time.perf_counter()

    dec.step_fn = step
    if context:  # 8k cached tokens per slot: set the positions; the cache's content does not matter
        orig_prefill = dec.prefill

        def prefill(slot, ids, seed):
            tok = orig_prefill(slot, ids, seed)
            dec.pos[slot] = context
            return tok
        dec.prefill = prefill
    with torch.no_grad(), host_reads(lambda: counter if window["on"] else None):
        dec.generate(requests(n, 16), lambda r, t: None, [], steps)
        if window["on"]:
            counter.__exit__(None, None, None)
    k = window["i"] - 3
    # the median step: a 2-core machine shared with other work preempts some steps at random
    return {"host_ops": round(counter.ops / k, 1), "syncs": round(counter.syncs / k, 2), "h2d": round(counter.h2d / k, 2),
            "host_ms": round(statistics.median(window["host"]) * 1e3, 3)}


def slots_breaks(m) -> int:
    from elicit.eval.slots import Sampling, SlotDecoder

    dec = SlotDecoder(m, 2, 64, Sampling(temperature=0.6))
    with torch.no_grad():
        dec.prefill(0, [5, 6, 7], 1)
        return int(torch._dynamo.explain(dec._step)().graph_break_count)


# ------------------------------------------------------------------------------------------ hf-cb
def cb_counts(m, n: int, steps: int = 12, context: int | None = None, breaks: bool = False) -> dict:
    """Counts per steady decode step of transformers continuous batching as hf-cb runs it."""
    from transformers.generation.continuous_batching import continuous_api as api

    from elicit.eval import cb_attention
    from elicit.eval.lm_backend_cb import cb_config, generation_config_for, kv_bytes_per_token, sampler_processor_list

    prompt = context or 16
    reqs = requests(n, prompt)
    gcfg = generation_config_for(m, {"do_sample": False, "max_gen_toks": steps + 8}, [], 0)
    cfg = cb_config([r for r, _ in reqs], gcfg.max_new_tokens, m.device, slots=n,
                    kv_bytes=kv_bytes_per_token(m))
    if context:
        cfg.max_batch_tokens = 2048
    mgr = m.init_continuous_batching(generation_config=gcfg, continuous_batching_config=cfg)
    mgr.logit_processor = sampler_processor_list(0.6, 0, 1.0, 0.0)
    rows, local = [], threading.local()
    orig_body, orig_gen = api.ContinuousBatchingManager._generation_loop_body, api.ContinuousBatchingManager._generation_step

    def body(self, bp, bootstrapping):
        c = Counter()
        local.c, local.fwd = c, 0.0
        t = time.perf_counter()
        with c:
            out = orig_body(self, bp, bootstrapping)
        if local.fwd:  # a step ran (not an idle wait)
            rows.append((c.ops, c.syncs, c.h2d, time.perf_counter() - t, local.fwd))
        local.c = None
        return out

    found = {}

    def gen_step(self):
        t = time.perf_counter()
        if breaks and "breaks" not in found:
            from torch.utils._python_dispatch import _disable_current_modes

            with _disable_current_modes():  # dynamo does not trace under a dispatch mode
                ex = torch._dynamo.explain(self.batch_processor._generation_step)(self.model)
            found["breaks"] = int(ex.graph_break_count)
        else:
            orig_gen(self)
        local.fwd += time.perf_counter() - t

    api.ContinuousBatchingManager._generation_loop_body, api.ContinuousBatchingManager._generation_step = body, gen_step
    try:
        with cb_attention.installed(), host_reads(lambda: getattr(local, "c", None)), torch.no_grad():
            mgr.start()
            for i, (ids, seed) in enumerate(reqs):
                mgr.add_request(ids, request_id=f"r{i}", max_new_tokens=steps + 8, sample_seed=seed)
            left = n
            while left:
                res = mgr.get_result(timeout=5)
                if res is not None and res.is_finished():
                    left -= 1
            mgr.stop(block=True, timeout=5)
            mgr.destroy()
    finally:
        api.ContinuousBatchingManager._generation_loop_body, api.ContinuousBatchingManager._generation_step = \
            orig_body, orig_gen
    dec = rows[-(steps + 7):][2:-2]  # steady decode steps (every request decoding): the last max_new - 1, trimmed
    med = lambda i: statistics.median(r[i] for r in dec)  # noqa: E731
    return {"host_ops": med(0), "syncs": med(1), "h2d": med(2), "host_ms": round(med(3) * 1e3 - med(4) * 1e3, 3),
            "graph_breaks": found.get("breaks"), "step_ms": round(med(3) * 1e3, 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--context", type=int, default=8192, help="cached tokens per sequence for host_ms at the largest N")
    ap.add_argument("--backends", nargs="+", default=["hf-cb", "hf-slots"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    m, out = model(), {}
    big = max(args.in_flight)
    if "hf-slots" in args.backends:
        breaks = slots_breaks(m)
        out["hf-slots"] = {}
        for n in args.in_flight:
            row = {**slots_counts(m, n), "graph_breaks": breaks}
            if n == big:
                row["host_ms"] = slots_counts(m, n, context=args.context)["host_ms"]
            out["hf-slots"][n] = row
    if "hf-cb" in args.backends:
        out["hf-cb"] = {}
        for n in args.in_flight:
            row = cb_counts(m, n, breaks=n == args.in_flight[0])
            if n == big:  # the 8k context at 2 layers: the host work grows with cached tokens, not layers
                row["host_ms"] = cb_counts(model(2), n, context=args.context)["host_ms"]
            row["graph_breaks"] = out["hf-cb"].get(args.in_flight[0], row)["graph_breaks"]
            out["hf-cb"][n] = row
    if args.json:
        print(json.dumps(out))
        return out
    print(f"one decode step, {LAYERS} layers; host_ms at N={big} with {args.context} cached tokens per sequence")
    print(f"{'backend':9} {'N':>4} {'host ops':>9} {'syncs':>6} {'h2d':>5} {'breaks':>7} {'host ms':>9}")
    for b, rows in out.items():
        for n, r in rows.items():
            print(f"{b:9} {n:>4} {r['host_ops']:>9} {r['syncs']:>6} {r['h2d']:>5} {str(r['graph_breaks']):>7} "
                  f"{r['host_ms'] if n == big else '':>9}")
    s = out.get("hf-slots")
    if s:
        ok = all(r["graph_breaks"] == 0 and r["host_ops"] <= 50 and r["syncs"] <= 1 for r in s.values()) \
            and s[big]["host_ms"] <= 1.0
        print(f"hf-slots goal (0 breaks, <= 50 ops, <= 1 sync, <= 1 ms at {big} x {args.context}): "
              f"{'PASS' if ok else 'FAIL'}")
    return out


if __name__ == "__main__":
    main()
