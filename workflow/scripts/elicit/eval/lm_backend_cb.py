"""lm-eval backend `hf-cb`: transformers continuous batching (paged attention), resumable per answer.

Same model loading, prompt-length check and sidecar as `hf-resumable` (lm_backend.py); the
generation differs. All missing answers of a call (or of several cells: `eval_pool.run_cells`, one job
evaluating several seeds/tasks) go to ONE continuous-batching manager (`generate_batch`'s
engine): as many sequences are in flight as the paged KV cache holds (eval.batch_size: auto)
or as eval.batch_size says, and a finished answer frees its slot at once and is appended to
its cell's sidecar at once (flushed + fsynced): a killed job loses only the answers in flight.

Sampling, reproducible per REQUEST: transformers samples with torch.multinomial on the global
generator, so what a sequence draws would depend on which others share its batch. Instead the
`GumbelSampler` logits processor adds Gumbel noise drawn from a counter-based hash of
(the request's sampling seed, the position being predicted, the token id) to the tempered,
filtered logits, and decoding takes the argmax: argmax(logits/T + Gumbel) is an exact sample
of softmax(logits/T) (the Gumbel-max trick). The request's sampling seed comes from
(eval seed, settings, task, doc, repeat index, prompt, gen_kwargs): not from the model, the
batch size, the concurrency, the other cells of the job or the order of arrival. So the random
stream of every answer is fixed; the answer itself is bit-identical whenever the logits are,
which holds on CPU in float32 (tests/test_eval_cb.py); on a GPU in bf16, kernels may round a
row differently with another batch shape, and a near-tie can then flip (README, "What is
reproducible"). Greedy (temperature 0) is a plain argmax and equals `hf` (test_eval_backends).

Stop sequences: continuous batching stops only on EOS ids. Stop strings that are ONE token
(e.g. "<|im_end|>") are added to the EOS ids; longer stop strings are cut from the decoded
text afterwards (same text as `hf`, some wasted steps). repetition_penalty must be 1.0 (it
needs the whole history, which continuous batching does not pass to logits processors).
"""
from __future__ import annotations

import json
import time

from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from elicit.eval import cb_attention
from elicit.eval.lm_backend import MODEL_SETTINGS, SIDE_VERSION, ResumableHFLM, _sha
from elicit.plan import arch, memory_plan

M32 = 0xFFFFFFFF
CB_VERSION = "cb-gumbel-1"  # answers of the per-batch-seeded hf-cb are not reused


def _mul32(x, c: int):
    """(x * c) mod 2^32 for x < 2^32 (an int, or an int64 tensor: no int64 overflow)."""
    return (((x >> 16) * c & 0xFFFF) << 16) + (x & 0xFFFF) * c & M32


def _mix32(x):
    """A 32-bit avalanche hash (lowbias32) of an int or an int64 tensor of values < 2^32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_key(seed: int, position: int) -> int:
    """The noise key of one request at one position (31 bits: the CB argument storage is int32).
    Plain ints here (it runs for every sequence at every step); int64 tensors in hf-slots' captured step."""
    return _mix32((seed ^ _mix32(position & M32)) & M32) & 0x7FFFFFFF


def gumbel_noise(keys, vocab: int):
    """[rows, vocab] standard Gumbel noise, row r a pure function of keys[r] (device of keys)."""
    import torch

    v = torch.arange(vocab, device=keys.device, dtype=torch.int64)
    h = _mix32((keys.to(torch.int64)[:, None] + _mul32(v, 0x9E3779B9)[None, :]) & M32)
    u = ((h >> 8).to(torch.float32) + 0.5) * (1.0 / 2**24)  # in (0, 1), 24 bits
    return -torch.log(-torch.log(u))


def sampler_processor_list(temperature, top_k, top_p, min_p):
    """A ContinuousBatchingLogitsProcessorList holding only the GumbelSampler."""
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessor,
        ContinuousBatchingLogitsProcessorList,
    )
    from transformers.generation.logits_process import LogitsProcessorList, MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = ([TopKLogitsWarper(int(top_k))] if top_k else []) + \
              ([TopPLogitsWarper(float(top_p))] if top_p is not None and top_p < 1.0 else []) + \
              ([MinPLogitsWarper(float(min_p))] if min_p else [])

    class GumbelSampler(ContinuousBatchingLogitsProcessor):
        supported_kwargs = {"sample_seed": int}
        ignored_kwargs = ()

        def fill_defaults(self, int32_tensor):
            int32_tensor.fill_(0)

        def prepare_tensor_args(self, requests_with_new_token):
            import torch

            # position_offset = the position of the token this step predicts (prompt + generated),
            # whatever the batch, the prefix cache or a preemption did before.
            return torch.tensor([row_key(r.state.logit_processor_kwargs.get("sample_seed", 0), r.state.position_offset)
                                 for r in requests_with_new_token], dtype=torch.int32)

        def __call__(self, scores, tensor_arg):
            scores = scores / float(temperature)
            for w in warpers:  # per-row warpers; they ignore input_ids
                scores = w(None, scores)
            out = []
            for lo in range(0, scores.size(0), 64):  # bound the [rows, vocab] temporaries
                rows = scores[lo:lo + 64]
                out.append(rows + gumbel_noise(tensor_arg[lo:lo + rows.size(0)], rows.size(1)))
            return out[0] if len(out) == 1 else __import__("torch").cat(out)

    lst = ContinuousBatchingLogitsProcessorList(LogitsProcessorList([GumbelSampler()]))
    lst.tensors_required = 1
    return lst


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


def _free_gpu_bytes(device) -> int:
    import torch

    return torch.cuda.mem_get_info(torch.device(device))[0]


def kv_bytes_per_token(model) -> int | None:
    """K and V of every layer for one token, from the model's own config (None when it does not say)."""
    try:
        return arch.kv_bytes_per_token(model.config, model.dtype.itemsize)
    except (AttributeError, TypeError):
        return None


