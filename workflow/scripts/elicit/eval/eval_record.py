"""The result record of one evaluation cell (eval_cell.py): the generation settings handed to lm-eval,
the primary metric, one row per document, the record's fields, and no HF token in any of them.
"""
from __future__ import annotations

import os

from elicit.eval.lm_tasks import FEWSHOT_SEED, NUMPY_SEED, PYTHON_SEED, prompts_sha256
from elicit.provenance import versions

# Preferred primary metrics, in order ("metric,filter" as lm-eval reports them).
PRIMARY_METRICS = ("exact_match,none", "exact_match,flexible-extract", "exact_match,strict-match")


def generation_kwargs(args) -> dict:
    """The gen_kwargs we hand to lm-eval; they update the task YAML's generation_kwargs."""
    sample = args.temperature > 0
    return {
        "do_sample": sample,
        "temperature": float(args.temperature) if sample else 0.0,
        "top_p": float(args.top_p),
        "top_k": int(args.top_k),
        "min_p": float(args.min_p) if args.min_p > 0 else None,
        "repetition_penalty": float(args.repetition_penalty),
        "max_gen_toks": int(args.max_gen_toks),
    }


def pick_primary(task_results: dict, wanted: str | None) -> str:
    numeric = [k for k, v in task_results.items()
               if "," in k and "_stderr" not in k and isinstance(v, (int, float))]
    if wanted:
        if wanted not in numeric:
            raise SystemExit(f"metric {wanted!r} not in results: {numeric}")
        return wanted
    for k in PRIMARY_METRICS:
        if k in numeric:
            return k
    if not numeric:
        raise SystemExit(f"no numeric metric in results: {sorted(task_results)}")
    return numeric[0]


def per_sample(logged: list[dict], primary: str, meta: dict | None = None, task: str | None = None) -> list[dict]:
    """One row per document of the primary metric's filter: target, response, score, prompt, and
    (our backends; None with plain `hf`) n_new_tokens and stop_reason (elicit/eval/stops.py), and
    uncut: hf-cb's whole text, before its stop-string cut, where the cut removed something."""
    meta = meta or {}
    metric_name, filter_key = primary.split(",", 1)
    samples = []
    for ex in sorted(logged, key=lambda e: e["doc_id"]):
        if ex.get("filter") != filter_key:
            continue
        doc = ex.get("doc") or {}
        resps = ex["resps"][0] if ex.get("resps") else []
        samples.append({
            "doc_id": ex["doc_id"],
            "id": doc.get("id", ex["doc_id"]) if isinstance(doc, dict) else ex["doc_id"],
            "target": ex["target"],
            "response": resps[0] if resps else None,
            "filtered": ex["filtered_resps"][0] if ex.get("filtered_resps") else None,
            "score": ex.get(metric_name),
            "prompt": ex["arguments"][0][0] if ex.get("arguments") else None,
            "prompt_hash": ex.get("prompt_hash"),
            **{k: (meta.get((task, ex["doc_id"])) or {}).get(k) for k in ("n_new_tokens", "stop_reason", "uncut")},
        })
    return samples


def describe(args, results: dict, primary: str, samples: list[dict], limit) -> dict:
    """The result record: score and metrics, the settings asked for and those lm-eval used."""
    task_res = results["results"][args.task]
    metrics = {}
    for k, v in task_res.items():
        if "," in k and isinstance(v, (int, float)):
            name, flt = k.split(",", 1)
            metrics[name if flt == "none" else k] = v
    return {
        "task": args.task, "seed": int(args.seed), "model": args.model, "adapter": args.adapter,
        "revision": args.revision, "primary_metric": primary, "metrics": metrics,
        "score": 100.0 * float(task_res[primary]),
        "n_samples": int(results.get("n-samples", {}).get(args.task, {}).get("effective", len(samples))),
        "limit": limit,
        "generation": dict(results["configs"][args.task].get("generation_kwargs") or {}),
        "requested_generation": generation_kwargs(args),
        "seeds": {"python": PYTHON_SEED, "numpy": NUMPY_SEED, "torch": int(args.seed), "fewshot": FEWSHOT_SEED},
        "chat_template": True, "enable_thinking": getattr(args, "enable_thinking", None),
        "task_version": results.get("versions", {}).get(args.task),
        "dtype": args.dtype, "batch_size": args.batch_size, "backend": args.backend, "layout": args.layout,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "prompts_sha256": prompts_sha256(samples),
        "versions": versions(),
    }


def scrub(obj):
    """Belt and braces: never let an HF token reach an output file."""
    tokens = [os.environ.get(v) for v in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]
    tokens = [t for t in tokens if t and len(t) >= 8]
    if not tokens:
        return obj
    if isinstance(obj, str):
        for t in tokens:
            obj = obj.replace(t, "***")
        return obj
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj
