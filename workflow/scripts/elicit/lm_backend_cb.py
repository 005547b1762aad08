"""lm-eval backend `hf-cb`: transformers continuous batching (paged attention), resumable.

Same model loading, prompt-length check, fixed batches, per-batch seeds and sidecar as
`hf-resumable` (lm_backend.py); only one fixed batch's generation differs: instead of
`model.generate` on a left-padded batch that decodes in lockstep until its LONGEST answer
ends, the batch's prompts go to `model.generate_batch` (transformers continuous batching):
a finished answer frees its slot (paged KV cache) at once, so no step is spent on padding
or on sequences that already ended. Useful with long-tailed answer lengths (reasoning
traces: most answers short, a few up to max_gen_toks); give it a large eval.batch_size
(e.g. 64-256), which is then also the unit of resume.

Stop sequences: continuous batching stops only on EOS ids. Stop strings that are ONE token
(e.g. "<|im_end|>") are added to the EOS ids; longer stop strings are cut from the decoded
text afterwards (same text as `hf`, some wasted steps). Greedy outputs equal `hf`'s
(tests/test_eval_backends.py); sampled ones use the same settings but a different random
stream, so compare sampled runs by score, not text.
"""
from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from elicit.lm_backend import ResumableHFLM


def generation_config_for(model, gen_kwargs: dict, eos_ids: list[int], pad_id):
    from transformers import GenerationConfig

    sample = bool(gen_kwargs.get("do_sample"))
    top_k = gen_kwargs.get("top_k")
    cfg = dict(
        do_sample=sample,
        max_new_tokens=int(gen_kwargs["max_gen_toks"]),
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        repetition_penalty=gen_kwargs.get("repetition_penalty") or None,
    )
    if sample:
        cfg.update(temperature=gen_kwargs.get("temperature"), top_p=gen_kwargs.get("top_p"),
                   top_k=top_k if top_k else None, min_p=gen_kwargs.get("min_p"))
    else:
        cfg.update(temperature=None, top_p=None, top_k=None, min_p=None)
    return GenerationConfig(**cfg)


def cb_config(inputs: list[list[int]], max_new_tokens: int, device, allow_block_sharing: bool = True):
    """Paged-cache size. On GPU transformers sizes it from free memory (None = its default);
    on CPU that default is a huge cache that every step walks (~15x slower on the demo),
    so size it to the workload: every request's prompt + max_new_tokens, in 64-token pages.
    allow_block_sharing=False turns prefix caching off (the benchmark counts steps)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    if str(device).startswith("cuda"):
        return None if allow_block_sharing else ContinuousBatchingConfig(allow_block_sharing=False)
    page = 64
    blocks = sum(-(-(len(x) + max_new_tokens) // page) for x in inputs)
    return ContinuousBatchingConfig(page_size=page, num_blocks=max(blocks, 4), max_batch_tokens=512,
                                    allow_block_sharing=allow_block_sharing)


@register_model("hf-cb")
class ContinuousBatchingHFLM(ResumableHFLM):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fingerprint, self.sampling = self.fingerprint + "-cb", self.sampling + "-cb"
        self.cb_stats = {"generated_tokens": 0, "calls": 0}

    def _eos_ids(self, until: list[str]) -> list[int]:
        ids = set()
        gc_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if gc_eos is not None:
            ids.update(gc_eos if isinstance(gc_eos, (list, tuple)) else [gc_eos])
        if self.eot_token_id is not None:
            ids.add(int(self.eot_token_id))
        for s in until:
            enc = self.tokenizer.encode(s, add_special_tokens=False)
            if len(enc) == 1:
                ids.add(int(enc[0]))
        return sorted(ids)

    def generate_batch_answers(self, reqs) -> list[str]:
        contexts = [r.args[0] for r in reqs]
        gen_kwargs = reqs[0].args[1]  # one fixed batch = one gen_kwargs group
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        gcfg = generation_config_for(self.model, kwargs, self._eos_ids(until), self.tokenizer.pad_token_id)
        inputs = [self.tok_encode(c) for c in contexts]
        out = self.model.generate_batch(inputs, generation_config=gcfg, max_new_tokens=gcfg.max_new_tokens,
                                        continuous_batching_config=cb_config(inputs, gcfg.max_new_tokens,
                                                                             self.model.device),
                                        warmup=False, progress_bar=False)
        results = list(out.values())  # transformers returns them in input order
        if len(results) != len(inputs):
            raise RuntimeError(f"continuous batching returned {len(results)} of {len(inputs)} answers")
        answers, self.batch_meta = [], []
        for res in results:
            if res.error:
                raise RuntimeError(f"continuous batching request {res.request_id} failed: {res.error}")
            toks = list(res.generated_tokens)
            self.cb_stats["generated_tokens"] += len(toks)
            s = self.tok_decode(toks)
            self.batch_meta.append(self.stop_meta(toks, until, gcfg.max_new_tokens))
            answers.append(postprocess_generated_text(generation=s, stop=until, think_end_token=None))
        self.cb_stats["calls"] += 1
        return answers
