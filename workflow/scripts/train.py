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
<out>/work/resume at the next step boundary and exits 143; the rerun continues from it
bit-exactly: model, optimizer, RNG, step (hence data position and learning rate) and the
best/candidate/bad bookkeeping are restored. Under torchrun a signal seen by any rank
stops every rank at the same step (the flag is all-reduced each step).

`--deepspeed zero2|zero3|zero3_offload` (or a path to a JSON file) trains through
deepspeed.initialize with workflow/deepspeed/<name>.json; batch size, accumulation,
clipping and precision are filled in from the training settings. ZeRO-3 checkpoints are
gathered to full 16-bit weights on rank 0 (save_pretrained format, like the plain path).

Launch:
  python workflow/scripts/train.py --model M --table results/data/s1k.parquet \\
      --manifest results/data/manifest.json --subset 29 --out results/train/7B/full-29
  torchrun --nproc_per_node 8 workflow/scripts/train.py ...        # one node
  srun --nodes 2 --ntasks-per-node 8 --cpus-per-task 8 --kill-on-bad-exit=1 \\
      python workflow/scripts/train.py ...                          # several nodes, a task per GPU
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from atomic import atomic_dir, read_json, read_jsonl, replace_dir, write_json, write_jsonl
from chat_format import IGNORE_INDEX, encode_rows
from lm_loss import TokenLoss
import done_cache
from launch import ranks_from_slurm
from provenance import PROVENANCE, model_fingerprint, sha256_file, sha256_json, versions


@dataclass
class TrainConfig:
    model: str = field(metadata={"help": "base model: local dir or hub id"})
    table: str = field(metadata={"help": "parquet table written by prepare_data.py fetch"})
    manifest: str = field(metadata={"help": "manifest.json written by prepare_data.py split"})
    subset: str = field(metadata={"help": "training subset size, or 'all' (every row, no validation)"})
    out: str = field(metadata={"help": "output dir: metrics.jsonl, checkpoints/, work/"})
    revision: str = field(default="", metadata={"help": "hub revision of --model ('' = main)"})
    mode: str = field(default="full", metadata={"help": "full | lora"})
    format: str = field(default="r1", metadata={"help": "assistant format: r1 | s1"})
    lr: float = 1e-5
    weight_decay: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    warmup_steps: int = 0
    warmup_ratio: float = field(default=0.0, metadata={"help": (
        "warmup as a fraction of max_steps (s1's recipe: 0.05), rounded; used when warmup_steps is 0")})
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    global_batch: int = 16
    micro_batch: int = 1
    max_steps: int = 300
    eval_every: int = 10
    tolerance: float = 0.1
    patience: int = 3
    max_seq_len: int = 32768
    on_too_long: str = field(default="truncate", metadata={"help": "truncate | drop (data.on_too_long)"})
    seed: int = 0
    lora_rank: int = 1
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,up_proj,gate_proj,down_proj"
    gradient_checkpointing: bool = False
    loss_impl: str = field(default="auto", metadata={"help": (
        "auto | chunked | liger | materialised: how the LM head + cross-entropy run (lm_loss.py); "
        "auto = liger on CUDA when installed and the head is whole, else chunked")})
    loss_chunk: int = field(default=512, metadata={"help": "supervised tokens per LM-head chunk"})
    dtype: str = field(default="auto", metadata={"help": (
        "auto | bf16 | fp32. auto: fp32 on CPU; on GPU bf16 compute with fp32 master weights "
        "(DeepSpeed: bf16 module + its fp32 optimizer copy; plain: fp32 weights + autocast). "
        "bf16 on the plain path is pure bf16: lr 1e-5 updates mostly round away")})
    trust_remote_code: bool = False
    deepspeed: str = field(default="", metadata={
        "help": "'' (plain torch/DDP) | zero2 | zero3 | zero3_offload | path/to/config.json"})
    stop_margin_min: float = field(default=0.0, metadata={"help": (
        "inside a SLURM job: save the resume state and exit 143 this many minutes before the "
        "job's time limit (0: off). Must cover one step + one resume save")})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar on rank 0 (stderr)"})


