"""The command lines of train.py, eval_cell.py and select_checkpoint.py, built from the config in one
place: the rules (workflow/rules/common.smk) and the tests both call it, so a test runs a program
exactly as the workflow does, with the settings it overrides on top.

Every value comes from the config after `elicit.checks.config.check` filled in the schema's defaults:
the programs have no default of their own that could disagree with them. The builders (`*_args`) give
settings dicts; one renderer (`argv`, and `shell` quoting it) writes them in the dialect that every step
program's parser reads (elicit/flags.py). The rendered text is a rule's params, a rerun trigger: it must
not change (tests/test_rendered_commands.py).
"""
from __future__ import annotations

import shlex

from elicit import grid


def train_args(config: dict, size: str, trained: str) -> dict:
    """Every setting of train.py but the paths and the job-control stop margin."""
    t, lora, d, m = config["train"], config["lora"], config["data"], config["models"][size]
    args = {k: t[k] for k in ("lr", "weight_decay", "adam_beta1", "adam_beta2", "warmup_steps", "warmup_ratio",
                              "max_grad_norm", "global_batch", "max_steps", "eval_every", "tolerance",
                              "patience", "seed", "gradient_checkpointing", "loss_chunk")}
    args.update(max_seq_len=d["max_seq_len"], format=d["format"], on_too_long=d["on_too_long"],
                trust_remote_code=m["trust_remote_code"], revision=m["base_revision"] or "",
                deepspeed=m["train"]["deepspeed"] or "")  # zero2 | zero3 | zero3_offload | '' (plain DDP)
    if m.get("chat_template"):  # unset: the tokenizer's own (no flag: the paper's commands unchanged)
        args["chat_template"] = m["chat_template"]
    kind, n = grid.parse(trained)
    if kind == "lora":
        args.update(mode="lora", subset="all", lr=lora["lr"], lora_rank=lora["rank"],
                    lora_alpha=lora["alpha"], lora_targets=",".join(lora["targets"]))
    else:
        args.update(mode="full", subset=str(n))
    return dict(sorted(args.items()))  # the rule's flag order


def eval_args(config: dict, size: str, tasks=None, seeds=None, layout=None) -> dict:
    """eval_cell.py's settings for a job of `size` evaluating the cells tasks x seeds, in the rule's
    flag order: eval.* (a variant's already applied), the model's context as lm-eval's max_length,
    its trust_remote_code, one task revision per task (eval.task_revisions: none when no task is
    pinned). None = left out: no tasks/seeds/layout given, eval.limit unset. Not here: the model
    (--model/--adapter/--revision), include_args, the layout of a rule (a resource, not a params
    value) and --out."""
    e, m = config["eval"], config["models"][size]
    args = {"task": list(tasks) if tasks else None, "seed": list(seeds) if seeds else None}
    args.update({k: e[k] for k in ("max_gen_toks", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                   "batch_size", "backend")})
    # lm-eval's max_length = the context we planned with (elicit.checks.config checks max_gen_toks < context
    # at plan time; eval_cell checks the real prompts).
    # trust_remote_code and enable_thinking: no flag at their default (off, unset), the paper's command lines
    args.update(max_length=m["context"], limit=e["limit"], trust_remote_code=m["trust_remote_code"] or None,
                enable_thinking=e.get("enable_thinking"))
    revisions = [(e["task_revisions"] or {}).get(t) or "" for t in tasks or []]
    args.update(task_revision=revisions if any(revisions) else None, layout=layout)
    return args


def eval_model_args(config: dict, size: str, kind: str, run: str) -> dict:
    """eval_cell.py's --model/--revision/--adapter for a cell of configuration kind `kind` whose
    trained model is the run `run` (a variant's cell: elicit.variants.model_run)."""
    m = config["models"][size]
    if kind in ("base", "skyline"):
        return {"model": m[kind], "revision": m[f"{kind}_revision"]}
    if kind == "lora":
        return {"model": m["base"], "revision": m["base_revision"], "adapter": grid.model_dir(size, run)}
    return {"model": grid.model_dir(size, run)}


def include_args(config: dict) -> dict:
    """eval_cell.py's --include-path: the config's own, relative eval.include_path (eval_cell resolves
    it against the checkout: elicit.repo_path), never an absolute path (a moved checkout reruns nothing)."""
    return {"include_path": config["eval"]["include_path"] or None}


def select_args(config: dict) -> dict:
    """Every setting of select_checkpoint.py but the paths (config: a variant's already applied)."""
    return {"tolerance": config["train"]["tolerance"]}


def _text(value) -> str:
    """A flag's value as the parsers read it (elicit.flags): booleans as true/false, '' kept."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def argv(args: dict) -> list[str]:
    """Settings as a step program's argv, in key order: `--kebab-case value`, booleans true/false, a list
    = one flag with its values, None = left out."""
    out = []
    for k, v in args.items():
        if v is not None:
            out += [f"--{k.replace('_', '-')}", *(map(_text, v) if isinstance(v, list) else [_text(v)])]
    return out


def shell(args: dict) -> str:
    """The same flags for a shell command, every value quoted."""
    return shlex.join(argv(args))


def placeholders(args: dict, where: str = "params") -> str:
    """Snakemake shell placeholders of `args`' flags ('--tolerance {params.tolerance}'): for a rule
    whose params stay one value per setting (what Snakemake compares to decide on a rerun)."""
    return " ".join(argv({k: f"{{{where}.{k}}}" for k in args}))
