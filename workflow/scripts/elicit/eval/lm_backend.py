"""Project lm-eval backends: resumable HF generation with a prompt-length check.

Importing this module registers, with lm-eval's model registry:

  hf-resumable   HFLM (transformers `generate`, the paper's "HF backend") whose
                 generate_until
                   * checks every real tokenized prompt: prompt + max_gen_toks must fit
                     max_length (= models.<size>.context); HFLM would silently left-truncate
                     the prompt instead;
                   * cuts the requests into batches of FIXED composition (lm-eval's own order:
                     gen_kwargs group, longest prompt first; `batch_size` each), seeds torch
                     per batch from (seed, settings, the batch's prompts: never the model) and appends every finished
                     answer to a sidecar JSONL (`partial_path`, flushed + fsynced per batch);
                   * on a rerun reads the sidecar and generates only the batches with a missing
                     answer. A batch's seed and composition do not depend on what was done
                     before, so a killed-and-resumed run gives exactly the answers of an
                     uninterrupted one (same hardware/dtype/batch size).
                 Request key = sha256(settings fingerprint incl. seed and the MODEL'S CONTENT
                 fingerprint (provenance.model_fingerprint: hub commit, training-run
                 fingerprint, or file hashes -- never the path), task, doc_id, repeat index,
                 prompt, gen_kwargs): lines of another model or other settings are ignored.
                 Layouts over several GPUs (torchrun, model arg `layout`):
                   dp  every rank builds ALL requests (lm-eval sees one process), cuts the same
                       fixed batches, generates every world-th missing batch, writes its own
                       sidecar `<partial>.rank<r>` and exchanges answers with the others: the
                       answers are those of one process (same batches, same per-batch seeds);
                   tp  every rank runs every batch on its slice of the weights (transformers
                       tp_plan); rank 0 alone writes the sidecar.
                 Every sidecar file of the cell (any layout, any rank) is read on resume.
  hf-cb          the same with `transformers` continuous batching (paged attention):
                 see lm_backend_cb.py (registered when that module is imported).

The sidecar is NOT a declared Snakemake output (Snakemake deletes declared outputs before a
job starts); eval_cell.py names it `<out>.partial.jsonl` and deletes it once OUT is written.

Per answer the backends also record n_new_tokens and stop_reason (elicit/eval/stops.stop_info on the
generated ids: eos | stop:<string> | max_gen_toks) in the sidecar and in `doc_meta` (eval_cell.py
writes them to the samples file).

Model args beyond HFLM's: partial_path (str, '' = no sidecar), resume_seed (int).
Test hook: env LM_BACKEND_SIGTERM_AFTER=k sends SIGTERM to this process once k answers
are in the sidecar (as SLURM would), so tests can kill a run at a known point.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

SIDE_VERSION = 2  # 2: sampling seeds no longer depend on the model (answers of 1 are not reused)
# Settings that name the model: they key the sidecar's answers, never the sampling seeds.
MODEL_SETTINGS = ("model", "peft", "revision")
META = ("n_new_tokens", "stop_reason", "uncut")  # per answer, from elicit.eval.stops.stop_info (sidecar + samples);
# uncut: hf-cb's whole text, before its stop-string cut, where the cut removed something (lm_backend_cb._finish)


class PromptTooLong(ValueError):
    pass


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


class ResumableMixin:
    """generate_until with fixed batches, per-batch seeds and a sidecar of finished answers."""

    def _resumable_init(self, partial_path, resume_seed, settings: dict, layout: str = "single"):
        import torch.distributed as dist

        self.layout = layout
        multi = layout in ("dp", "tp") and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.dp_rank = int(os.environ.get("RANK", "0")) if multi and layout == "dp" else 0
        self.dp_world = int(os.environ.get("WORLD_SIZE", "1")) if multi and layout == "dp" else 1
        self.writer = layout == "dp" or int(os.environ.get("RANK", "0")) == 0
        self.group = None
        if multi:
            if not dist.is_initialized():
                dist.init_process_group("gloo")
            self.group = dist.new_group(backend="gloo")  # answers are exchanged as objects
        self._rank, self._world_size = 0, 1  # lm-eval sees one process: every rank builds every request
        self.sidecar_base = Path(partial_path) if partial_path else None
        self.partial_path = self.sidecar_base
        if self.partial_path is not None and self.dp_world > 1:
            self.partial_path = self.partial_path.with_name(self.partial_path.name + f".rank{self.dp_rank}")
        self.resume_seed = int(resume_seed)
        self._settings = dict(settings)  # hf-cb re-keys its cells from these (lm_backend_cb.use_cell)
        self.fingerprint = _sha(SIDE_VERSION, self.resume_seed, settings)
        # Per-batch sampling seeds come from the seed, the settings and the requests, NOT the model:
        # every model of a cell row draws from the same random stream (a paired comparison), and
        # bit-identical weights give identical answers whatever their metadata says.
        self.sampling = _sha("sampling", self.resume_seed,
                             {k: v for k, v in settings.items() if k not in MODEL_SETTINGS})
        self.stats = {"requests": 0, "reused": 0, "generated": 0, "batches_generated": 0, "generate_s": 0.0}
        self.answer_meta, self.batch_meta, self.doc_meta = {}, [], {}  # META per key / last batch / (task, doc)

    # ------------------------------------------------------------------ sidecar
    def sidecar_files(self) -> list[Path]:
        """The cell's sidecar and every rank's (`<partial>.rank<r>`), whatever layout wrote them."""
        if self.sidecar_base is None:
            return []
        base = self.sidecar_base
        return sorted(p for p in base.parent.glob(base.name + "*")
                      if p.name == base.name or p.name.removeprefix(base.name).startswith(".rank"))

    def _load_sidecar(self) -> dict:
        done = {}
        for path in self.sidecar_files():
            with open(path, "rb") as fh:
                for raw in fh:
                    try:  # a kill can leave a torn last line: skip it
                        row = json.loads(raw)
                    except (ValueError, UnicodeDecodeError):
                        continue
                    if isinstance(row, dict) and "key" in row and "response" in row:
                        done[row["key"]] = row["response"]
                        self.answer_meta[row["key"]] = {k: row.get(k) for k in META}
        return done

    def _append_sidecar(self, rows: list[dict]) -> None:
        if self.partial_path is None or not self.writer:
            return
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.partial_path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        kill_after = os.environ.get("LM_BACKEND_SIGTERM_AFTER")
        if kill_after and len(self._load_sidecar()) >= int(kill_after):
            os.kill(os.getpid(), signal.SIGTERM)

    # ------------------------------------------------------------------ keys and batches
    def request_keys(self, requests, salt: str | None = None) -> list[str]:
        """sha256 of (salt, task, doc, repeat, prompt, gen_kwargs) per request; salt: the sidecar's
        fingerprint (model included) by default, `self.sampling` for the per-batch seeds."""
        keys, seen = [], {}
        for r in requests:
            context, gen_kwargs = r.args
            base = _sha(self.fingerprint if salt is None else salt, r.task_name, r.doc_id, r.idx, context, gen_kwargs)
            n = seen.get(base, 0)  # repeats: the same Instance appears `repeats` times
            seen[base] = n + 1
            keys.append(_sha(base, n))
        return keys

    def _max_gen_toks(self, gen_kwargs: dict) -> int:
        from lm_eval.models.utils import normalize_gen_kwargs

        return int(normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)["max_gen_toks"])

    def check_lengths(self, requests, lengths) -> None:
        """prompt tokens + max_gen_toks must fit max_length, for every real prompt."""
        bad = []
        for r, n in zip(requests, lengths):
            mgt = self._max_gen_toks(r.args[1])
            if n + mgt > self.max_length:
                bad.append((r.task_name, r.doc_id, n, mgt))
        if bad:
            worst = max(bad, key=lambda b: b[2])
            raise PromptTooLong(
                f"{len(bad)} prompt(s) do not fit the context: prompt tokens + max_gen_toks > "
                f"max_length={self.max_length} (e.g. task {worst[0]} doc {worst[1]}: {worst[2]} prompt "
                f"tokens + {worst[3]} new tokens = {worst[2] + worst[3]}). Lower eval.max_gen_toks "
                f"below {self.max_length - worst[2]} or raise models.<size>.context "
                f"(HFLM would silently cut the prompt's start).")

    def fixed_batches(self, requests, lengths) -> list[list[int]]:
        """lm-eval's order (gen_kwargs group, longest prompt first), cut every batch_size."""
        bs = self.batch_size
        if bs == "auto" or not isinstance(bs, int) or bs < 1:
            bs = int(self._detect_batch_size()) if bs == "auto" else 1
            self.batch_size_per_gpu = bs
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        batches = []
        for _, idx in groups.items():
            idx.sort(key=lambda i: (-lengths[i], requests[i].args[0]))
            batches += [idx[j:j + bs] for j in range(0, len(idx), bs)]
        return batches

    def generate_batch_answers(self, reqs) -> list[str]:
        """Backend hook: answers for one fixed batch, in the order of `reqs`; sets self.batch_meta
        (n_new_tokens, stop_reason per answer) from the token ids HF generate returned."""
        rows = []

        def capture(**kw):  # HFLM.generate_until -> _model_generate: keep the ids it returns
            out = type(self)._model_generate(self, **kw)
            width = kw["context"].shape[1]
            rows.extend((r[width:], kw["stop"], kw["max_length"] - width) for r in out.tolist())
            return out

        self._model_generate = capture
        try:
            answers = HFLM.generate_until(self, reqs, disable_tqdm=True)
        finally:
            del self._model_generate
        # HFLM's Collator order (longest prompt first, then text: a stable sort) -> ours
        order = sorted(range(len(reqs)), key=lambda i: (-len(self.tok_encode(reqs[i].args[0])), reqs[i].args[0]))
        self.batch_meta = [{}] * len(reqs)
        if len(rows) == len(reqs):
            for i, (ids, until, mgt) in zip(order, rows):
                self.batch_meta[i] = self.stop_meta(ids, until, mgt)
        return answers

    @property
    def turn_end_ids(self) -> set[int]:
        """The chat template's end-of-turn token (elicit/eval/stops.turn_end_ids), always an EOS id."""
        if getattr(self, "_turn_end_ids", None) is None:
            from elicit.eval.stops import turn_end_ids

            self._turn_end_ids = turn_end_ids(self.tokenizer)
        return self._turn_end_ids

    def stop_meta(self, ids, until, max_gen_toks) -> dict:
        from elicit.eval.stops import stop_info

        gc_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = set(gc_eos if isinstance(gc_eos, (list, tuple)) else [gc_eos] if gc_eos is not None else [])
        eos |= {int(self.eot_token_id)} if self.eot_token_id is not None else set()
        eos |= self.turn_end_ids
        n, why = stop_info(ids, eos, until, max_gen_toks, self.tok_decode, self.tokenizer.pad_token_id)
        return {"n_new_tokens": n, "stop_reason": why}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        import time

        import torch
        from tqdm import tqdm

        t0 = time.perf_counter()
        lengths = [len(self.tok_encode(r.args[0])) for r in requests]
        self.check_lengths(requests, lengths)
        keys, seeds = self.request_keys(requests), self.request_keys(requests, self.sampling)
        done = self._load_sidecar()
        self.stats["requests"] += len(requests)
        reused = sum(k in done for k in keys)
        self.stats["reused"] += reused
        pbar = tqdm(total=len(requests), initial=reused, disable=disable_tqdm or not self.writer or self.dp_rank,
                    desc="generate_until (resumable)")
        if self.group is not None:  # every rank has read the sidecars before any rank appends
            import torch.distributed as dist

            dist.barrier(group=self.group)
        todo = [b for b in self.fixed_batches(requests, lengths) if not all(keys[i] in done for i in b)]
        new = {}
        for batch in todo[self.dp_rank::self.dp_world]:  # dp: every world-th missing batch
            torch.manual_seed(int(_sha(self.sampling, [seeds[i] for i in batch])[:15], 16))
            self.batch_meta = []
            answers = self.generate_batch_answers([requests[i] for i in batch])
            metas = self.batch_meta if len(self.batch_meta) == len(batch) else [{}] * len(batch)
            rows = []
            for i, ans, meta in zip(batch, answers, metas):
                self.answer_meta[keys[i]] = {k: meta.get(k) for k in META}
                if keys[i] not in done:
                    self.stats["generated"] += 1
                    pbar.update(1)
                done[keys[i]] = new[keys[i]] = ans
                rows.append({"key": keys[i], "task": requests[i].task_name, "doc_id": requests[i].doc_id,
                             "response": ans, **self.answer_meta[keys[i]]})
            self.stats["batches_generated"] += 1
            self._append_sidecar(rows)
        pbar.close()
        if self.dp_world > 1:  # every rank gets every answer (lm-eval scores on each rank)
            import torch.distributed as dist

            parts = [None] * self.dp_world
            dist.all_gather_object(parts, new, group=self.group)
            for part in parts:
                done.update(part)
            metas = [None] * self.dp_world
            dist.all_gather_object(metas, {k: self.answer_meta.get(k) for k in new}, group=self.group)
            for part in metas:
                self.answer_meta.update({k: v for k, v in part.items() if v})
            self.stats["generated"] = sum(len(p) for p in parts)
        self.stats["generate_s"] += round(time.perf_counter() - t0, 3)  # wall time, the slowest rank's
        for r, k in zip(requests, keys):  # eval_cell adds them to the samples file
            self.doc_meta[(r.task_name, r.doc_id)] = self.answer_meta.get(k) or {}
        return [done[k] for k in keys]


@register_model("hf-resumable")
class ResumableHFLM(ResumableMixin, HFLM):
    def __init__(self, partial_path: str = "", resume_seed: int = 0, model_fingerprint: str = "",
                 layout: str = "single", **kwargs):
        # The answers depend on the model's CONTENT (model_fingerprint: eval_cell.py computes it
        # from the hub commit / training run / file hashes), not on the path it was loaded from.
        settings = {k: kwargs.get(k) for k in ("dtype", "max_length")}
        settings.update(model=model_fingerprint or kwargs.get("pretrained"), batch_size=kwargs.get("batch_size"),
                        backend="hf-resumable")
        if not model_fingerprint:
            settings.update(peft=kwargs.get("peft"), revision=kwargs.get("revision"))
        super().__init__(**kwargs)
        self._resumable_init(partial_path, resume_seed, settings, layout)
