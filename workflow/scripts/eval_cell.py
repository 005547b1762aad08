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

The HF hub is off (HF_HUB_OFFLINE=1, HF_DATASETS_OFFLINE=1) unless --allow-hub is given.
The HF token is never printed or written: output files are scrubbed of $HF_TOKEN's value.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from elicit import PACKAGE, done_cache
from elicit.eval import backends
from elicit.atomic import write_json, write_jsonl
from elicit.train.checkpoints import published_model_problems
from elicit.eval.eval_record import PRIMARY_METRICS, describe, generation_kwargs, per_sample, pick_primary, scrub
from elicit.grid import samples_path
from elicit.integrity import model_weights_problems
from elicit.eval.lm_tasks import FEWSHOT_SEED, NUMPY_SEED, PYTHON_SEED, build_task
from elicit.provenance import sha256_file, versions

HERE = Path(__file__).resolve().parent
# this program, every elicit module it imports, and those the tasks' scoring files (lm-eval loads them) import
EVAL_CODE = done_cache.code_files(HERE / "eval_cell.py", *sorted((PACKAGE.parents[1] / "tasks").glob("*/utils.py")))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="eval_cell.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = ap.add_argument_group("model")
    m.add_argument("--model", required=True, help="local model dir or hub id (the base model)")
    m.add_argument("--adapter", default=None, help="PEFT adapter dir, applied on --model (lm-eval peft=)")
    m.add_argument("--revision", default=None, help="hub revision of --model (lm-eval also passes it to the adapter)")
    m.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32 (default: auto)")
    m.add_argument("--device", default="auto", help="auto (cuda if available, else cpu) | cpu | cuda | cuda:N")
    # The flags below without a default are config values (eval.*, models.<size>.context, the
    # planned layout): the rule passes each one, so no default here can disagree with the config.
    m.add_argument("--batch-size", required=True, help="an integer, or auto / auto:N (eval.batch_size)")
    m.add_argument("--max-length", type=int, required=True,
                   help="context length lm-eval allows, prompt + generation (models.<size>.context)")
    m.add_argument("--backend", required=True, choices=backends.NAMES,
                   help="lm-eval model (eval.backend; elicit/eval/backends.py): hf-resumable (HF generate, resumable, "
                        "prompt-length check), hf-cb (transformers continuous batching, resumable), hf-slots (static "
                        "slots, a captured decode step, resumable), hf (plain lm-eval)")
    m.add_argument("--layout", required=True, choices=backends.ALL_LAYOUTS,
                   help="GPUs of the job: single | dp (torchrun, a replica per GPU) | tp (torchrun, "
                        "tensor parallel) | split (one process, layers split over the GPUs)")
    m.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (default: off)")
    m.add_argument("--enable-thinking", choices=["true", "false"], default=None,
                   help="the chat template's enable_thinking (Qwen3; eval.enable_thinking): default unset, the "
                        "template's own default")
    m.add_argument("--allow-hub", action="store_true", help="allow HF hub access (default: offline)")
    t = ap.add_argument_group("task")
    t.add_argument("--task", required=True, nargs="+",
                   help="lm-eval task name(s), e.g. aime24, gpqa_diamond_cot_zeroshot, demo_aime; several tasks "
                        "and seeds = one job generating all their cells together (--out: one per task x seed)")
    t.add_argument("--include-path", action="append", default=None,
                   help="directory of extra task YAMLs (repeatable); if --task is found there the "
                        "built-in task index is skipped")
    t.add_argument("--limit", type=float, default=None, help="only the first N documents (tests)")
    t.add_argument("--task-revision", default=None, nargs="+",
                   help="commit sha of the task's hub dataset to load (eval.task_revisions), one per --task "
                        "('' = unpinned); default: what the cache holds")
    t.add_argument("--metric", default=None,
                   help="primary metric as 'name,filter' (default: first of %s present)" % ", ".join(PRIMARY_METRICS))
    g = ap.add_argument_group("generation (all passed explicitly to HF generate)")
    g.add_argument("--seed", type=int, required=True, nargs="+",
                   help="sampling seed(s) (only this varies across seeds)")
    g.add_argument("--max-gen-toks", type=int, required=True, help="maximum new tokens per response")
    g.add_argument("--temperature", type=float, required=True, help="eval.temperature; 0 = greedy")
    g.add_argument("--top-p", type=float, required=True, help="eval.top_p; 1.0 = off")
    g.add_argument("--top-k", type=int, required=True, help="eval.top_k; 0 = off")
    g.add_argument("--min-p", type=float, required=True, help="eval.min_p; 0 = off")
    g.add_argument("--repetition-penalty", type=float, required=True, help="eval.repetition_penalty; 1.0 = off")
    ap.add_argument("--out", required=True, nargs="+",
                    help="result JSON path per cell, task-major (task1 seed1, task1 seed2, ...); samples go to "
                         "<stem>.samples.jsonl")
    return ap


