#!/usr/bin/env python
"""Per-GPU memory plan of every training and evaluation job, checked before submission.

Predicted peak GiB per GPU of
  train full|lora  model states (DeepSpeed's own ZeRO estimators; LoRA: the estimator on the
                   trainable set + the frozen bf16 base; no DeepSpeed: 16 B/param fp32 AdamW)
                   + activations of one data.max_seq_len sequence (per-layer checkpointing)
                   + the loss (LM head + cross-entropy in train.loss_chunk-token chunks)
                   + DeepSpeed's communication buckets + CUDA_OVERHEAD_GIB;
  eval             bf16 weights + KV cache of eval.batch_size x (prompt + max_gen_toks) tokens
                   + generation transients, under the layout single | dp | tp | split.
Architectures: resources/models/<hub id, "/" -> "--">.json, read by elicit/plan/arch.py. DeepSpeed's estimators are read
from a cache (zero_estimates.py): plan time imports deepspeed only for new inputs.

Usage:  python PYTHONPATH=workflow/scripts python -m elicit.plan.memory_plan config/config.yaml [--gpu-mem-gb 80]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from elicit import REPO, backends
from elicit.plan import zero_estimates
from elicit.plan.arch import Arch, PlanError  # noqa: F401  (PlanError: the plan's error)

MODELS_DIR, DS_DIR = REPO / "resources" / "models", REPO / "workflow" / "deepspeed"
GIB = 2**30
# CUDA context + cuBLAS workspace (~1 GiB), NCCL buffers (~1 GiB), allocator slack: on every GPU.
CUDA_OVERHEAD_GIB = 2.5
DEMO_VOCAB = 1024  # make_demo.py tokenizer --vocab-size default: an upper bound of len(tok)


def arch_file(hub_id: str) -> Path:
    return MODELS_DIR / (hub_id.replace("/", "--") + ".json")


def load_arch(config: dict, size: str, role: str = "base") -> Arch:
    """models.<size>.arch.<role> file, else the demo spec, else resources/models/<hub id>.json,
    else a local model directory's config.json."""
    m = config["models"][size]
    if isinstance(m.get(role), Arch):  # a job's own architecture (job_config)
        return m[role]
    if path := (m.get("arch") or {}).get(role):
        return Arch.from_config(json.loads((REPO / path).read_text()))
    if (d := m.get("demo")) and d.get("arch"):  # a shipped architecture with random weights
        return Arch.from_config(json.loads((REPO / d["arch"]).read_text()))
    if d:  # as make_demo.py cmd_model builds it
        return Arch(d["hidden"], 4 * d["hidden"], d["layers"], d["heads"], max(1, d["heads"] // 2), DEMO_VOCAB, True)
    for f in (arch_file(m[role]), Path(m[role]) / "config.json"):
        if f.is_file():
            return Arch.from_config(json.loads(f.read_text()))
    raise PlanError(f"models.{size}.{role}: no architecture for {m[role]!r}: add "
                    f"{arch_file(m[role]).relative_to(REPO)} (its config.json) or set models.{size}.arch.{role}")


# ------------------------------------------------------------------------- training
def activation_bytes(a: Arch, seq: int, dtype_bytes: int = 2, checkpointing: bool = True,
                     recompute: int | None = None) -> int:
    """One sequence's forward + backward. Per layer the backward keeps: the norms' inputs and
    outputs, q/k after RoPE, v, the attention output (twice), the MLP's gate, silu, up and
    product (3h + 3q + 2kv + 4i; q = heads x head_dim, which is h for Qwen2 but not for Qwen3)
    plus the RMSNorms' fp32 copies when computing in 16 bit, and gradients in flight (2h + 2i).
    A recomputed (checkpointed) layer keeps only its input and is recomputed one at a time in the
    backward. `recompute`: how many layers are, the first ones (None: all of them with checkpointing,
    else none): the backward reaches them after the kept layers' activations are freed, so their
    recompute adds nothing to the peak while one kept layer is left."""
    b, h = dtype_bytes, a.hidden
    k = (a.layers if checkpointing else 0) if recompute is None else max(0, min(a.layers, recompute))
    norm32 = 4 * h if b < 4 else 0
    saved = b * (3 * h + 3 * a.q_dim + 2 * a.kv_dim + 4 * a.inter) + 2 * norm32
    in_flight = b * (2 * h + 2 * a.inter)
    final_norm = 2 * b * h + norm32
    layers = k * b * h + max(a.layers - k, 1 if k else 0) * saved
    return seq * (layers + in_flight + final_norm)


# Share of the GPU's memory the recompute plan fills at most (the allocator fragments the rest).
RECOMPUTE_HEADROOM = 0.9


def recompute_layers(a: Arch, seq: int, fixed_bytes: int, gpu_bytes: float, dtype_bytes: int = 2) -> int:
    """The fewest layers to recompute (0 .. a.layers) so that fixed_bytes (everything but the
    activations) + the activations of one `seq`-token sequence fit RECOMPUTE_HEADROOM of gpu_bytes;
    every layer when even that does not fit (check() then says so)."""
    budget = RECOMPUTE_HEADROOM * gpu_bytes - fixed_bytes
    for k in range(a.layers + 1):
        if activation_bytes(a, seq, dtype_bytes, recompute=k) <= budget:
            return k
    return a.layers


def loss_chunked_bytes(a: Arch, chunk: int, dtype_bytes: int = 2) -> int:
    """LM head + cross-entropy `chunk` tokens at a time, each chunk recomputed in the backward:
    its logits (dtype), their fp32 copy (16 bit only), log-softmax and two fp32 gradients."""
    return chunk * a.vocab * ((dtype_bytes if dtype_bytes < 4 else 0) + 3 * 4)


def loss_materialised_bytes(a: Arch, seq: int, dtype_bytes: int = 2) -> int:
    """train.py's token_loss_sum today: logits of the whole sequence, upcast to fp32, cross_entropy."""
    return loss_chunked_bytes(a, seq, dtype_bytes)


def zero_request(config: dict, size: str, mode: str, stage: str | None = "config") -> tuple[dict | None, int]:
    """(inputs of DeepSpeed's estimator, bytes outside it) for one training job's model states.
    LoRA: the estimator sees the trainable set; the frozen base is bf16 weights, replicated
    under ZeRO-2, partitioned under ZeRO-3, in CPU memory under zero3_offload."""
    a, t = load_arch(config, size), config["models"][size]["train"]
    gpus, nodes = max(1, t["gpus"]), t["nodes"]
    stage = t["deepspeed"] if stage == "config" else stage
    total, lora = a.params(), config["lora"]
    trainable = total if mode == "full" else a.lora_params(lora["rank"], lora["targets"])
    frozen = 0 if mode == "full" else total
    if not stage:  # fp32 weights, grads, AdamW m and v; DDP adds a gradient-bucket copy
        return None, (16 + (4 if gpus * nodes > 1 else 0)) * trainable + 4 * frozen
    req = {"stage": stage, "total_params": trainable, "largest_layer_params": a.largest_layer_params(),
           "gpus": gpus, "nodes": nodes}
    return req, {"zero2": 2 * frozen, "zero3": 2 * frozen // (gpus * nodes)}.get(stage, 0)


def ds_buffer_bytes(stage: str | None, trainable: int | None = None) -> int:
    """DeepSpeed's bf16 communication buckets from workflow/deepspeed/<stage>.json; with
    overlap_comm the reduce/allgather buckets take 4.5x their size (HF DeepSpeed docs). A bucket
    never holds more elements than there are trainable parameters (a rank-1 LoRA's are ~1M: on an
    H200 the plan said 8.2 GiB for a LoRA job that peaked at 4.5, bench/gpu_acceptance.sh)."""
    if not stage:
        return 0
    z = json.loads((DS_DIR / f"{stage}.json").read_text())["zero_optimization"]
    cap = (lambda n: min(n, trainable)) if trainable else (lambda n: n)
    buckets = cap(z.get("reduce_bucket_size", 5e8)) + cap(z.get("allgather_bucket_size", 0 if z["stage"] == 3 else 5e8))
    prefetch = cap(z.get("stage3_prefetch_bucket_size", 0))
    return int(2 * (buckets * (4.5 if z.get("overlap_comm") else 1) + prefetch))


def train_parts(config: dict, size: str, mode: str, stage: str | None = "config", cache=None,
                seq: int | None = None, gpu_mem_gb: float | None = None) -> dict[str, int]:
    """One training job's parts on one GPU at `seq` tokens (default data.max_seq_len). With
    train.gradient_checkpointing the job recomputes as many layers as gpu_mem_gb needs
    (planned_recompute; every layer where gpu_mem_gb is None), else none."""
    a, tr = load_arch(config, size), config["train"]
    req, outside = zero_request(config, size, mode, stage)
    seq, stage = seq or config["data"]["max_seq_len"], req and req["stage"]
    parts = {"model states": outside + (zero_estimates.estimates([req], cache)[0] if req else 0),
             "activations": 0, "loss": loss_chunked_bytes(a, min(seq, tr.get("loss_chunk", 512))),
             "deepspeed buckets": ds_buffer_bytes(stage, req and req["total_params"]),
             "overhead": int(CUDA_OVERHEAD_GIB * GIB)}
    k = a.layers if tr.get("gradient_checkpointing", False) else 0
    if k and gpu_mem_gb:
        k = recompute_layers(a, seq, sum(parts.values()), gpu_mem_gb * GIB)
    parts["activations"] = activation_bytes(a, seq, 2, recompute=k)
    return parts


def planned_recompute(config: dict, size: str, mode: str, gpu_mem_gb: float | None, seq: int | None = None,
                      cache=None) -> int:
    """How many of the model's layers a training job recomputes in its backward (see train_parts)."""
    if not config["train"].get("gradient_checkpointing", False):
        return 0
    a = load_arch(config, size)
    if not gpu_mem_gb:
        return a.layers
    parts = train_parts(config, size, mode, cache=cache, seq=seq, gpu_mem_gb=None)
    return recompute_layers(a, seq or config["data"]["max_seq_len"], sum(parts.values()) - parts["activations"],
                            gpu_mem_gb * GIB)


def job_config(a: Arch, seq: int, mode: str, stage: str, world: int, lora: dict | None, loss_chunk: int) -> dict:
    """The config of one training job as train_parts reads it, from what train.py knows (its model's
    architecture, its longest sequence, its DeepSpeed stage and world size): train.py plans its own
    recompute with it (size "job")."""
    return {"models": {"job": {"base": a, "train": {"gpus": world, "nodes": 1, "deepspeed": stage or None}}},
            "lora": lora or {"rank": 1, "targets": []}, "data": {"max_seq_len": seq},
            "train": {"loss_chunk": loss_chunk, "gradient_checkpointing": True}}


# ------------------------------------------------------------------------- evaluation
def eval_parts(a: Arch, batch: int, prompt: int, new: int, gpus: int = 1, layout: str = "single",
               dtype_bytes: int = 2) -> dict[str, int]:
    """One GPU of an evaluation job at its peak, the last decoding step: weights + the KV cache
    of prompt + new tokens + one layer's K copied one token longer (DynamicCache's cat) + fp32
    logits / scores / probabilities of one step. The prefill (a KV cache of the prompt only,
    hidden/MLP tensors, K and V repeated to every query head: a padded batch has a mask, so
    no GQA kernel) counts where it is the larger. Decoding packs GQA (transformers 5)."""
    b, h = dtype_bytes, a.hidden
    g = gpus if layout in ("tp", "split") else 1
    weights, kv = a.params() * b, batch * (prompt + new) * a.kv_bytes_per_token(b)
    cat, kv_prompt = batch * (prompt + new) * a.kv_dim * b, batch * prompt * a.kv_bytes_per_token(b)
    mlp = batch * prompt * b * 3 * a.inter
    if layout == "tp":  # heads, KV heads and the MLP sharded; the hidden size is not
        weights, kv, cat, kv_prompt, mlp = weights // g, kv // g, cat // g, kv_prompt // g, mlp // g
    elif layout == "split":  # whole layers per GPU; one embedding matrix (input or LM head) each
        here = math.ceil(a.layers / g)
        weights = here * a.layer_params() * b + a.vocab * h * b
        kv, kv_prompt = kv * here // a.layers, kv_prompt * here // a.layers
    prefill = kv_prompt + mlp + batch * prompt * b * 6 * h
    gen = max(cat, prefill - kv) + 3 * batch * a.vocab * 4
    return {"weights": weights, "kv cache": kv, "generation": gen, "overhead": int(CUDA_OVERHEAD_GIB * GIB)}


def prompt_tokens(config: dict, size: str) -> int:
    """Longest prompt of the evaluated tasks (cost.max_prompt_tokens; a task not listed there
    counts at the cap), capped so prompt + eval.max_gen_toks fits models.<size>.context."""
    cap = config["models"][size]["context"] - config["eval"]["max_gen_toks"]
    per_task = (config.get("cost") or {}).get("max_prompt_tokens") or {}
    return min(cap, max(per_task.get(t, cap) for t in config["eval"]["tasks"]))


def eval_batch(config: dict) -> int:
    bs = config["eval"]["batch_size"]
    return bs if isinstance(bs, int) else 1  # "auto": lm-eval picks what fits; plan the minimum


def eval_gpus(config: dict, size: str) -> int:
    e = config["models"][size]["eval"]
    return max(1, e["gpus"]) * e["nodes"]


def eval_plan(config: dict, size: str, layout: str, batch: int | None = None) -> dict[str, int]:
    """The worse of the base and skyline models (the finetunes share the base architecture)."""
    args = (eval_batch(config) if batch is None else batch, prompt_tokens(config, size),
            config["eval"]["max_gen_toks"], eval_gpus(config, size), layout)
    parts = [eval_parts(load_arch(config, size, role), *args) for role in ("base", "skyline")]
    return max(parts, key=lambda p: sum(p.values()))


def tp_divides(config: dict, size: str) -> bool:
    g, a = eval_gpus(config, size), load_arch(config, size)
    return a.heads % g == 0 and a.kv_heads % g == 0


LAYOUT_HEADROOM = 0.9


def eval_layout(config: dict, size: str, gpu_mem_gb: float | None) -> str:
    """models.<size>.eval.layout unless auto. auto: single on one GPU; hf-cb: dp; else dp if a replica
    fits 90 % of gpu_mem_gb, else tp, else split (the first that fits 90 %, else the first that
    fits at all); unknown memory:
    tp (split where tp cannot divide the heads). Nothing fits: the smallest, check() says so."""
    layout = config["models"][size]["eval"]["layout"]
    if layout != "auto":
        return layout
    if eval_gpus(config, size) <= 1:
        return "single"
    if backends.memory(config) == "paged":
        return "dp"  # continuous batching runs a replica per GPU (lm_backend_cb.py); check() says if it does not fit
    if backends.memory(config) == "slots":
        return slots_layout(config, size, gpu_mem_gb)
    options = ["dp", "tp", "split"] if tp_divides(config, size) else ["dp", "split"]
    if gpu_mem_gb is None:
        return options[1]
    gib = {lay: gib_of(eval_plan(config, size, lay)) for lay in options}
    # Prefer a layout that leaves LAYOUT_HEADROOM of the GPU free: a KV cache that grows every step
    # fragments the allocator (a dp replica of 14B at 76.7 of 80 GiB would be a gamble).
    roomy = [lay for lay in options if gib[lay] <= LAYOUT_HEADROOM * gpu_mem_gb]
    fits = [lay for lay in options if gib[lay] <= gpu_mem_gb]
    return (roomy or fits or [min(options, key=gib.get)])[0]


# Continuous batching (hf-cb) sizes its paged KV cache as this share of what the weights leave.
CB_MEMORY_FRACTION = 0.9
# Tokens one continuous-batching step computes at most on a GPU (lm_backend_cb.cb_config). Without
# flash-attn transformers keeps a [step tokens, cached tokens] attention mask in the model's dtype
# beside the cache (elicit/eval/cb_attention.py does not read it): 2 x this many bytes per cached
# token, planned whether or not flash-attn will be there.
CB_STEP_TOKENS = 2048


def sequences_in_flight(config: dict, size: str, gpu_mem_gb: float, layout: str | None = None) -> int:
    """How many sequences of prompt + eval.max_gen_toks tokens the KV-cache budget of one
    evaluation job holds at once (continuous batching, every sequence at its longest: a lower
    bound, short answers free their pages early): per GPU, gpu_mem_gb minus the weights and
    CUDA_OVERHEAD_GIB, times CB_MEMORY_FRACTION, over one sequence's KV cache and its fp32
    logits, and the attention mask's share (CB_STEP_TOKENS); dp: one replica per GPU, so the job
    holds gpus x that."""
    layout = layout or eval_layout(config, size, gpu_mem_gb)
    if backends.memory(config) == "slots":
        return slots_plan(config, size, gpu_mem_gb, layout)
    per_seq = eval_plan(config, size, layout, batch=1)
    fixed = per_seq["weights"] + per_seq["overhead"]
    tokens = prompt_tokens(config, size) + config["eval"]["max_gen_toks"]
    one = per_seq["kv cache"] + 3 * load_arch(config, size).vocab * 4 + tokens * CB_STEP_TOKENS * 2
    n = int((gpu_mem_gb * GIB - fixed) * CB_MEMORY_FRACTION // one)
    return max(0, n) * (eval_gpus(config, size) if layout == "dp" else 1)


# The slot engine (hf-slots, elicit/eval/slots.py) allocates S slots of the run's whole length up
# front: K/V of (longest prompt + max new tokens) each, plus per slot the sampler's fp32/int64
# [vocab] temporaries of one step (SLOT_VOCAB_BYTES per vocabulary entry, an upper bound of the
# uncompiled step; compiled, the sampler is fused). Budget: this share of what the weights leave.
SLOT_MEMORY_FRACTION = 0.9
SLOT_VOCAB_BYTES = 64
SLOTS_MAX = 128  # beyond this a decode step is compute-bound on a 1.5B already (lm_backend_slots)


def slots_fit(free_bytes: float, tokens: int, kv_bytes_per_token: int, vocab: int) -> int:
    """Slots of `tokens` tokens that `free_bytes` hold (free memory after the weights are loaded)."""
    per_slot = tokens * kv_bytes_per_token + vocab * SLOT_VOCAB_BYTES
    return max(0, int((free_bytes - CUDA_OVERHEAD_GIB * GIB) * SLOT_MEMORY_FRACTION // per_slot))


def slots_plan(config: dict, size: str, gpu_mem_gb: float, layout: str) -> int:
    """hf-slots: the slots of one evaluation job (slots_fit on what the weights leave of each GPU; tp:
    each GPU holds 1/g of the weights and of every slot's KV; dp: a replica per GPU), at most the
    engine's SLOTS_MAX; eval.batch_size when an integer. The largest prompt + eval.max_gen_toks per slot."""
    g = eval_gpus(config, size)
    tp = g if layout == "tp" else 1
    a, bs = load_arch(config, size), config["eval"]["batch_size"]
    weights = max(load_arch(config, size, r).params() for r in ("base", "skyline")) * 2 // tp
    tokens = prompt_tokens(config, size) + config["eval"]["max_gen_toks"]
    n = min(SLOTS_MAX, slots_fit(gpu_mem_gb * GIB - weights, tokens, a.kv_bytes_per_token(2) // tp, a.vocab))
    if isinstance(bs, int):
        n = bs if n >= bs else 0  # a fixed slot count fits, or the plan refuses it (check)
    return n * (g if layout == "dp" else 1)


def slots_layout(config: dict, size: str, gpu_mem_gb: float | None) -> str:
    """hf-slots over several GPUs: tensor parallel where it gives more tokens/s per GPU by the
    bandwidth model (decode_model: a step reads the weights and the slots' KV; tp splits both over
    the GPUs, so a large model's slots multiply), else a replica per GPU. Unknown memory: tp where
    the heads divide, as the other backends."""
    from elicit.plan import decode_model

    if not tp_divides(config, size):
        return "dp"
    if gpu_mem_gb is None:
        return "tp"
    g, a = eval_gpus(config, size), load_arch(config, size)
    context = prompt_tokens(config, size) + config["eval"]["max_gen_toks"] / 2  # a slot's mean cached tokens

    def per_gpu(layout: str) -> float:
        n = slots_plan(config, size, gpu_mem_gb, layout) // (g if layout == "dp" else 1)
        tp = g if layout == "tp" else 1
        comm = decode_model.tp_comm_s(a.layers, a.hidden, n, tp)
        return n and decode_model.planned_tokens_per_s_per_gpu(a.params() * 2, a.kv_bytes_per_token(2), n, context,
                                                               3.35, tp, comm)
    return max(("dp", "tp"), key=per_gpu)


# ------------------------------------------------------------------------- the plan and its check
def gib_of(parts: dict[str, int]) -> float:
    return sum(parts.values()) / GIB


def _jobs(config: dict):
    for size in config["sizes"]:
        m = config["models"][size]
        if m["train"]["gpus"] > 0:
            yield size, "full"
            yield size, "lora"


def prefetch(config: dict, cache=None) -> None:
    """Every estimator input the plan and its suggestions need, in one subprocess at most."""
    reqs = [zero_request(config, s, mode, st)[0] for s, mode in _jobs(config)
            for st in ("config", "zero3", "zero3_offload")]
    try:
        zero_estimates.estimates([r for r in reqs if r], cache)
    except zero_estimates.EstimatorError as e:
        raise PlanError(str(e)) from None


def table(config: dict, gpu_mem_gb: float | None = None, cache=None) -> list[dict]:
    """Per size: the predicted parts (bytes per GPU) of train full, train lora and eval (None:
    a CPU job), and how each runs ("<deepspeed> x<world>", "<layout> x<gpus>")."""
    prefetch(config, cache)
    rows = []
    for size in config["sizes"]:
        m, layout = config["models"][size], eval_layout(config, size, gpu_mem_gb)
        t, batch = m["train"], None
        if backends.memory(config) == "slots" and gpu_mem_gb and m["eval"]["gpus"]:
            # the slots a replica allocates up front (at least one: check() refuses none)
            batch = max(1, slots_plan(config, size, gpu_mem_gb, layout) // (eval_gpus(config, size) if layout == "dp"
                                                                            else 1))
        row = {"size": size, "eval": eval_plan(config, size, layout, batch) if m["eval"]["gpus"] else None,
               "eval how": f"{layout} x{eval_gpus(config, size)}"}
        for mode in ("full", "lora"):
            row[f"train {mode}"] = train_parts(config, size, mode, cache=cache) if t["gpus"] else None
            row[f"train {mode} how"] = f"{t.get('deepspeed') or 'ddp'} x{max(1, t['gpus']) * t.get('nodes', 1)}"
        rows.append(row)
    return rows


def _train_message(config, size, mode, gib, mem, cache) -> str:
    t = config["models"][size]["train"]
    alt = " / ".join(f"{st} ({gib_of(train_parts(config, size, mode, st, cache)):.1f} GiB)"
                     for st in ("zero3", "zero3_offload") if st != t.get("deepspeed"))
    return (f"models.{size}: train {mode} needs {gib:.1f} GiB per GPU ({t.get('deepspeed') or 'no DeepSpeed'}, "
            f"{t['gpus']} GPU(s) x {t.get('nodes', 1)} node(s)) > {mem:g} GiB available: use more GPUs or nodes "
            f"(models.{size}.train.gpus/nodes) or models.{size}.train.deepspeed: {alt}")


def _eval_message(config, size, layout, gib, mem) -> str:
    fits = [b for b in range(eval_batch(config) - 1, 0, -1) if gib_of(eval_plan(config, size, layout, b)) <= mem]
    fix = [f"eval.batch_size: {fits[0]} ({gib_of(eval_plan(config, size, layout, fits[0])):.1f} GiB)" if fits
           else "a smaller eval.batch_size does not suffice", f"more GPUs (models.{size}.eval.gpus)"]
    if layout != "tp" and eval_gpus(config, size) > 1 and tp_divides(config, size):
        tp = f"models.{size}.eval.layout: tp ({gib_of(eval_plan(config, size, 'tp')):.1f} GiB)"
        # the backends running tp whose memory this plan's figure is (sequences in batches)
        able = [b for b in backends.able(layout="tp") if backends.get(b).memory == "batches"]
        fix.append(tp if config["eval"].get("backend") in able else f"eval.backend: {' or '.join(able)} with {tp}")
    return (f"models.{size}: eval needs {gib:.1f} GiB per GPU (layout {layout}, {eval_gpus(config, size)} GPU(s), "
            f"batch {eval_batch(config)} x {prompt_tokens(config, size)} + {config['eval']['max_gen_toks']} tokens) "
            f"> {mem:g} GiB available: " + "; ".join(fix))


def _slots_message(config, size, layout, mem) -> str:
    bs, g = config["eval"]["batch_size"], eval_gpus(config, size)
    what = f"eval.batch_size: {bs} slots do" if isinstance(bs, int) else "not one slot does"
    fix = [f"models.{size}.eval.gpus > {g} with layout tp" if g == 1 or layout != "tp" else
           f"more GPUs (models.{size}.eval.gpus)", "a smaller eval.max_gen_toks"]
    if isinstance(bs, int):
        fix.insert(0, "eval.batch_size: auto (as many slots as fit)")
    return (f"models.{size}: hf-slots: {what} not fit {mem:g} GiB per GPU (layout {layout}, {g} GPU(s), "
            f"{prompt_tokens(config, size)} + {config['eval']['max_gen_toks']} tokens a slot): " + "; ".join(fix))


def check(config: dict, gpu_mem_gb: float, cache=None) -> list[str]:
    """One message per job kind whose predicted peak exceeds gpu_mem_gb GiB per GPU."""
    problems = []
    for row in table(config, gpu_mem_gb, cache):
        size = row["size"]
        for mode in ("full", "lora"):
            if row[f"train {mode}"] and gib_of(row[f"train {mode}"]) > gpu_mem_gb:
                problems.append(_train_message(config, size, mode, gib_of(row[f"train {mode}"]), gpu_mem_gb, cache))
        layout = row["eval how"].split()[0]
        if row["eval"] and layout == "tp" and not tp_divides(config, size):
            problems.append(f"models.{size}.eval.layout: tp needs the attention and KV heads divisible by "
                            f"{eval_gpus(config, size)} GPUs")
        elif row["eval"] and backends.memory(config) == "slots":
            if slots_plan(config, size, gpu_mem_gb, layout) < 1:
                problems.append(_slots_message(config, size, layout, gpu_mem_gb))
        elif row["eval"] and gib_of(row["eval"]) > gpu_mem_gb:
            problems.append(_eval_message(config, size, layout, gib_of(row["eval"]), gpu_mem_gb))
    return problems


def main(argv=None) -> None:
    """Every job's parts, then the check's messages."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--gpu-mem-gb", type=float, default=None, help="GiB per GPU: also check the plan")
    args = ap.parse_args(argv)
    import yaml

    from elicit.checks.config import check as check_config

    config = check_config(yaml.safe_load(Path(args.config).read_text()))
    for row in table(config, args.gpu_mem_gb):
        for kind in ("train full", "train lora", "eval"):
            if row[kind]:
                print(f"{row['size']:>5} {kind:<10} [{row[kind + ' how']}] {gib_of(row[kind]):5.1f} GiB = "
                      + " + ".join(f"{k} {v / GIB:.1f}" for k, v in row[kind].items()))
    for msg in check(config, args.gpu_mem_gb) if args.gpu_mem_gb else []:
        print(msg)


if __name__ == "__main__":
    main()