DS_DIR = Path(__file__).resolve().parents[1] / "deepspeed"
HERE = Path(__file__).resolve().parent
# The code a finished run depends on (its done-cache key): an edit retrains, a rerun does not.
TRAIN_CODE = [HERE / f for f in ("train.py", "lm_loss.py", "chat_format.py", "chat_template.py")]


def grad_accum(global_batch: int, micro_batch: int, world: int) -> int:
    """Micro-batches per rank per step; fails naming the numbers unless they divide."""
    accum, rem = divmod(global_batch, micro_batch * world) if micro_batch * world else (0, 1)
    if rem or accum == 0 or micro_batch != 1:
        raise SystemExit(
            f"global_batch={global_batch} must equal micro_batch ({micro_batch}, must be 1) x "
            f"grad_accum x world_size ({world}): {global_batch} is not a positive multiple of "
            f"{micro_batch * world}; choose a global_batch divisible by gpus x nodes = {world}")
    return accum


# ----------------------------------------------------------------------------- setup
def setup_distributed():
    os.environ.update(ranks_from_slurm())  # started by srun (multi-node): one task per rank
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return rank, world, device


def init_distributed(world: int, device, use_deepspeed: bool) -> None:
    if world > 1 and use_deepspeed:
        import deepspeed

        deepspeed.init_distributed("nccl" if device.type == "cuda" else "gloo")
    elif world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def fingerprint_parts(cfg: TrainConfig) -> dict:
    """What this run's result depends on, by content: every setting, the bytes of the data table
    and of the split manifest (the split settings live in it), and the base model's fingerprint
    (hub commit, or the hash of a local directory). Job control (out, progress, stop margin) is
    left out: it does not change the result."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("out", "progress", "stop_margin_min", "table", "manifest", "model")}
    return {"settings": sha256_json(settings), "table": sha256_file(cfg.table),
            "manifest": sha256_file(cfg.manifest),
            "base_model": model_fingerprint(cfg.model, cfg.revision or None)["fingerprint"]}


def fingerprint(parts: dict) -> str:
    return sha256_json(parts)[:16]


def load_examples(cfg: TrainConfig, tokenizer):
    import pandas as pd

    df = pd.read_parquet(cfg.table)
    manifest = read_json(cfg.manifest, keys=("all", "subsets", "validation"))
    if cfg.subset == "all":
        train_ids, val_ids = manifest["all"], []
    else:
        if cfg.subset not in manifest["subsets"]:
            raise SystemExit(f"subset {cfg.subset} not in manifest (has {sorted(manifest['subsets'])})")
        train_ids, val_ids = manifest["subsets"][cfg.subset], manifest["validation"]

    def encode(ids):  # data.on_too_long: truncate or drop, counted in the report, never silent
        rows = [df.iloc[i].to_dict() for i in ids]
        return encode_rows(tokenizer, rows, cfg.format, cfg.max_seq_len, cfg.on_too_long, ids=ids)

    (train_set, train_report), (val_set, val_report) = encode(train_ids), encode(val_ids)
    if not train_set:
        raise SystemExit(f"no training example fits max_seq_len={cfg.max_seq_len} "
                         f"(on_too_long={cfg.on_too_long})")
    return train_set, val_set, {"train": train_report, "validation": val_report}


def warmup_steps(cfg: TrainConfig) -> int:
    return cfg.warmup_steps or round(cfg.warmup_ratio * cfg.max_steps)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over warmup_steps(cfg) steps, then cosine decay to min_lr_ratio x lr."""
    warm = warmup_steps(cfg)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.max_steps - warm)
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


def n_supervised(labels) -> int:
    return sum(1 for t in labels[1:] if t != IGNORE_INDEX)


