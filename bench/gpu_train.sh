#!/usr/bin/env bash
# Training on one GPU, two parts (PARTS, default both; at most 330 + 240 s, under 10 min):
#
# throughput: tokens/s and MFU of one training step at $SEQ tokens for random-init
# Qwen2.5-1.5B and Qwen2.5-7B (architectures hard-coded: no hub access needed).
# What a step is: train.py's padding-free micro-batch (ONE sequence of $SEQ tokens, no pad),
# bf16 weights, gradient checkpointing, SDPA attention (flash kernel on H100), loss in fp32
# over the full vocabulary, backward; for 1.5B also the AdamW step (7B's AdamW state does not
# fit one 80 GB GPU next to the weights: at paper scale ZeRO shards it over 8 GPUs, so the
# 7B number is forward+backward only, which is >95% of the step's time).
# MFU counts model FLOPs only (6 x matmul params x tokens + causal attention 6 x L x T^2 x d),
# not the recomputation of gradient checkpointing; peak = $PEAK_TFLOPS (H100/H200 SXM dense
# bf16: 989).
#
# memory: the memory plan (workflow/scripts/elicit/plan/memory_plan.py) against the GPU. A random-init
# Qwen2.5-7B (resources/models/Qwen--Qwen2.5-7B-Instruct.json), bf16, gradient checkpointing,
# one forward + backward of ONE sequence of $SEQ_MEM tokens (26,969: s1K-1.1's longest) with
# the loss in $LOSS_CHUNK-token chunks (train.loss_chunk), then with the materialised loss
# (train.py's token_loss_sum today; needs ~100 GiB: an OOM on an 80 GB card is reported, not
# fatal). Prints torch.cuda.max_memory_allocated beside the plan's prediction for exactly this
# step: bf16 weights + bf16 gradients (2 + 2 B/param; the AdamW state is DeepSpeed's to shard,
# see its estimator) + activation_bytes + loss_chunked_bytes / loss_materialised_bytes. The
# allocator's figure has no CUDA context, so CUDA_OVERHEAD_GIB is not part of it. Then the
# plan's per-GPU figure for the paper's 7B job (ZeRO-2 x 8 GPUs, data.max_seq_len tokens).
#
# Usage (repo root, venv with the pinned CUDA torch + transformers):
#   bash bench/gpu_train.sh                  # both parts
#   PARTS=memory bash bench/gpu_train.sh     # the memory check alone (~2-3 min)
#   SIZES=1.5B SEQ=32768 PARTS=throughput bash bench/gpu_train.sh
# Put the measured tokens/s into config/config.yaml cost.train_tokens_per_gpu_s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export SIZES=${SIZES:-"1.5B 7B"} SEQ=${SEQ:-16384} STEPS=${STEPS:-3} PEAK_TFLOPS=${PEAK_TFLOPS:-989}
export SEQ_MEM=${SEQ_MEM:-26969} LOSS_CHUNK=${LOSS_CHUNK:-512} PARTS=${PARTS:-"throughput memory"}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [[ " $PARTS " == *" throughput "* ]]; then
timeout 330 "$PY" - <<'PY'
import os, time
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

assert torch.cuda.is_available(), "needs a CUDA GPU"
ARCH = {  # Qwen2.5-*-Instruct config.json
    "1.5B": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "7B": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
}
SEQ, STEPS, PEAK = int(os.environ["SEQ"]), int(os.environ["STEPS"]), float(os.environ["PEAK_TFLOPS"]) * 1e12
dev = torch.device("cuda")
print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  seq {SEQ}  steps {STEPS}  peak {PEAK/1e12:.0f} TFLOPS")
print(f"{'size':<6}{'params':>10}{'step':>14}{'s/step':>9}{'tokens/s':>11}{'TFLOPS':>9}{'MFU':>8}{'peak GiB':>10}")
for size in os.environ["SIZES"].split():
    cfg = Qwen2Config(**ARCH[size], max_position_embeddings=32768, rope_theta=1e6,
                      attn_implementation="sdpa", use_cache=False)
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    emb = model.model.embed_tokens.weight.numel()
    matmul = n_params - emb + (emb if cfg.tie_word_embeddings else 0)  # lm_head is a matmul
    with_opt = size == "1.5B"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True) if with_opt else None
    ids = torch.randint(0, cfg.vocab_size, (1, SEQ), device=dev)

    def step():
        logits = model(input_ids=ids).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
        loss.backward()
        del logits, loss
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: kernels, allocator, optimizer state
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / STEPS
    flops = 6 * matmul * SEQ + 6 * cfg.num_hidden_layers * SEQ * SEQ * cfg.hidden_size
    print(f"{size:<6}{n_params/1e9:>9.2f}B{'fwd+bwd+adam' if with_opt else 'fwd+bwd':>14}"
          f"{dt:>9.2f}{SEQ/dt:>11.0f}{flops/dt/1e12:>9.0f}{flops/dt/PEAK:>8.1%}"
          f"{torch.cuda.max_memory_allocated()/2**30:>10.1f}", flush=True)
    del model, opt
    torch.cuda.empty_cache()
