"""Attention for continuous batching without flash-attn: each sequence attends to its own keys only.

transformers' continuous batching packs every sequence of a step into ONE row: the queries of all
sequences, the keys and values of all their caches concatenated, and (for SDPA) a dense
block-diagonal mask. One SDPA call then scores every query against every sequence's keys:
N sequences in flight of mean length L cost N x (N x L) scores per layer and step instead of
N x L, and the GQA keys are repeated to every query head first. With flash-attn installed,
transformers uses its varlen kernels and none of this applies; without it (no wheel for the
cluster's CUDA, no hub for `kernels`) the cost grows with the square of the sequences in flight,
the very number the KV-cache budget sets (bench/cb_attention.py measures it).

`installed()` swaps the "sdpa" attention function for `varlen_sdpa` while a continuous-batching
job runs. It reads the step's sequence boundaries (cu_seq_lens_q / cu_seq_lens_k, copied to the
host once per step, not per layer) and computes:
  - decoding sequences (one query each) batched: keys gathered per sequence, padded to the
    longest of a chunk (chunks sorted by length, sized to a memory budget), the query heads of
    a KV head packed as its query rows (no repeated keys), a key-padding mask;
  - prefill chunks (several queries) one sequence at a time, causal from the bottom right (a
    chunk after earlier chunks of the same prompt sees them all).
Any other call (no sequence boundaries, a sliding window, a block table) goes to the original
function. The result equals the masked SDPA up to float rounding (tests/test_cb_attention.py
compares them on steps captured from a real continuous-batching run).
"""
from __future__ import annotations

import contextlib

BUDGET_BYTES = 256 * 2**20  # gathered K and V of one decode chunk
stats = {"varlen_calls": 0, "fallback_calls": 0}


class _StepPlan:
    """Host-side lengths of one step, computed once (first layer) and reused by the others.

    The boundaries tensor of a step is one object passed to every layer; a new step brings a new
    object, and an in-place write bumps its version: both are checked, so a plan is never stale."""

    def __init__(self):
        self.key = None
        self.plan = None

    def get(self, cu_q, cu_k, device):
        k = self.key
        if k is None or not (k[0] is cu_q and k[1] == cu_q._version and k[2] is cu_k and k[3] == cu_k._version):
            self.key, self.plan = (cu_q, cu_q._version, cu_k, cu_k._version), _plan(cu_q, cu_k, device)
        return self.plan


def _plan(cu_q, cu_k, device):
    import torch

    bounds = torch.stack([cu_q, cu_k.to(cu_q.dtype)]).tolist()  # the one device-to-host copy of the step
    q0, k0 = bounds[0][:-1], bounds[1][:-1]
    lq = [b - a for a, b in zip(bounds[0], bounds[0][1:])]
    lk = [b - a for a, b in zip(bounds[1], bounds[1][1:])]
    decode = sorted((n for n in range(len(lq)) if lq[n] == 1), key=lambda n: lk[n])
    prefill = [(q0[n], lq[n], k0[n], lk[n]) for n in range(len(lq)) if lq[n] > 1]
    return {"decode": decode, "q0": q0, "k0": k0, "lk": lk, "prefill": prefill, "chunks": None, "device": device}


def _decode_chunks(plan, kv_heads: int, head_dim: int, itemsize: int):
    """[(query positions, key index [c, Lmax], key-valid mask [c, Lmax])] for the decoding sequences."""
    import torch

    if plan["chunks"] is not None:
        return plan["chunks"]
    dev, lk, out, seqs = plan["device"], plan["lk"], [], plan["decode"]
    lo = 0
    while lo < len(seqs):
        hi = lo + 1  # sorted by length: the chunk's longest is its last
        while hi < len(seqs) and (hi + 1 - lo) * lk[seqs[hi]] * kv_heads * head_dim * itemsize * 2 <= BUDGET_BYTES:
            hi += 1
        part = seqs[lo:hi]
        k0 = torch.tensor([plan["k0"][n] for n in part], device=dev)
        lens = torch.tensor([lk[n] for n in part], device=dev)
        cols = torch.arange(lk[part[-1]], device=dev)
        idx = k0[:, None] + torch.minimum(cols[None, :], lens[:, None] - 1)  # padding repeats the last key
        out.append((torch.tensor([plan["q0"][n] for n in part], device=dev), idx, cols[None, :] < lens[:, None]))
        lo = hi
    plan["chunks"] = out
    return out


def varlen_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, *, cu_seq_lens_q,
                cu_seq_lens_k, plan_cache, **_):
    """query [1, H, Tq, D], key/value [1, KV, Tk, D] (every sequence's cache, concatenated) -> [1, Tq, H, D]."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    _, heads, tq, dim = query.shape
    kv = key.shape[1]
    group = heads // kv
    plan = plan_cache.get(cu_seq_lens_q, cu_seq_lens_k, query.device)
    q, k, v = query[0], key[0], value[0]  # [H, Tq, D], [KV, Tk, D]
    out = torch.zeros(tq, heads, dim, dtype=query.dtype, device=query.device)
    for qpos, kidx, valid in _decode_chunks(plan, kv, dim, key.element_size()):
        c, width = kidx.shape
        qc = q.index_select(1, qpos).view(kv, group, c, dim).permute(2, 0, 1, 3)  # [c, KV, G, D]
        kc = k.index_select(1, kidx.reshape(-1)).view(kv, c, width, dim).transpose(0, 1)  # [c, KV, L, D]
        vc = v.index_select(1, kidx.reshape(-1)).view(kv, c, width, dim).transpose(0, 1)
        o = sdpa(qc, kc, vc, attn_mask=valid[:, None, None, :], dropout_p=dropout, scale=scaling)
        out.index_copy_(0, qpos, o.reshape(c, heads, dim))
    for q0, lq, k0, lk in plan["prefill"]:
        qs = q[:, q0:q0 + lq].reshape(kv, group * lq, dim)[None]  # query heads of a KV head as its rows
        ks, vs = k[None, :, k0:k0 + lk], v[None, :, k0:k0 + lk]
        rows = torch.arange(lq, device=q.device).repeat(group)[:, None] + (lk - lq)
        mask = torch.arange(lk, device=q.device)[None, :] <= rows  # causal, aligned bottom right
        o = sdpa(qs, ks, vs, attn_mask=mask, dropout_p=dropout, scale=scaling)
        out[q0:q0 + lq] = o[0].reshape(heads, lq, dim).transpose(0, 1)
    return out[None], None


@contextlib.contextmanager
def installed():
    """The "sdpa" attention function routes continuous-batching calls to varlen_sdpa while inside."""
    from transformers.modeling_utils import AttentionInterface

    mapping = AttentionInterface._global_mapping
    original = mapping["sdpa"]
    plan_cache = _StepPlan()

    def dispatch(module, query, key, value, attention_mask, **kwargs):
        paged = "cu_seq_lens_q" in kwargs and "cu_seq_lens_k" in kwargs and query.shape[0] == 1
        if paged and kwargs.get("sliding_window") is None and kwargs.get("block_table") is None \
                and not hasattr(kwargs["cu_seq_lens_k"], "keys"):
            stats["varlen_calls"] += 1
            return varlen_sdpa(module, query, key, value, attention_mask, plan_cache=plan_cache, **kwargs)
        stats["fallback_calls"] += 1
        return original(module, query, key, value, attention_mask, **kwargs)

    mapping["sdpa"] = dispatch
    try:
        yield stats
    finally:
        mapping["sdpa"] = original
