"""A model's architecture facts, read from its own config (HF config.json fields), never derived.

`head_dim`, `num_key_value_heads`, `tie_word_embeddings`, `vocab_size`, `intermediate_size` come
from the config; only where a config has no `head_dim` is it hidden_size // num_attention_heads
(HF's own rule for Qwen2 and Llama). What config.json does not state is keyed by its model_type:
Qwen2 always has q/k/v biases, Qwen3 normalises every head's q and k (q_norm, k_norm). Used by the
memory plan (`Arch`) and by the continuous-batching backend (`kv_bytes_per_token` of a loaded model).
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("qwen2", "qwen3", "llama")  # decoder-only, RMSNorm, SwiGLU MLP, GQA: the plan's formulas
QKV_BIAS = {"qwen2": True}  # always on, no config key; the others follow attention_bias
QK_NORM = {"qwen3"}         # per-head RMSNorm of q and k: 2 x head_dim parameters per layer


class PlanError(ValueError):
    pass


def field(config, key: str, default=None):
    """config[key] of a config.json dict or getattr of a transformers PretrainedConfig."""
    value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
    return default if value is None else value


def head_dim(config) -> int:
    return field(config, "head_dim") or field(config, "hidden_size") // field(config, "num_attention_heads")


def kv_heads(config) -> int:
    return field(config, "num_key_value_heads") or field(config, "num_attention_heads")


def kv_bytes_per_token(config, dtype_bytes: int = 2) -> int:
    """K and V of every layer for one token."""
    return 2 * field(config, "num_hidden_layers") * kv_heads(config) * head_dim(config) * dtype_bytes


@dataclass(frozen=True)
class Arch:
    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    head_dim: int = 0  # 0: hidden // heads (a config without head_dim)
    qkv_bias: bool = True
    qk_norm: bool = False

    def __post_init__(self):
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @classmethod
    def from_config(cls, c: dict) -> "Arch":
        kind = c.get("model_type", "qwen2")
        if kind not in FAMILIES:
            raise PlanError(f"model_type {kind!r}: the memory plan knows {', '.join(FAMILIES)}")
        if c.get("mlp_bias"):
            raise PlanError(f"model_type {kind!r} with mlp_bias: the memory plan counts no MLP biases")
        return cls(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"],
                   kv_heads(c), c["vocab_size"], bool(c.get("tie_word_embeddings", False)), head_dim(c),
                   QKV_BIAS.get(kind, bool(c.get("attention_bias", False))), kind in QK_NORM)

    q_dim = property(lambda self: self.heads * self.head_dim)
    kv_dim = property(lambda self: self.kv_heads * self.head_dim)

    def layer_params(self) -> int:
        h, q, kv, i, b = self.hidden, self.q_dim, self.kv_dim, self.inter, int(self.qkv_bias)
        attention = h * q + q * b + 2 * (h * kv + kv * b) + q * h + 2 * self.head_dim * self.qk_norm
        return attention + 3 * h * i + 2 * h  # q, k, v (+ biases), o, q/k norms; MLP; 2 norms

    def params(self) -> int:
        return self.layers * self.layer_params() + self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def largest_layer_params(self) -> int:
        """DeepSpeed's model_to_params: the most parameters one module owns (non-recursive)."""
        return max(self.vocab * self.hidden, self.hidden * self.inter, self.q_dim * (self.hidden + self.qkv_bias))

    def lora_params(self, rank: int, targets: list[str]) -> int:
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.inter
        shapes = {"q_proj": h + q, "k_proj": h + kv, "v_proj": h + kv, "o_proj": q + h,
                  "gate_proj": h + i, "up_proj": h + i, "down_proj": i + h}
        if unknown := [t for t in targets if t not in shapes]:
            raise PlanError(f"lora.targets: no module named {unknown} (known: {sorted(shapes)})")
        return self.layers * rank * sum(shapes[t] for t in targets)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return kv_bytes_per_token({"num_hidden_layers": self.layers, "num_key_value_heads": self.kv_heads,
                                   "head_dim": self.head_dim}, dtype_bytes)