def _batch_size(value: str):
    return int(value) if str(value).isdigit() else value


def model_args(args, n_gpus: int = 0) -> dict:
    margs = {"pretrained": args.model, "dtype": args.dtype, "trust_remote_code": bool(args.trust_remote_code)}
    if args.layout == "split" and n_gpus > 1:
        # One process, the model split layer-wise over every GPU of the job (lm-eval's
        # parallelize = accelerate device_map "auto"): fits, but the GPUs take turns.
        margs["parallelize"] = True
    elif args.layout == "tp" and not backends.get(args.backend).own_tp:
        margs["tp_plan"] = "auto"  # transformers tensor parallel over the torchrun ranks
    if args.revision:
        margs["revision"] = args.revision
    if args.adapter:
        margs["peft"] = args.adapter
    if args.max_length:
        margs["max_length"] = int(args.max_length)
    if getattr(args, "enable_thinking", None) is not None:
        # a chat-template variable, not lm-eval's enable_thinking (which would also strip the thinking
        # before scoring): the answers are scored as every other cell's
        margs["chat_template_args"] = {"enable_thinking": args.enable_thinking == "true"}
    return margs


def partial_path(out) -> Path:
    """Sidecar of finished answers (resume after a kill); NOT a declared Snakemake output."""
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


def make_lm(args, device):
    """The lm-eval LM object of --backend (elicit/eval/backends.py); ours also get the sidecar path, the
    seed, the model's fingerprint and the layout."""
    from lm_eval.api.registry import get_model

    import torch

    backend = backends.get(args.backend)
    layout = backends.layout_problem(args.backend, args.layout, "--layout")
    if layout and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(layout)
    if backend.register:
        backend.register()  # imports the module that registers it with lm-eval
    margs = model_args(args, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if backend.resumable:
        margs.update(partial_path=str(partial_path(args.out)), resume_seed=int(args.seed),
                     model_fingerprint=model_identity(args)["fingerprint"], layout=args.layout)
    extra = {"batch_size": _batch_size(args.batch_size), "max_batch_size": 64}
    if not margs.get("parallelize") and "tp_plan" not in margs:
        extra["device"] = device
    return get_model(backend.lm_eval).create_from_arg_obj(margs, extra)


def set_offline(allow_hub: bool) -> None:
    if allow_hub:
        return
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    # Modules imported before us read the environment at import time.
    if "huggingface_hub" in sys.modules:
        import huggingface_hub.constants as c
        c.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        import datasets.config as dc
        dc.HF_HUB_OFFLINE = True


def model_identity(args) -> dict:
    """Content fingerprints of the model (and adapter): what the resumable answers are keyed by."""
    from elicit.provenance import model_fingerprint

    model = model_fingerprint(args.model, args.revision)
    adapter = model_fingerprint(args.adapter) if args.adapter else None
    fp = model["fingerprint"] + (f"+adapter:{adapter['fingerprint']}" if adapter else "")
    return {"model": model, "adapter": adapter, "fingerprint": fp}


def peak_gpu_memory() -> dict:
    """The allocator's peak on this process's GPU (no CUDA context), for the memory plan's check."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}


def resolve_device(args) -> str:
    import torch

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    return "cpu" if device == "auto" else device


def run(args, lm=None) -> dict:
    t0 = time.perf_counter()
    set_offline(args.allow_hub)
    device = resolve_device(args)
    limit = int(args.limit) if args.limit is not None and float(args.limit).is_integer() else args.limit
    lm = lm or make_lm(args, device)
    results, dataset = evaluate(args, lm, limit)
    if results is None or int(os.environ.get("RANK", "0")) != 0:  # not the writing rank
        return {}
    task_res = results["results"][args.task]
    primary = pick_primary(task_res, args.metric)
    samples = per_sample(results["samples"][args.task], primary, getattr(lm, "doc_meta", {}), args.task)
    record = {**describe(args, results, primary, samples, limit), "device": device,
              "max_length": int(lm.max_length), "resume": dict(getattr(lm, "stats", {})),
              "provenance": {**model_identity(args), "dataset": dataset, "versions": versions()},
              "elapsed_s": round(time.perf_counter() - t0, 3), **peak_gpu_memory()}
    write_jsonl(samples_path(args.out), scrub(samples))
    record["samples_sha256"] = sha256_file(samples_path(args.out))
    write_json(args.out, scrub(record), checksum=True)
    for side in getattr(lm, "sidecar_files", lambda: [partial_path(args.out)])():
        side.unlink(missing_ok=True)  # OUT is complete: the sidecar is spent
    return record


def evaluate(args, lm, limit):
    """lm-eval on one task: the chat template on, every generation setting explicit, only the torch
    seed from --seed (Python's stays fixed: GPQA's choice shuffle is the same for every seed)."""
    import lm_eval

    task, tm, dataset = build_task(args.task, args.include_path, args.task_revision)
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[task], task_manager=tm, limit=limit, apply_chat_template=True,
        gen_kwargs=generation_kwargs(args), log_samples=True, random_seed=PYTHON_SEED,
        numpy_random_seed=NUMPY_SEED, torch_random_seed=int(args.seed), fewshot_random_seed=FEWSHOT_SEED)
    return results, dataset


def cache_key(args) -> str:
    """What a finished cell depends on: the model's content, every setting that defines its answers, the
    task files, the package versions and this program's code (done_cache.py). Computed before torch is
    imported."""
    tasks = {}
    for d in args.include_path or []:
        for f in sorted(Path(d).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                tasks[str(f.relative_to(d))] = sha256_file(f)
    # not the settings that schedule the work (batch size where it changes no answer, layout, device):
    # a cell finished under other ones is the same answer (the record says what it was made with)
    skip = ("out", "include_path", *backends.scheduling(args.backend))
    settings = {k: v for k, v in vars(args).items() if k not in skip}
    return done_cache.key({"model": model_identity(args)["fingerprint"], "settings": settings, "tasks": tasks,
                           "versions": versions(), "code": done_cache.code_sha(*EVAL_CODE)})


def cached(out) -> tuple[Path, dict[str, Path]]:
    out = Path(out)
    return out.parent / ".done" / out.stem, {"out.json": out, "samples.jsonl": samples_path(out)}


def cells(args) -> list[argparse.Namespace]:
    """One namespace per (task, seed) cell, task-major, each with its own --out."""
    pairs = [(t, s) for t in args.task for s in args.seed]
    if len(args.out) != len(pairs):
        raise SystemExit(f"--out: {len(args.out)} path(s) for {len(pairs)} cell(s) (tasks x seeds, task-major)")
    revs = args.task_revision or [None] * len(args.task)
    if len(revs) != len(args.task):
        raise SystemExit(f"--task-revision: {len(revs)} value(s) for {len(args.task)} task(s)")
    rev = dict(zip(args.task, (r or None for r in revs)))
    return [argparse.Namespace(**{**vars(args), "task": t, "seed": s, "out": o, "task_revision": rev[t]})
            for (t, s), o in zip(pairs, args.out)]


def main(argv=None):
    """One cell: its record. Several cells (one job): the list of records."""
    args = build_parser().parse_args(argv)
    if args.max_gen_toks <= 0:
        raise SystemExit("--max-gen-toks must be positive")
    from elicit.eval import eval_pool
    from elicit import repo_path

    args.include_path = [repo_path(p) for p in args.include_path] if args.include_path else None

    todo = cells(args)
    done = main_cell(todo[0]) if len(todo) == 1 else eval_pool.run_cells(todo, sys.modules[__name__])
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


def refuse_damaged_model(args) -> None:
    """A published model whose files differ from what select_checkpoint recorded, or a base/skyline model whose
    files differ from what fetch_hub / make_demo recorded (sha256), is never loaded."""
    damaged = published_model_problems(Path(args.adapter or args.model))
    if damaged:
        raise SystemExit("eval_cell: damaged model:\n  " + "\n  ".join(damaged) + "\n  fix: rm -rf "
                         f"{Path(args.adapter or args.model)}, then rerun: it is re-published from its checkpoint")
    weights = model_weights_problems(args.model, args.revision)  # a base or skyline model the workflow fetched/built
    if weights:
        raise SystemExit("eval_cell: damaged model weights:\n  " + "\n  ".join(weights))


def main_cell(args, lm=None) -> dict:
    """One cell: restored from the finished-cell cache, or evaluated (with `lm` if given)."""
    key = cache_key(args)
    root, entries = cached(args.out)
    if (root / key / done_cache.COMPLETE).exists():  # finished before: same model, settings, code
        if int(os.environ.get("RANK", "0")) == 0:
            done_cache.restore(root, key, entries)
            print(f"finished cell with the same model, settings and code found ({root / key}): restored")
        return json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if lm is None:
        refuse_damaged_model(args)  # before loading (a pooled job checks before its one load)
    record = run(args, lm)
    if record:
        done_cache.store(root, key, entries)
        print(f"{record['task']} seed={record['seed']}: {record['primary_metric']} = "
              f"{record['score']:.2f}% over {record['n_samples']} docs -> {args.out}")
    return record


if __name__ == "__main__":
    main()
