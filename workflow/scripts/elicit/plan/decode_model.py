"""The bandwidth model of one decode step: what a step must read from GPU memory, over the GPU's
memory bandwidth. A decode step of S sequences reads every weight once and every sequence's
cached K/V once; at these batch sizes that traffic, not arithmetic, sets its time.

  step_bytes   weights + S x (cached tokens read) x KV bytes per token, per GPU (tensor parallel
               over g GPUs: each reads 1/g of both)
  step_s       step_bytes / bandwidth (the ideal); the plan adds the fraction of peak a decode step
               reaches (PLAN_EFFICIENCY) and a fixed cost per step (PLAN_STEP_S)
Used by bench/gpu_eval_acceptance.py (the goal: measured <= 1.3 x ideal + 1 ms) and to plan sizes
that no GPU has measured (resources/throughput.yaml says which entries come from here).
"""
from __future__ import annotations

# Tensor parallel: two all-reduces of the [slots, hidden] bf16 activations per layer (after o_proj and
# down_proj). Small messages inside a captured graph cost about a fixed latency each on NVLink, plus
# the ring's 2 (g - 1) / g of the message over the link: both planned, not measured (no multi-GPU run yet).
ALLREDUCE_LATENCY_S, NVLINK_GBPS = 20e-6, 300.0
# HBM bandwidth (TB/s) by a substring of torch.cuda.get_device_name(); first match wins.
BANDWIDTH_TBPS = (("H100 PCIe", 2.0), ("H100", 3.35), ("H200", 4.8), ("A100", 2.0), ("L40S", 0.864))
PLAN_EFFICIENCY, PLAN_STEP_S = 0.75, 1e-3


def bandwidth_tbps(device_name: str) -> float | None:
    return next((bw for key, bw in BANDWIDTH_TBPS if key in device_name), None)


def step_bytes(weight_bytes: int, kv_bytes_per_token: int, slots: int, tokens_read: float, tp: int = 1) -> float:
    """Bytes one GPU reads in one decode step (tokens_read: cached tokens per sequence the attention reads)."""
    return (weight_bytes + slots * tokens_read * kv_bytes_per_token) / tp


def step_s(bytes_: float, tbps: float, efficiency: float = 1.0, fixed_s: float = 0.0) -> float:
    return bytes_ / (tbps * 1e12 * efficiency) + fixed_s


def tp_comm_s(layers: int, hidden: int, slots: int, tp: int) -> float:
    """Seconds of all-reduce per decode step over tp GPUs (0 on one)."""
    if tp <= 1:
        return 0.0
    msg = slots * hidden * 2
    return 2 * layers * (ALLREDUCE_LATENCY_S + 2 * (tp - 1) / tp * msg / (NVLINK_GBPS * 1e9))


def planned_tokens_per_s_per_gpu(weight_bytes: int, kv_bytes_per_token: int, slots: int, mean_context: float,
                                 tbps: float, tp: int = 1, comm_s: float = 0.0) -> float:
    """Generated tokens/s per GPU of S slots at a mean cached context, at the plan's efficiency
    (comm_s: tp_comm_s of the model)."""
    t = step_s(step_bytes(weight_bytes, kv_bytes_per_token, slots, mean_context, tp), tbps, PLAN_EFFICIENCY,
               PLAN_STEP_S) + comm_s
    return slots / t / tp
