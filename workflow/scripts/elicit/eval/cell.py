"""One evaluation cell (a model, a task, a seed) with lm-evaluation-harness: the library side of eval_cell.py
(which parses the command line, workflow/scripts/eval_cell.py) and of eval_pool.py (the cells of one job
together). Its pitfalls and outputs: eval_cell.py's docstring.

  cells        a job's (task, seed) cells, each with its own --out
  cache_key    what a finished cell depends on; `cached`: where it is kept (done_cache)
  main_cell    one cell: restored from the finished-cell cache, or evaluated (run -> make_lm, evaluate)
  make_lm      the lm-eval model of eval.backend (elicit/backends.py), model_args its arguments
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from elicit import PACKAGE, backends, done_cache
from elicit.atomic import write_json, write_jsonl
from elicit.eval.eval_record import describe, generation_kwargs, per_sample, pick_primary, scrub
from elicit.eval.lm_tasks import FEWSHOT_SEED, NUMPY_SEED, PYTHON_SEED, build_task
from elicit.grid import samples_path
from elicit.provenance import sha256_file, versions
from elicit.train.checkpoints import published_model_problems
from elicit.train.weights import model_weights_problems

# The step program (read for the cache key, never imported: it imports this module), every elicit module it
# imports, and those the tasks' scoring files (lm-eval loads them) import: the code a finished cell depends on.
STEP = PACKAGE.parent / "eval_cell.py"
# ... and the modules that register the backends (the registry names them: no import statement to follow)
REGISTERING = [done_cache.module_file(b.register) for b in backends.REGISTRY.values() if b.register]
EVAL_CODE = done_cache.code_files(STEP, *REGISTERING, *sorted((PACKAGE.parents[1] / "tasks").glob("*/utils.py")))


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
        margs["chat_template_args"] = {"enable_thinking": bool(args.enable_thinking)}
    return margs


def partial_path(out) -> Path:
    """Sidecar of finished answers (resume after a kill); NOT a declared Snakemake output."""
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


def make_lm(args, device):
    """The lm-eval LM object of --backend (elicit/backends.py); ours also get the sidecar path, the
    seed, the model's fingerprint and the layout."""
    import torch
    from lm_eval.api.registry import get_model

    backend = backends.get(args.backend)
    layout = backends.layout_problem(args.backend, args.layout, "--layout")
    if layout and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(layout)
    backend.load()  # imports the module that registers it with lm-eval
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
    """One namespace per (task, seed) cell of a job (`args`: eval_cell.py's EvalConfig, lists of tasks, seeds
    and outs), task-major, each with its own --out."""
    pairs = [(t, s) for t in args.task for s in args.seed]
    if len(args.out) != len(pairs):
        raise SystemExit(f"--out: {len(args.out)} path(s) for {len(pairs)} cell(s) (tasks x seeds, task-major)")
    revs = args.task_revision or [None] * len(args.task)
    if len(revs) != len(args.task):
        raise SystemExit(f"--task-revision: {len(revs)} value(s) for {len(args.task)} task(s)")
    rev = dict(zip(args.task, (r or None for r in revs)))
    return [argparse.Namespace(**{**vars(args), "task": t, "seed": s, "out": o, "task_revision": rev[t]})
            for (t, s), o in zip(pairs, args.out)]


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