def cb_config(inputs: list[list[int]], max_new_tokens: int, device, allow_block_sharing: bool = True,
              slots: int | None = None, kv_bytes: int | None = None):
    """Paged-cache size. On GPU: the workload's pages (every request's prompt + max_new_tokens) when
    they fit in 70 % of free memory (kv_bytes: per token), else transformers' default from free memory
    (the KV-cache budget: as many sequences in flight as fit); on CPU that default is a huge cache that every step walks
    (~15x slower on the demo), so size it to the workload: every request's prompt +
    max_new_tokens, in 64-token pages. slots: at most this many sequences per step (None: as
    many as fit). allow_block_sharing=False turns prefix caching off (the benchmark counts steps)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    extra = {"max_requests_per_batch": int(slots)} if slots else {}
    if str(device).startswith("cuda"):
        # no more cache than the workload can fill, when that fits (a small job leaves the GPU to
        # others and its peak to the memory plan); otherwise as much as fits (transformers' default).
        # At most CB_STEP_TOKENS tokens a step: without flash-attn, transformers' attention mask is
        # [step tokens, cached tokens] (8192 by default: 16 KiB per cached token, half a 1.5B's KV).
        page, step = ContinuousBatchingConfig.page_size, memory_plan.CB_STEP_TOKENS
        blocks = sum(-(-(len(x) + max_new_tokens) // page) for x in inputs)
        fits = kv_bytes is not None and blocks * page * (kv_bytes + 2 * step) <= 0.7 * _free_gpu_bytes(device)
        return ContinuousBatchingConfig(allow_block_sharing=allow_block_sharing, max_batch_tokens=step,
                                        **({"num_blocks": blocks} if fits else {}), **extra)
    page = 64
    blocks = sum(-(-(len(x) + max_new_tokens) // page) for x in inputs)
    return ContinuousBatchingConfig(page_size=page, num_blocks=max(blocks, 4), max_batch_tokens=512,
                                    allow_block_sharing=allow_block_sharing, **extra)


@register_model("hf-cb")
class ContinuousBatchingHFLM(ResumableHFLM):
    BACKEND = "hf-cb"  # a subclass with another engine (lm_backend_slots.py) keys its answers apart
    SAMPLER = "hf-cb"  # ... but draws from the same per-request random stream (the same sampler)
    RUNS_TP = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.layout == "tp" and not self.RUNS_TP and int(__import__("os").environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("hf-cb runs layouts single, dp (a replica per GPU) and split; for tp use hf-slots")
        # The answers do not depend on the batch size / slots: keep it out of keys and seeds.
        self.settings = {k: v for k, v in self._settings.items() if k != "batch_size"}
        self.settings["backend"] = self.BACKEND
        self.use_cell(self.sidecar_base, self.resume_seed)
        self.cb_stats = {"generated_tokens": 0, "calls": 0, "max_in_flight": 0}
        self.answers_written = 0
        self.collecting = None  # a list while eval_cell collects the requests of several cells

    def use_cell(self, partial_path, seed: int) -> None:
        """Point the sidecar and the seeds at one (task, seed) cell of a job."""
        from pathlib import Path

        self.sidecar_base = self.partial_path = Path(partial_path) if partial_path else None
        self.resume_seed = int(seed)
        self.fingerprint = _sha(SIDE_VERSION, CB_VERSION, self.resume_seed, self.settings)
        self.sampling = _sha("sampling", CB_VERSION, self.resume_seed,
                             {**{k: v for k, v in self.settings.items() if k not in MODEL_SETTINGS},
                              "backend": self.SAMPLER})
        self.stats = {"requests": 0, "reused": 0, "generated": 0, "generate_s": 0.0}

    def _eos_ids(self, until: list[str]) -> list[int]:
        ids = set()
        gc_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if gc_eos is not None:
            ids.update(gc_eos if isinstance(gc_eos, (list, tuple)) else [gc_eos])
        if self.eot_token_id is not None:
            ids.add(int(self.eot_token_id))
        ids |= self.turn_end_ids  # the chat template's end of turn, whatever the tokenizer declares
        for s in until:
            enc = self.tokenizer.encode(s, add_special_tokens=False)
            if len(enc) == 1:
                ids.add(int(enc[0]))
        return sorted(ids)

    # ---------------------------------------------------------------- requests of a cell
    def cell_work(self, requests) -> dict:
        """What one cell needs: its requests, their sidecar keys and sampling seeds, what is done."""
        lengths = [len(self.tok_encode(r.args[0])) for r in requests]
        self.check_lengths(requests, lengths)
        keys = self.request_keys(requests)
        seeds = [int(s[:8], 16) & 0x7FFFFFFF for s in self.request_keys(requests, self.sampling)]
        return {"requests": requests, "keys": keys, "seeds": seeds, "done": self._load_sidecar(),
                "sidecar": self.partial_path, "stats": self.stats}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        work = self.cell_work(requests)
        if self.collecting is not None:  # eval_cell's first pass over a job's cells
            self.collecting.append(work)
            return ["" for _ in requests]
        if not all(k in work["done"] for k in work["keys"]):
            self.generate_pool([work])
        for r, k in zip(requests, work["keys"]):  # eval_cell.per_sample: length and stop reason per document
            self.doc_meta[(r.task_name, r.doc_id)] = self.answer_meta.get(k) or {}
        return [work["done"][k] for k in work["keys"]]

    # ---------------------------------------------------------------- one manager for every cell
    def generate_pool(self, cells: list[dict]) -> None:
        """Generate every missing answer of `cells` in one continuous-batching run; each answer goes
        to its cell's sidecar as soon as it is finished."""
        t0 = time.perf_counter()
        todo = []  # (cell, index) of missing answers, grouped by gen_kwargs
        for c in cells:
            c["stats"]["requests"] += len(c["keys"])
            c["stats"]["reused"] += sum(k in c["done"] for k in c["keys"])
            todo += [(c, i) for i, k in enumerate(c["keys"]) if k not in c["done"]]
        groups: dict[str, list] = {}
        for c, i in todo:
            groups.setdefault(json.dumps(c["requests"][i].args[1], sort_keys=True, default=str), []).append((c, i))
        if self.group is not None:  # dp: every rank has read the sidecars before any rank appends
            import torch.distributed as dist

            dist.barrier(group=self.group)
        for items in groups.values():
            self._run_manager(items[self.dp_rank::self.dp_world])  # dp: every world-th missing answer
        if self.dp_world > 1:
            self._exchange(cells)
        for c in cells:
            c["stats"]["generate_s"] = round(time.perf_counter() - t0, 3)

    def _exchange(self, cells) -> None:
        """dp: every rank gets every rank's new answers (lm-eval scores on each rank)."""
        import torch.distributed as dist

        parts = [None] * self.dp_world
        dist.all_gather_object(parts, [c["done"] for c in cells], group=self.group)
        for n, c in enumerate(cells):
            before = len(c["done"])
            for part in parts:
                c["done"].update(part[n])
            c["stats"]["generated"] += len(c["done"]) - before

    def run_settings(self, items) -> tuple[dict, list[str], bool]:
        """(generation kwargs, stop strings, sampling?) of one run: its items share their gen_kwargs."""
        gen_kwargs = items[0][0]["requests"][items[0][1]].args[1]
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
        until = handle_stop_sequences(kwargs.pop("until", None),
                                      eos=self.tok_decode(self.eot_token_id, skip_special_tokens=False))
        if (kwargs.get("repetition_penalty") or 1.0) != 1.0:
            raise ValueError(f"{self.BACKEND} samples without repetition_penalty (eval.repetition_penalty must be 1.0)")
        return kwargs, until, bool(kwargs.get("do_sample"))

    def _run_manager(self, items) -> None:
        import torch

        if not items:
            return
        kwargs, until, sample = self.run_settings(items)
        gcfg = generation_config_for(self.model, {**kwargs, "do_sample": False, "repetition_penalty": None},
                                     self._eos_ids(until), self.tokenizer.pad_token_id)
        inputs = [self.tok_encode(c["requests"][i].args[0]) for c, i in items]
        slots = self.batch_size if isinstance(self.batch_size, int) else None
        cfg = cb_config(inputs, gcfg.max_new_tokens, self.model.device, slots=slots,
                        kv_bytes=kv_bytes_per_token(self.model))
        manager = self.model.init_continuous_batching(generation_config=gcfg, continuous_batching_config=cfg)
        if sample:  # our per-request sampler replaces transformers' multinomial on the global generator
            manager.logit_processor = sampler_processor_list(kwargs.get("temperature"), kwargs.get("top_k"),
                                                             kwargs.get("top_p"), kwargs.get("min_p"))
        # flash-attn where transformers switched to it; otherwise SDPA per sequence (cb_attention.py)
        attention = self.model.config._attn_implementation
        for c, _ in items:
            c["stats"]["attention"] = "sdpa-varlen" if attention == "sdpa" else attention
        by_id = {}
        with cb_attention.installed():  # before the first step, until the last
            manager.start()
            try:
                with torch.no_grad():
                    for n, ((c, i), ids) in enumerate(zip(items, inputs)):
                        extra = {"sample_seed": c["seeds"][i]} if sample else {}
                        by_id[manager.add_request(ids, request_id=f"r{n}", max_new_tokens=gcfg.max_new_tokens,
                                                  eos_token_id=gcfg.eos_token_id, **extra)] = (c, i)
                    left = set(by_id)
                    while left:
                        res = manager.get_result(timeout=1)
                        if res is None:
                            if not manager.is_running():
                                raise RuntimeError("continuous batching stopped with answers missing")
                            continue
                        if not res.is_finished() or res.request_id not in left:
                            continue
                        if res.error:
                            raise RuntimeError(f"continuous batching request {res.request_id} failed: {res.error}")
                        left.discard(res.request_id)
                        self._finish(*by_id[res.request_id], list(res.generated_tokens), until, gcfg.max_new_tokens)
            finally:
                manager.stop(block=True, timeout=5)
                manager.destroy()
        self.cb_stats["calls"] += 1

    def _finish(self, cell, i, toks, until, max_new_tokens) -> None:
        """One answer: decoded, cut at a stop string, appended to its cell's sidecar now with its
        length and why it stopped (elicit/eval/stops.py). hf-cb generates past a multi-token stop
        string until EOS and cuts afterwards: the whole text, as generated, is kept as `uncut` (None where
        the cut removed nothing), so a scorer can tell what the cut took away."""
        import os
        import signal

        req = cell["requests"][i]
        text = self.tok_decode(toks)
        ans = postprocess_generated_text(generation=text, stop=until, think_end_token=None)
        self.cb_stats["generated_tokens"] += len(toks)
        cell["done"][cell["keys"][i]] = ans
        cell["stats"]["generated"] += 1
        meta = {**self.stop_meta(toks, until, max_new_tokens), "uncut": text if text != ans else None}
        self.answer_meta[cell["keys"][i]] = meta
        row = {"key": cell["keys"][i], "task": req.task_name, "doc_id": req.doc_id, "response": ans, **meta}
        side = cell["sidecar"]
        if side is not None and self.writer:
            side = side.with_name(side.name + f".rank{self.dp_rank}") if self.dp_world > 1 else side
            side.parent.mkdir(parents=True, exist_ok=True)
            with open(side, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        self.answers_written += 1
        kill_after = os.environ.get("LM_BACKEND_SIGTERM_AFTER")  # test hook (lm_backend.py): k new answers
        if kill_after and self.answers_written >= int(kill_after):
            os.kill(os.getpid(), signal.SIGTERM)