PY
fi

if [[ " $PARTS " == *" memory "* ]]; then
timeout 240 "$PY" - <<'PY'
import json, os, sys, time
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM, Qwen2Config

from elicit.plan import memory_plan as mp  # the project installed (make venv)

assert torch.cuda.is_available(), "needs a CUDA GPU"
SEQ, CHUNK, GIB = int(os.environ["SEQ_MEM"]), int(os.environ["LOSS_CHUNK"]), 2**30
fields = json.loads(mp.arch_file("Qwen/Qwen2.5-7B-Instruct").read_text())
arch = mp.Arch.from_config(fields)
keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "vocab_size", "tie_word_embeddings", "max_position_embeddings", "rope_theta", "rms_norm_eps")
cfg = Qwen2Config(**{k: fields[k] for k in keys}, attn_implementation="sdpa", use_cache=False)
dev = torch.device("cuda")
torch.manual_seed(0)
with dev:
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
model.gradient_checkpointing_enable()
model.train()
n_params = sum(p.numel() for p in model.parameters())
assert n_params == arch.params(), (n_params, arch.params())
total_gib = torch.cuda.get_device_properties(dev).total_memory / GIB


def step(loss_kind, seq):
    ids = torch.randint(0, cfg.vocab_size, (1, seq), device=dev)
    if loss_kind == "materialised":  # train.py's token_loss_sum
        logits = model(input_ids=ids).logits[:, :-1].float()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum")
        del logits
    else:  # LM head + cross-entropy CHUNK tokens at a time, each chunk recomputed in the backward
        hidden, labels = model.model(input_ids=ids).last_hidden_state[0, :-1], ids[0, 1:]

        def chunk_loss(h, y):
            return F.cross_entropy(model.lm_head(h).float(), y, reduction="sum")

        loss = sum(checkpoint(chunk_loss, hidden[s:s + CHUNK], labels[s:s + CHUNK], use_reentrant=False)
                   for s in range(0, seq - 1, CHUNK))
        del hidden
    loss.backward()
    model.zero_grad(set_to_none=False)  # keep the gradients allocated: they are part of the peak


print(f"{torch.cuda.get_device_name()} ({total_gib:.1f} GiB)  torch {torch.__version__}  Qwen2.5-7B random init "
      f"{n_params / 1e9:.2f}B  bf16  gradient checkpointing  one sequence of {SEQ} tokens")
step("chunked", 1024)  # warm-up: kernels, cuBLAS workspace, and the gradients get allocated
print(f"{'loss':<14}{'weights':>9}{'grads':>8}{'activ.':>8}{'loss':>8}{'predicted':>11}{'measured':>10}{'ratio':>7}"
      f"{'s':>6}   GiB: torch.cuda.max_memory_allocated vs memory_plan")
for kind in ("chunked", "materialised"):
    loss_b = (mp.loss_chunked_bytes(arch, CHUNK) if kind == "chunked" else mp.loss_materialised_bytes(arch, SEQ))
    parts = [2 * n_params, 2 * n_params, mp.activation_bytes(arch, SEQ, 2, True), loss_b]
    want = sum(parts) / GIB
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        step(kind, SEQ)
        torch.cuda.synchronize()
        got = torch.cuda.max_memory_allocated() / GIB
        measured = f"{got:>10.1f}{got / want:>7.2f}"
    except torch.OutOfMemoryError:
        measured = f"{'OOM':>10}{'':>7}"
        model.zero_grad(set_to_none=False)
    print(f"{kind + (f' ({CHUNK})' if kind == 'chunked' else ''):<14}"
          + "".join(f"{b / GIB:>{w}.1f}" for b, w in zip(parts, (9, 8, 8, 8)))
          + f"{want:>11.1f}{measured}{time.perf_counter() - t0:>6.1f}", flush=True)

import yaml  # noqa: E402

paper = yaml.safe_load(open("config/config.yaml"))
try:  # DeepSpeed's estimator: a subprocess imports deepspeed (cached under .snakemake/)
    parts = mp.train_parts(paper, "7B", "full")
    print(f"paper's 7B full-finetune job (ZeRO-2 x {paper['models']['7B']['train']['gpus']} GPUs, "
          f"{paper['data']['max_seq_len']} tokens): {mp.gib_of(parts):.1f} GiB per GPU predicted = "
          + " + ".join(f"{k} {v / GIB:.1f}" for k, v in parts.items()))
except (mp.PlanError, mp.zero_estimates.EstimatorError) as e:
    print(f"(no DeepSpeed here for the paper-scale figure: {str(e)[:200]})")
PY
fi