@torch.no_grad()
def validation_loss(model, val, rank, world, device, loss_fn) -> float:
    """Token-weighted mean loss over every validation example, on any world size.

    Rank r takes val[r::world]. Under ZeRO-3 every forward is a collective (parameter
    all-gathers), so every rank runs the SAME number of forward passes, ceil(len(val)/world):
    a rank with fewer examples repeats the shortest one with weight 0 (72 examples on 16
    ranks: 8 ranks run one such pass). The reduced loss is over exactly the real examples."""
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    mine = val[rank::world]
    passes = -(-len(val) // world)
    filler = min(val, key=lambda e: len(e[0]))
    for k in range(passes):
        ids, labels = mine[k] if k < len(mine) else filler
        loss = loss_fn(model, ids, labels, device).double()
        if k < len(mine):
            totals[0] += loss
            totals[1] += n_supervised(labels)
    if world > 1:
        dist.all_reduce(totals)
    model.train()
    return (totals[0] / totals[1]).item()


# ----------------------------------------------------------------------------- state
def slurm_seconds(text: str) -> float | None:
    """Seconds in a SLURM duration ('[D-]HH:MM:SS', 'MM:SS', 'SS'); None for UNLIMITED etc."""
    days, _, hms = text.strip().rpartition("-")
    try:
        parts = [int(x) for x in hms.split(":")]
        d = int(days) if days else 0
    except ValueError:
        return None
    if not 1 <= len(parts) <= 3:
        return None
    secs = 0
    for x in parts:
        secs = secs * 60 + x
    return float(d * 86400 + secs)


def slurm_job_end() -> float | None:
    """Epoch seconds at which SLURM ends this job; None outside SLURM or without a limit."""
    if os.environ.get("SLURM_JOB_END_TIME"):  # Slurm >= 23.02 exports it
        return float(os.environ["SLURM_JOB_END_TIME"])
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:  # older Slurm: the time left, as squeue reports it now
        left = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True,
                              text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    secs = slurm_seconds(left)
    return None if secs is None else time.time() + secs


class Stop:
    """Why training stops early: a signal (SIGTERM/SIGUSR1) or the job's time limit ahead.

    SLURM's own warning signal cannot reach train.py under snakemake's executor (see
    workflow/rules/train.smk), so the job watches its clock instead: `stop_margin_min`
    before the limit it saves the resume state and exits 143; the retry continues."""
    requested = False
    deadline: float | None = None

    @classmethod
    def install(cls, margin_min: float = 0.0):
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, lambda *_: setattr(cls, "requested", True))
        end = slurm_job_end() if margin_min > 0 else None
        cls.deadline = None if end is None else end - 60 * margin_min
        return end

    @classmethod
    def agreed(cls, world: int, device) -> bool:
        """True on every rank once any rank has been signalled (ranks stop at the same step)."""
        if cls.deadline is not None and time.time() >= cls.deadline and not cls.requested:
            cls.requested = True
            print("the job's time limit is within stop_margin_min: saving the resume state",
                  flush=True)
        if world == 1:
            return cls.requested
        flag = torch.tensor([1.0 if cls.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def is_zero3(model) -> bool:
    return getattr(model, "zero_optimization_stage", lambda: 0)() == 3


def save_model(model, tokenizer, path: Path, master: bool = True, provenance: dict | None = None) -> None:
    """save_pretrained on rank 0. Call on EVERY rank: ZeRO-3 gathers the shards first.
    `provenance` (training-run fingerprint, step, versions) goes to provenance.json beside the
    weights: evaluation keys its resumable answers by it."""
    state_dict = model._zero3_consolidated_16bit_state_dict() if is_zero3(model) else None
    if not master:
        return
    with atomic_dir(path) as tmp:
        inner = getattr(model, "module", model)
        if state_dict is not None:
            inner.save_pretrained(tmp, state_dict=state_dict)
        else:
            inner.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if provenance is not None:
            (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_resume(work: Path, model, opt, state: dict, metrics: list[dict], master: bool,
                world: int) -> None:
    """Resume state, written to a temporary dir and renamed: all of it or none of it.
    (Not atomic_dir: every DeepSpeed rank must know the temporary dir's name.)

    Plain path: rank 0 writes the model (save_pretrained, exact fp32/bf16 tensors) and
    optimizer state (DDP keeps them identical on every rank). DeepSpeed: every rank writes
    its shard with engine.save_checkpoint into the same temporary dir first.
    """
    tmp = work / ".tmp-resume"
    if master:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if world > 1:
        dist.barrier()
    blob = {"state": state, "metrics": metrics, "rng": rng_state()}
    if hasattr(model, "save_checkpoint"):  # DeepSpeed engine: collective
        model.save_checkpoint(str(tmp / "ds"), tag="resume")
    elif master:
        getattr(model, "module", model).save_pretrained(tmp / "model")
        blob["opt"] = opt.state_dict()
    if world > 1:
        dist.barrier()
    if master:
        torch.save(blob, tmp / "state.pt")
        replace_dir(tmp, work / "resume")
    if world > 1:
        dist.barrier()


def load_resume(work: Path, model, opt, cfg: TrainConfig, saved: dict) -> None:
    from safetensors.torch import load_file

    if hasattr(model, "load_checkpoint"):  # DeepSpeed engine
        model.load_checkpoint(str(work / "resume" / "ds"), tag="resume")
    else:
        inner = getattr(model, "module", model)
        if cfg.mode == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(inner, load_file(work / "resume" / "model" / "adapter_model.safetensors"))
        else:
            missing, unexpected = inner.load_state_dict(
                load_file(work / "resume" / "model" / "model.safetensors"), strict=False)
            tied = set(getattr(inner, "_tied_weights_keys", None) or [])
            if unexpected or any(k not in tied and "lm_head" not in k for k in missing):
                raise SystemExit(f"resume state does not fit the model: missing {missing}, "
                                 f"unexpected {unexpected}")
        opt.load_state_dict(saved["opt"])
    set_rng_state(saved["rng"])


def checkpoint_count(ckpt_dir: Path) -> int:
    """Checkpoint directories on disk, half-written (.tmp-step-*) ones included."""
    return sum(1 for p in ckpt_dir.glob("*step-*") if p.is_dir()) if ckpt_dir.exists() else 0


def keep_only(ckpt_dir: Path, step: int | None) -> None:
    for p in ckpt_dir.glob("step-*"):
        if step is None or p.name != f"step-{step}":
            shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- main
def build_model(cfg: TrainConfig, device):
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        cfg.dtype, torch.bfloat16 if device.type == "cuda" and cfg.deepspeed else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model, revision=cfg.revision or None, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
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


def deepspeed_config(cfg: TrainConfig, accum: int, world: int, device) -> dict:
    path = Path(cfg.deepspeed) if cfg.deepspeed.endswith(".json") else DS_DIR / f"{cfg.deepspeed}.json"
    if not path.exists():
        raise SystemExit(f"--deepspeed {cfg.deepspeed}: no such config {path}")
    ds = json.loads(path.read_text())
    bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    ds.update(train_micro_batch_size_per_gpu=cfg.micro_batch, gradient_accumulation_steps=accum,
              train_batch_size=cfg.global_batch, gradient_clipping=cfg.max_grad_norm,
              bf16={"enabled": bf16}, steps_per_print=10**9, wall_clock_breakdown=False)
    if "optimizer" in ds:  # offload configs: DeepSpeed's CPU AdamW, our hyperparameters
        ds["optimizer"]["params"] = {"lr": cfg.lr, "betas": [cfg.adam_beta1, cfg.adam_beta2],
                                     "eps": 1e-8, "weight_decay": cfg.weight_decay}
    return ds


def train(cfg: TrainConfig) -> int:
    from transformers import AutoTokenizer

    rank, world, device = setup_distributed()
    master = rank == 0
    accum = grad_accum(cfg.global_batch, cfg.micro_batch, world)  # before any collective
    out, work = Path(cfg.out), Path(cfg.out) / "work"
    parts = fingerprint_parts(cfg)
    fp = fingerprint(parts)
    done_key = done_cache.key({"run": fp, "code": done_cache.code_sha(*TRAIN_CODE)})
    if (out / ".done" / done_key / done_cache.COMPLETE).exists():  # finished before, same inputs and code
        if master:
            done_cache.restore(out / ".done", done_key, published(out))
            print(f"finished run with the same inputs, settings and code found ({out / '.done' / done_key}): "
                  "restored, nothing retrained", flush=True)
        return 0
    init_distributed(world, device, bool(cfg.deepspeed))
    ckpts = work / "checkpoints"
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision or None,
                                              trust_remote_code=cfg.trust_remote_code)
    train_set, val_set, data_report = load_examples(cfg, tokenizer)
    if master:
        write_json(out / "data.json", data_report)
        for part, rep in data_report.items():
            if rep.get("too_long"):
                print(f"{part}: {rep['too_long']} sequences over max_seq_len={cfg.max_seq_len}: "
                      f"{rep['truncated']} truncated, {rep['dropped']} dropped "
                      f"(see {out / 'data.json'})", flush=True)
    ds = deepspeed_config(cfg, accum, world, device) if cfg.deepspeed else None
    if ds and ds.get("zero_optimization", {}).get("stage") == 3:
        # zero.Init: from_pretrained loads each rank's shard only (a 32B model would
        # otherwise sit whole in CPU memory once per process). Must outlive build_model.
        from transformers.integrations import HfDeepSpeedConfig

        _keep_zero3_init = HfDeepSpeedConfig(ds)  # noqa: F841
    model = build_model(cfg, device)
    numel = lambda p: getattr(p, "ds_numel", p.numel())  # noqa: E731  (ZeRO-3: partitioned)
    n_trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    n_total = sum(numel(p) for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = None if ds and "optimizer" in ds else torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.adam_beta1, cfg.adam_beta2))
    if ds:
        import deepspeed

        model, opt, _, _ = deepspeed.initialize(model=model, optimizer=opt, model_parameters=params,
                                                config=ds)
    elif world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    # bf16 autocast over fp32 weights on the plain GPU path; DeepSpeed runs a bf16 module itself
    loss_fn = TokenLoss(model, cfg.loss_impl, cfg.loss_chunk, zero3=is_zero3(model),
                        autocast=cfg.dtype == "auto" and device.type == "cuda" and not cfg.deepspeed)

    state = {"step": 0, "best": math.inf, "best_step": None, "candidate": None,
             "candidate_loss": None, "bad": 0, "fingerprint": fp, "fingerprint_parts": parts}
    metrics: list[dict] = []
    resume = work / "resume" / "state.pt"
    if resume.exists():
        saved = torch.load(resume, weights_only=True)
        if saved["state"]["fingerprint"] == fp:
            load_resume(work, model, opt, cfg, saved)
            state, metrics = saved["state"], saved["metrics"]
            if master:
                print(f"resumed at step {state['step']} from {resume}", flush=True)
        elif master:
            old = saved["state"].get("fingerprint_parts") or {}
            changed = sorted(k for k in parts if old.get(k) != parts[k]) or ["settings"]
            print(f"resume state is from other settings ({', '.join(changed)} changed); starting over",
                  flush=True)
    if master and not metrics:  # a fresh start: no stale checkpoints from other settings
        shutil.rmtree(ckpts, ignore_errors=True)
    if master:
        print(f"trainable parameters: {n_trainable:,} of {n_total:,} "
              f"({100 * n_trainable / n_total:.4f}%)", flush=True)
        print(f"world_size {world}, grad_accum {accum}, global_batch {cfg.global_batch}, "
              f"deepspeed {cfg.deepspeed or 'off'}, loss {loss_fn.impl} ({loss_fn.why})", flush=True)
    end = Stop.install(cfg.stop_margin_min if master else 0.0)  # rank 0 watches the clock
    if master and end is not None:
        print(f"SLURM job ends in {(end - time.time()) / 60:.1f} min: saving a resume state "
              f"{cfg.stop_margin_min:g} min before", flush=True)
    bar = None
    if master and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=state["step"], desc="train", unit="step",
                   file=sys.stderr, mininterval=5.0, dynamic_ncols=False, ascii=True)

    def provenance(step):
        return {"train_fingerprint": fp, "step": step, "fingerprint_parts": parts, "versions": versions()}

    def log(row):
        row["loss_impl"] = loss_fn.impl
        metrics.append(row)
        if master:
            write_jsonl(work / "metrics.jsonl", metrics)
            print(json.dumps(row), flush=True)

    def evaluate_and_keep(step, extra):
        if not val_set:
            return
        loss = validation_loss(model, val_set, rank, world, device, loss_fn)
        state["best"], state["best_step"] = min((state["best"], state["best_step"]), (loss, step),
                                                key=lambda t: t[0])
        on_disk = None
        if loss <= state["best"] + cfg.tolerance:
            state["bad"] = 0
            save_model(model, tokenizer, ckpts / f"step-{step}", master, provenance(step))
            if master:
                on_disk = checkpoint_count(ckpts)  # the peak: new one written, old not yet pruned
                keep_only(ckpts, step)
            state["candidate"], state["candidate_loss"] = step, loss
        else:
            state["bad"] += 1
        log({"step": step, "val_loss": loss, "best_val_loss": state["best"],
             "checkpoints_on_disk": on_disk, **extra})

    model.train()
    if state["step"] == 0 and not metrics:
        evaluate_and_keep(0, {"train_loss": None, "lr": 0.0, "n_trainable": n_trainable})
    t0, tokens = time.time(), 0
    while state["step"] < cfg.max_steps and state["bad"] < cfg.patience:
        if Stop.agreed(world, device):
            save_resume(work, model, opt, state, metrics, master, world)
            if master:
                if bar is not None:
                    bar.close()
                print(f"stop requested: saved resume state at step {state['step']}", flush=True)
            if world > 1:
                dist.destroy_process_group()
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
            # The loss is summed over tokens and divided by the tokens of the GLOBAL batch;
            # x world undoes DDP's/DeepSpeed's mean over ranks: the gradient is exactly the
            # per-token mean over the global batch, whatever the world size.
            if ds:
                loss = loss_fn(model, ids, labels, device) / n_tok * world
                model.backward(loss, scale_wrt_gas=False)
                model.step()  # DeepSpeed steps the optimizer at the accumulation boundary only
            else:
                sync = k == len(mine) - 1 or world == 1
                ctx = model.no_sync() if (world > 1 and not sync) else _null()
                with ctx:
                    loss = loss_fn(model, ids, labels, device) / n_tok * world
                    loss.backward()
            loss_sum += loss.detach().double() / world
            tokens += len(ids)
        if world > 1:
            dist.all_reduce(loss_sum)
        if ds:
            gnorm = float(model.get_global_grad_norm() or 0.0)
        else:
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm).item()
            opt.step()
            opt.zero_grad(set_to_none=True)
        state["step"] = step = step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum.item():.4f}", lr=f"{lr:.2e}", refresh=False)
        extra = {"train_loss": loss_sum.item(), "lr": lr, "grad_norm": gnorm,
                 "tokens_per_s": tokens * world / max(1e-9, time.time() - t0)}
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            evaluate_and_keep(step, extra) if val_set else log({"step": step, "val_loss": None, **extra})

    if bar is not None:
        bar.close()
    if not val_set:  # LoRA on all rows: no validation, the final state is the candidate
        save_model(model, tokenizer, ckpts / f"step-{state['step']}", master, provenance(state["step"]))
        if master:
            keep_only(ckpts, state["step"])
    if world > 1:
        dist.barrier()
    if master:
        publish(out, work)
        done_cache.store(out / ".done", done_key, published(out))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def published(out: Path) -> dict[str, Path]:
    """The declared outputs of a run (what the done cache keeps)."""
    return {"metrics.jsonl": out / "metrics.jsonl", "checkpoints": out / "checkpoints"}


def publish(out: Path, work: Path) -> None:
    """Move the surviving checkpoint and the metrics into the declared outputs."""
    with atomic_dir(out / "checkpoints") as tmp:
        for p in (work / "checkpoints").glob("step-*"):
            os.replace(p, tmp / p.name)
    write_jsonl(out / "metrics.jsonl", read_jsonl(work / "metrics.jsonl"))
    for prov in (out / "checkpoints").glob(f"step-*/{PROVENANCE}"):  # the metrics it belongs to
        write_json(prov, {**read_json(prov), "metrics_sha256": sha256_file(out / "metrics.jsonl")})
    shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    from transformers import HfArgumentParser

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    (cfg,) = HfArgumentParser(TrainConfig).parse_args_into_dataclasses(args=argv)
    return train(cfg)


if __name__ == "__main__":
    sys.exit(main())
