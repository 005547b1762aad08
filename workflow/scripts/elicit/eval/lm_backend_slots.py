"""lm-eval backend `hf-slots`: hf-cb's cells, seeds, sidecar and stops on the slot engine (slots.py).

Everything a cell sees is hf-cb's (lm_backend_cb.py): the per-request sampling seeds and the
Gumbel-max sampler, the sidecar written per finished answer (resume per answer), the pooled
cells of a job, EOS ids (single-token stop strings included; longer stop strings cut afterwards,
stop_reason from the ids), the prompt-length check and the provenance fields. Only the engine
differs: S fixed slots and a static KV cache, one decode step captured as a graph on CUDA.

Slots (S): eval.batch_size when an integer, else (auto) as many as the KV budget holds on this
GPU (memory_plan.slots_fit: the plan's formula on free memory), at most SLOTS_MAX and at most the
run's requests; on CPU at most the run's requests. S schedules the work and is recorded per cell
(`resume.slots`); an answer depends on S only through bf16 rounding on a GPU (slots.py).

Layouts: single; dp (a replica per GPU, every world-th missing answer, as hf-cb); tp (torchrun:
the weights and the KV cache sharded over the ranks, slots_tp.py; a LoRA is merged into the
weights first, so tp answers are those of the merged model). Under tp each rank loads the whole
model on the host in turn (a file lock per job), keeps its share and frees the rest: the host
needs one model's bf16 weights at a time, not one per rank.
"""
from __future__ import annotations

import os
import time

from lm_eval.api.registry import register_model

from elicit.eval.lm_backend_cb import ContinuousBatchingHFLM, kv_bytes_per_token
from elicit.eval.slots import Sampling, SlotDecoder
from elicit.plan.memory_plan import SLOTS_MAX


def slots_for(batch_size, n_requests: int, prompt_max: int, max_new: int, model) -> int:
    """S for one run: an integer batch size as given (at most the requests), else what fits."""
    if isinstance(batch_size, int) and batch_size > 0:
        return max(1, min(batch_size, n_requests))
    device = next(model.parameters()).device
    if device.type != "cuda":
        return max(1, min(SLOTS_MAX, n_requests))
    import torch

    from elicit.plan.memory_plan import slots_fit

    free = torch.cuda.mem_get_info(device)[0]
    fit = slots_fit(free, prompt_max + max_new, kv_bytes_per_token(model) or 0, model.config.vocab_size)
    if fit < 1:
        raise RuntimeError(f"hf-slots: not one slot of {prompt_max + max_new} tokens fits the "
                           f"{free / 2**30:.1f} GiB free on {device}: lower eval.max_gen_toks or use more GPUs (tp)")
    return max(1, min(SLOTS_MAX, fit, n_requests))


@register_model("hf-slots")
class SlotsHFLM(ContinuousBatchingHFLM):
    BACKEND = "hf-slots"
    RUNS_TP = True

    def __init__(self, **kwargs):
        self._load_lock = None
        tp = kwargs.get("layout") == "tp" and int(os.environ.get("WORLD_SIZE", "1")) > 1
        if tp:
            # Each rank loads the whole model on the host, keeps its share and frees the rest; the ranks
            # of a node take turns (a file lock around the load alone: lm-eval's own set-up around it
            # has collectives), so the host holds one whole copy at a time. Then the share goes to its GPU.
            import tempfile

            kwargs["device"] = "cpu"
            job = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("MASTER_PORT", "0")
            self._load_lock = os.path.join(tempfile.gettempdir(), f"elicit-tp-load-{job}.lock")
        super().__init__(**kwargs)
        if tp:
            self._to_gpu()

    def _create_model(self, *args, **kwargs):
        if self._load_lock is None:
            return super()._create_model(*args, **kwargs)
        import fcntl
        import gc

        from elicit.eval.slots_tp import shard

        with open(self._load_lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            super()._create_model(*args, **kwargs)
            if hasattr(self._model, "merge_and_unload"):  # a LoRA: merged, then sharded like any weight
                self._model = self._model.merge_and_unload()
            shard(self._model, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
            gc.collect()

    def _to_gpu(self) -> None:
        import torch

        if torch.cuda.is_available():
            target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(target)
            self._model.to(target)
            self._device = target

    def _tp_group(self):
        if self.layout != "tp" or int(os.environ.get("WORLD_SIZE", "1")) < 2:
            return None
        import torch.distributed as dist

        if not hasattr(self, "_tp_nccl"):
            self._tp_nccl = dist.new_group(backend="nccl" if self.model.device.type == "cuda" else "gloo")
        return self._tp_nccl

    def _run_manager(self, items) -> None:
        if not items:
            return
        kwargs, until, sample = self.run_settings(items)
        sampling = Sampling(temperature=float(kwargs.get("temperature") or 0.0) if sample else 0.0,
                            top_k=int(kwargs.get("top_k") or 0), top_p=float(kwargs.get("top_p") or 1.0),
                            min_p=float(kwargs.get("min_p") or 0.0))
        max_new = int(kwargs["max_gen_toks"])
        inputs = [self.tok_encode(c["requests"][i].args[0]) for c, i in items]
        prompt_max = max(len(x) for x in inputs)
        slots = slots_for(self.batch_size, len(items), prompt_max, max_new, self.model)
        page = 64  # the static cache's length: the longest prompt + max_new, in 64-token pages
        length = -(-(prompt_max + max_new + 1) // page) * page
        dec = SlotDecoder(self.model, slots, length, sampling, tp_group=self._tp_group())
        t0 = time.perf_counter()
        dec.generate([(ids, c["seeds"][i]) for (c, i), ids in zip(items, inputs)],
                     lambda r, toks: self._finish(*items[r], list(toks), until, max_new),
                     self._eos_ids(until), max_new)
        summary = {**dec.stats.summary(), "slots": slots, "cache_tokens": length, "attention": dec.attention,
                   "step": f"{dec.compiled or 'eager'}+{dec.capture}", "wall_s": round(time.perf_counter() - t0, 3)}
        for c, _ in items:
            c["stats"].update(attention=dec.attention, slots=slots, engine=summary)
        self.cb_stats["calls"] += 1
        self.cb_stats["max_in_flight"] = max(self.cb_stats["max_in_flight"], slots)
        del dec
