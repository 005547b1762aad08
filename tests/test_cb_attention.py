"""elicit/eval/cb_attention.py: continuous batching's attention per sequence, not over every sequence's keys.

The reference is transformers' own: the masked SDPA over all sequences' keys that continuous
batching runs without flash-attn, on the very steps (decodes, a prompt split into chunks, both
in one step) of a real continuous-batching run of a GQA model.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _model(layers=2):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                               tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    for p in model.parameters():  # large weights: varied tokens, attention far from uniform
        p.data.normal_(0, 0.5)
    return model


# one prompt over the CPU cache's 512-token batch: its prefill comes in chunks, the later ones
# attending to the earlier ones, side by side with other sequences' decoding steps
PROMPTS = [[(5 * i + 3 * j) % 280 + 10 for j in range(n)] for i, n in enumerate((30, 700, 5, 90, 61))]


def _generate(model, prompts, max_new=12):
    from transformers import GenerationConfig

    from elicit.eval.lm_backend_cb import cb_config

    gc = GenerationConfig(do_sample=False, max_new_tokens=max_new, eos_token_id=-1, pad_token_id=0)
    cfg = cb_config(prompts, max_new, "cpu", allow_block_sharing=False)
    with torch.no_grad():
        out = model.generate_batch(inputs=prompts, generation_config=gc, continuous_batching_config=cfg,
                                   progress_bar=False)
    return [list(out[k].generated_tokens) for k in sorted(out, key=lambda k: int(k.split("_")[-1]))]


def test_varlen_equals_the_masked_sdpa_on_every_step_of_a_real_run():
    from transformers.modeling_utils import AttentionInterface

    from elicit.eval import cb_attention

    mapping, seen = AttentionInterface._global_mapping, {"calls": 0, "decode": 0, "chunk_after_chunk": 0, "diff": 0.0}
    original, plans = mapping["sdpa"], cb_attention._StepPlan()

    def spy(module, query, key, value, attention_mask, **kw):
        ref = original(module, query, key, value, attention_mask, **kw)
        got = cb_attention.varlen_sdpa(module, query, key, value, attention_mask, plan_cache=plans, **kw)
        plan = plans.get(kw["cu_seq_lens_q"], kw["cu_seq_lens_k"], query.device)
        seen["calls"] += 1
        seen["decode"] += bool(plan["decode"]) and bool(plan["prefill"])  # both kinds in one step
        seen["chunk_after_chunk"] += any(lk > lq for _, lq, _, lk in plan["prefill"])
        seen["diff"] = max(seen["diff"], (got[0] - ref[0]).abs().max().item())
        return ref

    mapping["sdpa"] = spy
    try:
        _generate(_model(), PROMPTS)
    finally:
        mapping["sdpa"] = original
    assert seen["calls"] > 20 and seen["decode"] and seen["chunk_after_chunk"], seen
    assert seen["diff"] < 1e-5, seen


def test_generation_is_the_same_token_for_token():
    from elicit.eval import cb_attention

    model = _model(3)
    masked = _generate(model, PROMPTS, max_new=20)
    before = dict(cb_attention.stats)
    with cb_attention.installed():
        varlen = _generate(model, PROMPTS, max_new=20)
    assert cb_attention.stats["varlen_calls"] - before["varlen_calls"] >= 20 * 3
    assert len({tuple(t) for t in masked}) == len(PROMPTS)  # varied answers: equality is not trivial
    assert varlen == masked


def test_other_calls_go_to_the_original_and_the_original_comes_back():
    from transformers.modeling_utils import AttentionInterface

    from elicit.eval import cb_attention

    model, ids = _model(), torch.tensor([PROMPTS[0]])
    with torch.no_grad():
        ref = model(ids).logits
        original = AttentionInterface._global_mapping["sdpa"]
        before = cb_attention.stats["fallback_calls"]
        with cb_attention.installed():
            inside = model(ids).logits
            assert AttentionInterface._global_mapping["sdpa"] is not original
        assert AttentionInterface._global_mapping["sdpa"] is original
    assert cb_attention.stats["fallback_calls"] - before == 2  # one per layer
    assert torch.equal(ref, inside)


def test_a_step_plan_is_made_anew_when_the_boundaries_change_in_place():
    from elicit.eval import cb_attention

    plans, bulk = cb_attention._StepPlan(), torch.tensor([[0, 1, 2], [0, 5, 9]], dtype=torch.int32)
    cu_q, cu_k = bulk[0], bulk[1]
    assert plans.get(cu_q, cu_k, "cpu")["lk"] == [5, 4]
    assert plans.get(cu_q, cu_k, "cpu") is plans.get(cu_q, cu_k, "cpu")  # once per step, not per layer
    bulk[1, 2] = 12  # the next step writes the same storage in place
    assert plans.get(cu_q, cu_k, "cpu")["lk"] == [5, 7]


def test_a_gpu_job_plans_the_attention_mask_beside_its_kv_cache(monkeypatch):
    """On a GPU a job's cache is sized to its answers when that fits 70 % of free memory; without
    flash-attn transformers keeps a [step tokens, cached tokens] mask beside it, so the fit counts
    both, and the step is capped (transformers' default of 8192 would make the mask 16 KiB per token)."""
    from elicit.eval import lm_backend_cb
    from elicit.plan import memory_plan

    prompts, new, kv = [[1] * 300] * 16, 2048, 28 * 1024  # 1.5B: 28 KiB of K and V per token
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    page = ContinuousBatchingConfig.page_size
    tokens = 16 * -(-(300 + new) // page) * page
    step = memory_plan.CB_STEP_TOKENS
    monkeypatch.setattr(lm_backend_cb, "_free_gpu_bytes", lambda d: int(tokens * (kv + 2 * step) / 0.7) + 1)
    roomy = lm_backend_cb.cb_config(prompts, new, "cuda:0", kv_bytes=kv)
    assert roomy.num_blocks == tokens // page and roomy.max_batch_tokens == step
    monkeypatch.setattr(lm_backend_cb, "_free_gpu_bytes", lambda d: int(tokens * (kv + step) / 0.7))
    tight = lm_backend_cb.cb_config(prompts, new, "cuda:0", kv_bytes=kv)  # the KV cache alone would fit
    assert tight.num_blocks is None and tight.max_batch_tokens == step  # transformers sizes it from free memory
