"""The command line of train.py, built from the config in one place: the train rule
(workflow/rules/common.smk) and the tests both call it, so a test runs the program exactly as the
workflow does, with the settings it overrides on top.

Every value comes from the config after `elicit.config.check` filled in the schema's defaults:
train.py has no default of its own that could disagree with them.
"""
from __future__ import annotations

from elicit import grid
from elicit.slurm import cli


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
    return args


def _text(value) -> str:
    """A flag's value as train.py's parser reads it: booleans as true/false, '' kept."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def flags(args: dict) -> list[str]:
    """`--kebab-case value` pairs in key order (for a subprocess argv)."""
    return [x for k, v in sorted(args.items()) for x in (f"--{k.replace('_', '-')}", _text(v))]


def shell(args: dict) -> str:
    """The same flags for a shell command, every value quoted (elicit.slurm.cli)."""
    return cli({k.replace("_", "-"): _text(v) for k, v in sorted(args.items())})
