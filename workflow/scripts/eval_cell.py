#!/usr/bin/env python
"""Evaluate ONE (model, task, seed) cell with lm-evaluation-harness (HF backend).

Runs `lm_eval.simple_evaluate(model="hf", apply_chat_template=True, ...)` on one task and
writes a small result JSON plus a per-document samples file next to it:

  OUT.json           {task, seed, model, adapter, revision, metrics, score, n_samples,
                      generation, versions, elapsed_s, ...}   (score = primary metric x 100)
  OUT.samples.jsonl  one line per document: id, target, response, score, n_new_tokens,
                     stop_reason (eos | stop:<string> | max_gen_toks), ...

Examples: one cell of the offline demo, after `snakemake --profile profiles/local` built its
models, with the demo config's settings (`snakemake -n -p` prints every cell's command as the
workflow runs it; the settings come from elicit/steps.py); then a real cell on a GPU:

  python workflow/scripts/eval_cell.py \\
      --model results/demo/models/tiny-a/base --adapter results/models/tiny-a/lora/model \\
      --task demo_aime --include-path workflow/tasks/demo --seed 1 --max-gen-toks 40 \\
      --temperature 0.6 --top-p 1.0 --top-k 0 --min-p 0 --repetition-penalty 1.0 \\
      --batch-size auto --backend hf-cb --max-length 2048 --layout single \\
      --out /tmp/demo_lora_aime_seed1.json

  python workflow/scripts/eval_cell.py --model Qwen/Qwen2.5-7B-Instruct \\
      --task gpqa_diamond_cot_zeroshot --seed 2 --max-gen-toks 29000 \\
      --temperature 0.6 --top-p 1.0 --top-k 0 --min-p 0 --repetition-penalty 1.0 \\
      --max-length 32768 --device cuda --dtype bfloat16 --batch-size auto --backend hf-cb \\
      --layout single --out results/eval/7B/base/gpqa_diamond_cot_zeroshot/seed2.json

Pitfalls this program defuses (see tests/test_evaluate.py):
  * Upstream task YAMLs say `do_sample: false`; lm-eval merges our gen_kwargs into the
    YAML's with dict.update, so a temperature alone would stay greedy. We always pass
    do_sample explicitly (True iff --temperature > 0).
  * HF `generate` fills every setting we do not pass from the checkpoint's
    generation_config (Qwen2.5-Instruct: top_p 0.8, top_k 20, repetition_penalty 1.05).
    We pass temperature, top_p, top_k (0 = off), min_p (0 = off, sent as None) and
    repetition_penalty every time.
  * GPQA's process_docs shuffles the choices with Python's global `random` inside a
    `datasets` map, and `datasets` caches map results by the function's code, not the random
    state: a cache filled by another process (e.g. fetch_tasks, unseeded) would fix the order
    by whatever that process drew, differently on every fresh machine. So we turn datasets'
    transform cache off (the downloaded data stay cached), seed Python's `random` with the
    fixed PYTHON_SEED right before the task is built, and keep numpy/fewshot seeds FIXED;
    only torch_random_seed = --seed varies; lm-eval maps process_docs twice and a fresh cache
    reuses the first map, which build_task replays in memory, so the order is plain lm-eval's on
    a fresh machine (tests/test_gpqa_order.py). The prompts are a function of the configuration:
    every seed and every machine sees the same ones, and OUT.json records their sha256
    (`prompts_sha256`) so that any difference shows.
  * GPQA's YAML has no max_gen_toks (lm-eval's HF default is 256); we always pass one.
  * lm-eval asserts max_gen_toks < the model's context length (default: the checkpoint
    config's); the workflow passes --max-length = models.<size>.context. Our backends also
    check every real tokenized prompt: prompt + max_gen_toks > max_length is an error with
    a clear message (plain HFLM silently cuts the prompt's start).
  * Resume after a kill (SIGTERM from SLURM): the backends hf-cb (default) and hf-resumable
    (lm_backend.py) appends each finished answer to OUT.partial.jsonl (not a Snakemake
    output) and a rerun generates only the missing ones; batches have a fixed composition
    and a seed derived from (seed, request keys), so a resumed run equals an uninterrupted
    one. Answers are keyed by the model's CONTENT fingerprint (provenance.py), so a model
    retrained under the same path never reuses the old model's answers. OUT.json's
    "resume" says how many answers were reused / generated. hf-cb seeds every answer on its
    own (lm_backend_cb.py): answers do not depend on the concurrency or the job's other cells.
  * Several cells in one job (--task/--seed lists, one --out per task x seed, task-major;
    elicit/eval/eval_pool.py): one model load, with hf-cb one continuous-batching run for all.
  * Several GPUs (--layout, launched with torchrun): dp = a replica per GPU, the fixed
    batches shared out (the answers equal one process's); tp = transformers tensor parallel
    (tp_plan="auto") for a model that does not fit one GPU; split = accelerate's layer split
    (lm-eval parallelize=True, one process: GPUs run one after another).

The HF hub is off (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1) unless --allow-hub true is given.
The HF token is never printed or written: output files are scrubbed of $HF_TOKEN's value.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from elicit import backends, repo_path
from elicit.eval import cell, eval_pool
from elicit.eval.eval_record import PRIMARY_METRICS
from elicit.eval.stops import max_gen_toks_problem
from elicit.flags import dataclass_parser, help_


@dataclass
class EvalConfig:
    """One job's settings. The fields without a default are config values (eval.*, models.<size>.context, the
    planned layout): the rule passes each one (elicit/steps.py), so no default here can disagree with the config."""
    # the model
    model: str = field(metadata=help_("local model dir or hub id (the base model)"))
    batch_size: str = field(metadata=help_("an integer, or auto / auto:N (eval.batch_size)"))
    max_length: int = field(metadata=help_("context length lm-eval allows, prompt + generation (models.<size>.context)"))
    backend: str = field(metadata=help_("lm-eval model (eval.backend): " + backends.summary(), backends.NAMES))
    layout: str = field(metadata=help_(
        "GPUs of the job: single | dp (torchrun, a replica per GPU) | tp (torchrun, tensor parallel) | split (one "
        "process, layers split over the GPUs)", backends.ALL_LAYOUTS))
    # the cells: several tasks and seeds = one job generating all their cells together
    task: list[str] = field(metadata=help_(
        "lm-eval task name(s), e.g. aime24, gpqa_diamond_cot_zeroshot, demo_aime (--out: one per task x seed)"))
    seed: list[int] = field(metadata=help_("sampling seed(s) (only this varies across seeds)"))
    out: list[str] = field(metadata=help_(
        "result JSON path per cell, task-major (task1 seed1, task1 seed2, ...); samples go to <stem>.samples.jsonl"))
    # generation (all passed explicitly to HF generate)
    max_gen_toks: int = field(metadata=help_("maximum new tokens per response"))
    temperature: float = field(metadata=help_("eval.temperature; 0 = greedy"))
    top_p: float = field(metadata=help_("eval.top_p; 1.0 = off"))
    top_k: int = field(metadata=help_("eval.top_k; 0 = off"))
    min_p: float = field(metadata=help_("eval.min_p; 0 = off"))
    repetition_penalty: float = field(metadata=help_("eval.repetition_penalty; 1.0 = off"))
    adapter: str | None = field(default=None, metadata=help_("PEFT adapter dir, applied on --model (lm-eval peft=)"))
    revision: str | None = field(default=None, metadata=help_(
        "hub revision of --model (lm-eval also passes it to the adapter)"))
    dtype: str = field(default="auto", metadata=help_("auto | bfloat16 | float16 | float32"))
    device: str = field(default="auto", metadata=help_("auto (cuda if available, else cpu) | cpu | cuda | cuda:N"))
    trust_remote_code: bool = field(default=False, metadata=help_("allow custom model code"))
    enable_thinking: bool | None = field(default=None, metadata=help_(
        "the chat template's enable_thinking (Qwen3; eval.enable_thinking): unset = the template's own default"))
    allow_hub: bool = field(default=False, metadata=help_("allow HF hub access (false: offline)"))
    include_path: list[str] | None = field(default=None, metadata=help_(
        "directories of extra task YAMLs; if --task is found there the built-in task index is skipped"))
    limit: float | None = field(default=None, metadata=help_("only the first N documents (tests)"))
    task_revision: list[str] | None = field(default=None, metadata=help_(
        "commit sha of the task's hub dataset to load (eval.task_revisions), one per --task ('' = unpinned); "
        "unset: what the cache holds"))
    metric: str | None = field(default=None, metadata=help_(
        "primary metric as 'name,filter' (unset: the first of %s present)" % ", ".join(PRIMARY_METRICS)))

    def __post_init__(self):
        problem = max_gen_toks_problem(self.max_gen_toks, self.max_length or None, "--max-length")
        if problem:
            raise SystemExit(f"--max-gen-toks: {problem}")


def build_parser():
    return dataclass_parser(EvalConfig, __doc__, prog="eval_cell.py")


def main(argv=None):
    """One cell: its record. Several cells (one job): the list of records."""
    job = EvalConfig(**vars(build_parser().parse_args(argv)))
    job.include_path = [repo_path(p) for p in job.include_path] if job.include_path else None
    todo = cell.cells(job)
    done = cell.main_cell(todo[0]) if len(todo) == 1 else eval_pool.run_cells(todo)
    close_ranks()
    return done


def close_ranks() -> None:
    """Under torchrun (dp/tp): every rank waits for the others, then closes its process group. A rank
    that exited with gloo's group still open could abort in the C++ teardown ("terminate called
    without an active exception", SIGABRT) while rank 0 still wrote the record: torchrun then
    failed the whole run (issue 29)."""
    if "torch.distributed" not in sys.modules:  # never imported: no group
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
