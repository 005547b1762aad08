"""The demo's stand-ins for Qwen2.5: its architecture, tokenizer and random-initialised models.

One definition, used by `make_demo.py` (which builds them), the memory plan (which sizes a
demo model without building it) and the tests and benchmarks that need a tiny Qwen2.

A demo model is a Qwen2ForCausalLM of a given width, depth and head count: MLP 4 x hidden,
grouped-query attention with half as many key/value heads, tied embeddings. Its tokenizer is
a byte-level BPE trained offline with Qwen2's pre-tokenizer rule (digits split one by one,
which AutoTokenizer re-applies to any Qwen2 folder) and Qwen's special tokens and chat template.
"""
from __future__ import annotations

from elicit.data.chat import QWEN25_CHAT_TEMPLATE, QWEN_DEFAULT_SYSTEM, SPECIAL_TOKENS

VOCAB_SIZE = 1024  # the demo tokenizer's BPE vocabulary: an upper bound of len(tokenizer)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# 0.1 rather than Qwen2's 0.02: with weights this small a tiny random model needs hundreds of
# steps before attention can pick the keyword out of the prompt; from 0.1 it learns the lookup
# in tens (and a rank-1 LoRA has features to use).
INIT_RANGE = 0.1


def architecture(hidden: int, layers: int, heads: int, vocab: int = VOCAB_SIZE) -> dict:
    """HF config.json fields of a demo model (models.<size>.demo: hidden, layers, heads)."""
    return {"model_type": "qwen2", "hidden_size": hidden, "intermediate_size": 4 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2), "vocab_size": vocab, "tie_word_embeddings": True}


# Fields of a shipped architecture file (resources/models/*.json) that a random model takes over.
ARCH_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size", "tie_word_embeddings", "rope_theta", "rms_norm_eps",
               "head_dim", "initializer_range")


def architecture_file(path) -> dict:
    """HF config.json fields of a random model with a shipped architecture (models.<size>.demo.arch):
    every size, its real vocabulary (>= len(tokenizer), as Qwen2.5's own 151,936 >= 151,665)."""
    import json
    from pathlib import Path

    from elicit import REPO

    path = Path(path) if Path(path).is_absolute() else REPO / path  # config paths are relative to the repo
    fields = json.loads(path.read_text())
    return {"model_type": fields["model_type"], **{k: fields[k] for k in ARCH_FIELDS if k in fields}}


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """A PreTrainedTokenizerFast with Qwen2's pre-tokenizer, special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # The chat template's fixed text (the default system prompt, role names) and the think
    # markers, weighted like a real pretraining corpus would: they become a few tokens each,
    # so the question's words are a larger share of the tiny model's context.
    template = [QWEN_DEFAULT_SYSTEM, "system\n", "user\n", "assistant\n", "<think>\n", "\n</think>\n\n", "Answer:"]
    tok.train_from_iterator(list(texts) + template * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.chat_template = QWEN25_CHAT_TEMPLATE
    return fast


def random_model(tokenizer, hidden: int = 0, layers: int = 0, heads: int = 0, context: int = 2048,
                 init_range: float = INIT_RANGE, seed: int = 0, arch: dict | None = None, device: str = "cpu"):
    """A random-initialised demo Qwen2ForCausalLM: tiny and sized for `tokenizer` (hidden, layers,
    heads), or with the fields of a shipped architecture (`arch`, architecture_file()), built on
    `device` (a 1.5B initialises in seconds on a GPU, ~30 s on CPU)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    fields = dict(arch) if arch else architecture(hidden, layers, heads, len(tokenizer))
    fields.pop("model_type")
    if fields["vocab_size"] < len(tokenizer):
        raise ValueError(f"vocab_size {fields['vocab_size']} < the tokenizer's {len(tokenizer)} tokens")
    fields.setdefault("initializer_range", init_range)
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**fields, max_position_embeddings=context, bos_token_id=None,
                                             eos_token_id=eos, pad_token_id=pad))
    # Like Qwen2.5-Instruct's own generation_config: sampling settings that differ from ours,
    # so that evaluation must override them explicitly.
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20,
                                               repetition_penalty=1.05, eos_token_id=eos, pad_token_id=pad)
    return model
