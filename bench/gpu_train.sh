#!/usr/bin/env bash
# Training throughput on one GPU: tokens/s and MFU of one training step at 16k tokens for
# random-init Qwen2.5-1.5B and Qwen2.5-7B (architectures hard-coded: no hub access needed).
#
# What a step is: train.py's padding-free micro-batch (ONE sequence of $SEQ tokens, no pad),
# bf16 weights, gradient checkpointing, SDPA attention (flash kernel on H100), loss in fp32
# over the full vocabulary, backward; for 1.5B also the AdamW step (7B's AdamW state does not
# fit one 80 GB GPU next to the weights: at paper scale ZeRO shards it over 8 GPUs, so the
# 7B number is forward+backward only, which is >95% of the step's time).
# MFU counts model FLOPs only (6 x matmul params x tokens + causal attention 6 x L x T^2 x d),
# not the recomputation of gradient checkpointing; peak = $PEAK_TFLOPS (H100/H200 SXM dense
# bf16: 989).
#
# Usage (repo root, venv with the pinned CUDA torch + transformers):
#   bash bench/gpu_train.sh                  # both sizes, ~3-5 min on an H100 incl. start-up
#   SIZES=1.5B SEQ=32768 bash bench/gpu_train.sh
# Put the measured tokens/s into config/config.yaml cost.train_tokens_per_gpu_s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export SIZES=${SIZES:-"1.5B 7B"} SEQ=${SEQ:-16384} STEPS=${STEPS:-3} PEAK_TFLOPS=${PEAK_TFLOPS:-989}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 570 "$PY" - <<'PY'
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
