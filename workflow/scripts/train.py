#!/usr/bin/env python
"""Finetune one model on one training subset: full-parameter or rank-r LoRA.

One readable loop (nanoGPT style): AdamW, linear warmup + cosine decay, a global batch
of `global_batch` sequences = micro_batch x grad_accum x world_size, one sequence per
micro-batch (no pad tokens are ever computed). Validation loss at step 0 and every
`eval_every` steps goes to metrics.jsonl. Only the checkpoint that can still be
selected is kept (the last one within `tolerance` nats of the best loss): when a
later evaluation qualifies, the earlier one can never be "the last within tolerance"
again, and one that does not qualify never will, since the best loss only falls.

A SIGTERM/SIGUSR1 (SLURM's warning before the time limit) saves a resume state in
<out>/work/resume at the next step and exits 143; the rerun continues from it.

Launch:
  python workflow/scripts/train.py --model M --table results/data/s1k.parquet \\
      --manifest results/data/manifest.json --subset 29 --out results/train/7B/full-29
  torchrun --nproc_per_node 8 workflow/scripts/train.py ...        # one node
  srun torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
      --rdzv_endpoint $HEAD:$PORT workflow/scripts/train.py ...     # several nodes
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from atomic import atomic_dir, read_jsonl, write_jsonl
from chat_format import IGNORE_INDEX, tokenize_example


@dataclass
class TrainConfig:
    model: str = field(metadata={"help": "base model: local dir or hub id"})
    table: str = field(metadata={"help": "parquet table written by prepare_data.py fetch"})
    manifest: str = field(metadata={"help": "manifest.json written by prepare_data.py split"})
    subset: str = field(metadata={"help": "training subset size, or 'all' (every row, no validation)"})
    out: str = field(metadata={"help": "output dir: metrics.jsonl, checkpoints/, work/"})
    mode: str = field(default="full", metadata={"help": "full | lora"})
    format: str = field(default="r1", metadata={"help": "assistant format: r1 | s1"})
    lr: float = 1e-5
    weight_decay: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    global_batch: int = 16
    micro_batch: int = 1
    max_steps: int = 300
    eval_every: int = 10
    tolerance: float = 0.1
    patience: int = 3
    max_seq_len: int = 32768
    seed: int = 0
    lora_rank: int = 1
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,up_proj,gate_proj,down_proj"
    gradient_checkpointing: bool = False
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32"})
    trust_remote_code: bool = False


# ----------------------------------------------------------------------------- setup
def setup_distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def fingerprint(cfg: TrainConfig) -> str:
    keep = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out",)}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def load_examples(cfg: TrainConfig, tokenizer):
    import pandas as pd

    df = pd.read_parquet(cfg.table)
    manifest = json.loads(Path(cfg.manifest).read_text())
    if cfg.subset == "all":
        train_ids, val_ids = manifest["all"], []
    else:
        if cfg.subset not in manifest["subsets"]:
            raise SystemExit(f"subset {cfg.subset} not in manifest (has {sorted(manifest['subsets'])})")
        train_ids, val_ids = manifest["subsets"][cfg.subset], manifest["validation"]

    def encode(ids):
        out = []
        for i in ids:
            x, y = tokenize_example(tokenizer, df.iloc[i].to_dict(), cfg.format)
            out.append((x[: cfg.max_seq_len], y[: cfg.max_seq_len]))
        return out

    return encode(train_ids), encode(val_ids)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def batch_indices(step: int, n: int, cfg: TrainConfig) -> list[int]:
    """Example indices of the global batch at `step`: epochs of seeded shuffles, concatenated."""
    start = step * cfg.global_batch
    out = []
    while len(out) < cfg.global_batch:
        epoch, offset = divmod(start + len(out), n)
        perm = list(range(n))
        random.Random(cfg.seed * 100003 + epoch).shuffle(perm)
        out.extend(perm[offset: offset + cfg.global_batch - len(out)])
    return out


def token_loss_sum(model, ids, labels, device):
    x = torch.tensor([ids], device=device)
    y = torch.tensor([labels], device=device)
    logits = model(input_ids=x).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), y[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
        reduction="sum")


@torch.no_grad()
def validation_loss(model, val, rank, world, device) -> float:
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    for ids, labels in val[rank::world]:
        totals[0] += token_loss_sum(model, ids, labels, device).double()
        totals[1] += sum(1 for t in labels[1:] if t != IGNORE_INDEX)
    if world > 1:
        dist.all_reduce(totals)
    model.train()
    return (totals[0] / totals[1]).item()


# ----------------------------------------------------------------------------- state
class Stop:
    requested = False

    @classmethod
    def install(cls):
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, lambda *_: setattr(cls, "requested", True))


def save_model(model, tokenizer, path: Path) -> None:
    with atomic_dir(path) as tmp:
        getattr(model, "module", model).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def save_resume(work: Path, model, tokenizer, opt, state: dict, metrics: list[dict]) -> None:
    with atomic_dir(work / "resume") as tmp:
        getattr(model, "module", model).save_pretrained(tmp / "model")
        torch.save({"opt": opt.state_dict(), "state": state, "metrics": metrics,
                    "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}},
                   tmp / "state.pt")


def keep_only(ckpt_dir: Path, step: int | None) -> None:
    for p in ckpt_dir.glob("step-*"):
        if step is None or p.name != f"step-{step}":
            shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- main
def build_model(cfg: TrainConfig, device):
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        cfg.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_targets.split(","), task_type="CAUSAL_LM"))
    elif cfg.mode != "full":
        raise SystemExit(f"--mode must be full or lora, got {cfg.mode!r}")
    return model.to(device)


def train(cfg: TrainConfig) -> int:
    from transformers import AutoTokenizer

    rank, world, device = setup_distributed()
    master = rank == 0
    accum, rem = divmod(cfg.global_batch, cfg.micro_batch * world)
    if rem or accum == 0 or cfg.micro_batch != 1:
        raise SystemExit(f"global_batch={cfg.global_batch} must equal micro_batch(=1) x "
                         f"grad_accum x world_size({world})")
    out, work = Path(cfg.out), Path(cfg.out) / "work"
    ckpts = work / "checkpoints"
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    train_set, val_set = load_examples(cfg, tokenizer)
    model = build_model(cfg, device)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(cfg.adam_beta1, cfg.adam_beta2))
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)

    fp = fingerprint(cfg)
    state = {"step": 0, "best": math.inf, "best_step": None, "candidate": None,
             "candidate_loss": None, "bad": 0, "fingerprint": fp}
    metrics: list[dict] = []
    resume = work / "resume" / "state.pt"
    if resume.exists():
        saved = torch.load(resume, weights_only=False)
        if saved["state"]["fingerprint"] == fp:
            from safetensors.torch import load_file

            inner = getattr(model, "module", model)
            if cfg.mode == "lora":
                from peft import set_peft_model_state_dict

                set_peft_model_state_dict(inner, load_file(work / "resume" / "model" / "adapter_model.safetensors"))
            else:
                inner.load_state_dict(load_file(work / "resume" / "model" / "model.safetensors"), strict=False)
            opt.load_state_dict(saved["opt"])
            state, metrics = saved["state"], saved["metrics"]
            torch.set_rng_state(saved["rng"]["torch"])
            random.setstate(saved["rng"]["python"])
            if master:
                print(f"resumed at step {state['step']} from {resume}", flush=True)
        elif master:
            print("resume state is from other settings; starting over", flush=True)
    if master and state["step"] == 0:
        shutil.rmtree(ckpts, ignore_errors=True)
        print(f"trainable parameters: {n_trainable:,} of {n_total:,} "
              f"({100 * n_trainable / n_total:.4f}%)", flush=True)
    Stop.install()

    def log(row):
        metrics.append(row)
        if master:
            write_jsonl(work / "metrics.jsonl", metrics)
            print(json.dumps(row), flush=True)

    def evaluate_and_keep(step, extra):
        if not val_set:
            return
        loss = validation_loss(model, val_set, rank, world, device)
        state["best"], state["best_step"] = min((state["best"], state["best_step"]), (loss, step),
                                                key=lambda t: t[0])
        if loss <= state["best"] + cfg.tolerance:
            state["bad"] = 0
            if master:
                save_model(model, tokenizer, ckpts / f"step-{step}")
                keep_only(ckpts, step)
            state["candidate"], state["candidate_loss"] = step, loss
        else:
            state["bad"] += 1
        log({"step": step, "val_loss": loss, "best_val_loss": state["best"], **extra})

    model.train()
    if state["step"] == 0 and not metrics:
        evaluate_and_keep(0, {"train_loss": None, "lr": 0.0, "n_trainable": n_trainable})
    t0, tokens = time.time(), 0
    while state["step"] < cfg.max_steps and state["bad"] < cfg.patience:
        if Stop.requested:
            if master:
                save_resume(work, model, tokenizer, opt, state, metrics)
                print(f"stop requested: saved resume state at step {state['step']}", flush=True)
            return 143
        step = state["step"]
        idx = batch_indices(step, len(train_set), cfg)
        n_tok = sum(sum(1 for t in train_set[i][1][1:] if t != IGNORE_INDEX) for i in idx)
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        mine = idx[rank::world]
        for k, i in enumerate(mine):
            ids, labels = train_set[i]
            sync = k == len(mine) - 1 or world == 1
            ctx = model.no_sync() if (world > 1 and not sync) else _null()
            with ctx:
                loss = token_loss_sum(model, ids, labels, device) / n_tok * world
                loss.backward()
            loss_sum += loss.detach().double() / world
            tokens += len(ids)
        if world > 1:
            dist.all_reduce(loss_sum)
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm).item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] = step = step + 1
        extra = {"train_loss": loss_sum.item(), "lr": lr, "grad_norm": gnorm,
                 "tokens_per_s": tokens * world / max(1e-9, time.time() - t0)}
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            evaluate_and_keep(step, extra) if val_set else log({"step": step, "val_loss": None, **extra})

    if master:
        if not val_set:  # LoRA on all rows: no validation, the final state is the candidate
            save_model(model, tokenizer, ckpts / f"step-{state['step']}")
            keep_only(ckpts, state["step"])
        publish(out, work)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def publish(out: Path, work: Path) -> None:
    """Move the surviving checkpoint and the metrics into the declared outputs."""
    with atomic_dir(out / "checkpoints") as tmp:
        for p in (work / "checkpoints").glob("step-*"):
            os.replace(p, tmp / p.name)
    write_jsonl(out / "metrics.jsonl", read_jsonl(work / "metrics.jsonl"))
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    from transformers import HfArgumentParser

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    (cfg,) = HfArgumentParser(TrainConfig).parse_args_into_dataclasses(args=argv)
    return train(cfg)


if __name__ == "__main__":
    sys.exit(main())
