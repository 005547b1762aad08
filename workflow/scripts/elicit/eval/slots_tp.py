"""Tensor parallel for the slot engine (gpt-fast's layout), on a transformers decoder in place.

Rank r of W keeps, per layer: the rows of q_proj / k_proj / v_proj (and their biases) of its
heads (attention heads / W and KV heads / W, contiguous), the matching columns of o_proj; the rows
of gate_proj / up_proj and the columns of down_proj of its share of the MLP. Embeddings, norms
and the LM head stay whole. slots.SlotDecoder all-reduces o_proj's and down_proj's outputs, so
every rank holds the whole hidden state and the same logits. Each rank's KV cache holds only its
KV heads: the cache splits over the GPUs and the slots multiply.
"""
from __future__ import annotations

import torch


def _rows(lin, lo: int, hi: int) -> None:
    lin.weight = torch.nn.Parameter(lin.weight.data[lo:hi].clone(), requires_grad=False)
    if lin.bias is not None:
        lin.bias = torch.nn.Parameter(lin.bias.data[lo:hi].clone(), requires_grad=False)
    lin.out_features = hi - lo


def _cols(lin, lo: int, hi: int) -> None:
    if lin.bias is not None:
        raise ValueError("tensor parallel: a row-parallel layer with a bias would add it once per rank")
    lin.weight = torch.nn.Parameter(lin.weight.data[:, lo:hi].clone(), requires_grad=False)
    lin.in_features = hi - lo


def check(config, world: int) -> None:
    heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    if heads % world or kv % world or config.intermediate_size % world:
        raise ValueError(f"tensor parallel over {world} GPUs needs the attention heads ({heads}), KV heads ({kv}) "
                         f"and MLP width ({config.intermediate_size}) divisible by {world}")


def shard(lm, rank: int, world: int) -> None:
    """Keep rank's share of every layer of the causal LM `lm` (a plain transformers model: merge a
    LoRA first)."""
    cfg = lm.config
    check(cfg, world)
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    q = cfg.num_attention_heads // world * d
    kv = (getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads) // world * d
    inter = cfg.intermediate_size // world
    for layer in lm.model.layers:
        a, m = layer.self_attn, layer.mlp
        _rows(a.q_proj, rank * q, (rank + 1) * q)
        _rows(a.k_proj, rank * kv, (rank + 1) * kv)
        _rows(a.v_proj, rank * kv, (rank + 1) * kv)
        _cols(a.o_proj, rank * q, (rank + 1) * q)
        _rows(m.gate_proj, rank * inter, (rank + 1) * inter)
        _rows(m.up_proj, rank * inter, (rank + 1) * inter)
        _cols(m.down_proj, rank * inter, (rank + 1) * inter)
