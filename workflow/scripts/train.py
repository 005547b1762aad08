#!/usr/bin/env python
"""Finetune one model on one training subset: full-parameter or rank-r LoRA.

One readable loop (nanoGPT style): AdamW, linear warmup + cosine decay, a global batch
of `global_batch` sequences = micro_batch x grad_accum x world_size, one sequence per
micro-batch (no pad tokens are ever computed). Validation loss at step 0 and every
`eval_every` steps goes to metrics.jsonl; only the checkpoint the selection rule can still
pick is kept (elicit/train/checkpoints.py). The backend, plain torch/DDP or DeepSpeed ZeRO
(`--deepspeed zero2|zero3|zero3_offload` or a JSON path), hides behind elicit/train/engine.py.

train():  setup -> restore a finished run -> data -> engine -> restore the resume state
          -> loop of (train_step, evaluate_and_keep) -> finish

A SIGTERM/SIGUSR1, or the SLURM job's time limit `--stop-margin-min` ahead, saves a resume
state in <out>/work/resume at the next step boundary and exits 143; the rerun continues from it
bit-exactly: model, optimizer, RNG, step (hence data position and learning rate) and the
selection bookkeeping. Under torchrun a stop seen by any rank stops every rank at the same step.
A non-finite loss or gradient norm stops the job naming the step, the value and the lr to lower.
A finished run is kept by content under <out>/.done/ (elicit/done_cache.py): rerun with the
same inputs, settings and code, it is restored instead of retrained.

Launch (workflow/rules/train.smk passes every setting; `--help` lists them):
  python workflow/scripts/train.py --model M --table results/data/s1k.parquet \\
      --manifest results/data/manifest.json --subset 29 --out results/train/7B/full-29 --mode full ...
  torchrun --nproc_per_node 8 workflow/scripts/train.py ...        # one node
  srun --nodes 2 --ntasks-per-node 8 --cpus-per-task 8 --kill-on-bad-exit=1 \\
      python workflow/scripts/train.py ...                          # several nodes, a task per GPU
"""
from __future__ import annotations

import dataclasses
import gc
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elicit import done_cache, grid, repo_path
from elicit.atomic import write_json, write_jsonl
from elicit.data.chat import supervised_tokens, use_template
from elicit.data.s1k import training_examples
from elicit.flags import dataclass_parser, help_
from elicit.provenance import model_fingerprint, sha256_file, sha256_json, versions
from elicit.slurm import StopWatch
from elicit.train import engine as engines
from elicit.train.checkpoints import (
    Keeper,
    checkpoint_count,
    divergence,
    keep_only,
    load_resume,
    publish,
    restore,
    restore_finished,
    save_resume,
    store_finished,
)
from elicit.train.loss import TokenLoss, validation_loss
from elicit.train.schedule import batch_indices, grad_accum, lr_at, warmup
from elicit.train.tracking import open_tracker, run_hparams
from elicit.train.weights import model_weights_problems

# The code a finished run depends on (its done-cache key): an edit retrains, a rerun does not.
TRAIN_CODE = done_cache.code_files(Path(__file__))


@dataclass
class TrainConfig:
    """Every experiment setting is required: the rule passes config values, nothing here can disagree."""
    model: str = field(metadata=help_("base model: local dir or hub id"))
    table: str = field(metadata=help_("parquet table written by prepare_data.py fetch"))
    manifest: str = field(metadata=help_("manifest.json written by prepare_data.py split"))
    subset: str = field(metadata=help_("training subset size, or 'all' (every row, no validation)"))
    out: str = field(metadata=help_("output dir: metrics.jsonl, checkpoints/, work/"))
    mode: str = field(metadata=help_("full | lora"))
    format: str = field(metadata=help_("assistant format: r1 | s1 (data.format)"))
    lr: float
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    warmup_steps: int
    warmup_ratio: float = field(metadata=help_("warmup as a fraction of max_steps, rounded; used when warmup_steps is 0"))
    max_grad_norm: float
    global_batch: int
    max_steps: int
    eval_every: int
    tolerance: float = field(metadata=help_("nats: keep the last checkpoint within this of the best"))
    patience: int
    max_seq_len: int
    on_too_long: str = field(metadata=help_("truncate | drop (data.on_too_long)"))
    seed: int
    gradient_checkpointing: bool = field(metadata=help_(
        "recompute layers in the backward: as many as the memory plan says this GPU needs (none, some, "
        "all; elicit/plan/memory_plan.py recompute_layers), every one where no GPU memory is known (CPU)"))
    loss_chunk: int = field(metadata=help_("supervised tokens per LM-head chunk (elicit/train/loss.py)"))
    stop_margin_min: float = field(metadata=help_("in a SLURM job: save the resume state and exit 143 this "
                                                  "long before the time limit (0: off); > one step + one save"))
    tracking: str = field(metadata=help_("none | tensorboard: rank 0 logs event files into <out> (elicit/train/tracking.py)"))
    revision: str = field(metadata=help_("hub revision of --model ('' = main)"))
    trust_remote_code: bool
    deepspeed: str = field(metadata=help_("'' (plain torch/DDP) | zero2 | zero3 | zero3_offload | path/to/config.json"))
    lora_rank: int | None = field(default=None, metadata=help_("--mode lora: required"))
    lora_alpha: float | None = field(default=None, metadata=help_("--mode lora: required"))
    lora_targets: str | None = field(default=None, metadata=help_("--mode lora: required, comma-separated"))
    lora_dropout: float = 0.0
    chat_template: str = field(default="", metadata=help_("jinja file the training text is rendered with, relative to "
                                                          "the repo (models.<size>.chat_template; '': the tokenizer's own)"))
    micro_batch: int = field(default=1, metadata=help_("sequences per forward (must be 1: no padding)"))
    loss_impl: str = field(default="auto", metadata=help_("auto | chunked | liger | materialised (elicit/train/loss.py): "
                                                          "auto = liger on CUDA when installed, else chunked"))
    dtype: str = field(default="auto", metadata=help_(
        "auto | bf16 | fp32. auto: fp32 on CPU; on GPU bf16 compute over fp32 master weights (DeepSpeed's "
        "optimizer copy, or autocast). Plain bf16 is pure bf16: lr 1e-5 updates mostly round away"))
    kernels: str = field(default="auto", metadata=help_(
        "auto | liger | torch: the model's RMSNorm, SwiGLU and RoPE; auto = Liger's on CUDA when installed"))
    gpu_mem_gib: float = field(default=0.0, metadata=help_(
        "GiB the recompute plan fills (0: the GPU's own memory; none on CPU: every layer is recomputed)"))
    progress: bool = field(default=True, metadata=help_("tqdm progress bar on rank 0 (stderr)"))

    def __post_init__(self):
        if self.mode not in ("full", "lora"):
            raise SystemExit(f"--mode must be full or lora, got {self.mode!r}")
        missing = [f"--{k.replace('_', '-')}" for k in ("lora_rank", "lora_alpha", "lora_targets")
                   if self.mode == "lora" and getattr(self, k) is None]
        if missing:
            raise SystemExit(f"--mode lora needs {', '.join(missing)}")


def fingerprint_parts(cfg: TrainConfig) -> dict:
    """What the result depends on, by content: every setting (not job control: out, progress, stop
    margin), the bytes of the table and of the manifest (split settings), the base model's fingerprint."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("out", "progress", "stop_margin_min", "gpu_mem_gib", "kernels", "tracking", "table",
                             "manifest", "model", "chat_template")}
    template = {"chat_template": sha256_file(repo_path(cfg.chat_template))} if cfg.chat_template else {}  # its bytes
    return {"settings": sha256_json(settings), "table": sha256_file(cfg.table),
            "manifest": sha256_file(cfg.manifest),
            "base_model": model_fingerprint(cfg.model, cfg.revision or None)["fingerprint"], **template}


# ----------------------------------------------------------------------------- the recipe
@dataclass
class Run:
    """One training run: settings, ranks and fingerprint first; the recipe's steps add the rest."""
    cfg: TrainConfig
    ranks: engines.Ranks
    accum: int
    parts: dict
    keeper: Keeper
    step: int = 0
    metrics: list = field(default_factory=list)
    tokenizer: object = None
    train_set: list = field(default_factory=list)
    val_set: list = field(default_factory=list)
    engine: engines.Engine | None = None
    loss_fn: TokenLoss | None = None
    tokens: int = 0
    t0: float = 0.0
    tracker: object = None
    recompute: dict = field(default_factory=dict)
    kernels: tuple = ("torch", "")

    fp = property(lambda self: sha256_json(self.parts)[:16])
    out = property(lambda self: Path(self.cfg.out))
    work = property(lambda self: Path(self.cfg.out) / grid.WORK)
    ckpts = property(lambda self: grid.run_outputs(self.work)[grid.CHECKPOINTS])


def setup(cfg: TrainConfig) -> Run:
    ranks = engines.Ranks.from_env()
    accum = grad_accum(cfg.global_batch, cfg.micro_batch, ranks.world)  # before any collective
    return Run(cfg, ranks, accum, fingerprint_parts(cfg), Keeper(cfg.tolerance))


def done_key(run: Run) -> str:
    return done_cache.key({"run": run.fp, "code": done_cache.code_sha(*TRAIN_CODE)})


def load_data(run: Run) -> None:
    from transformers import AutoTokenizer

    cfg = run.cfg
    damaged = model_weights_problems(cfg.model, cfg.revision) if run.ranks.master else []
    if damaged:  # a base model whose files differ from what fetch_hub / make_demo recorded (sha256)
        raise SystemExit("train.py: damaged base model weights:\n  " + "\n  ".join(damaged))
    run.tokenizer = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision or None,
                                                  trust_remote_code=cfg.trust_remote_code)
    use_template(run.tokenizer, cfg.chat_template)  # saved with every checkpoint: the finetunes evaluate with it
    run.train_set, run.val_set, report = training_examples(cfg.table, cfg.manifest, cfg.subset, run.tokenizer,
                                                           cfg.format, cfg.max_seq_len, cfg.on_too_long)
    if not run.ranks.master:
        return
    write_json(run.out / grid.DATA_REPORT, report)
    for part, rep in report.items():
        if rep.get("too_long"):
            print(f"{part}: {rep['too_long']} sequences over max_seq_len={cfg.max_seq_len}: {rep['truncated']} "
                  f"truncated, {rep['dropped']} dropped (see {run.out / grid.DATA_REPORT})", flush=True)


def plan_recompute(run: Run, model_config: dict) -> dict:
    """How many layers the backward recomputes: the memory plan's fewest for this job (its longest
    sequence, DeepSpeed stage, world size) on this GPU's memory; every layer without a known GPU
    memory or with a DeepSpeed config file the plan does not know; none without checkpointing."""
    from elicit.plan import memory_plan as mp

    cfg, device = run.cfg, run.ranks.device
    a = mp.Arch.from_config(model_config)
    seq = max((len(ids) for ids, _ in run.train_set), default=1)
    gib = cfg.gpu_mem_gib or (torch.cuda.get_device_properties(device).total_memory / mp.GIB
                              if device.type == "cuda" else 0.0)
    lora = {"rank": cfg.lora_rank, "targets": cfg.lora_targets.split(",")} if cfg.mode == "lora" else None
    plan = {"of": a.layers, "longest_sequence": seq, "gpu_mem_gib": round(gib, 2)}
    if not cfg.gradient_checkpointing:
        return {**plan, "layers": 0, "why": "--gradient-checkpointing false"}
    if not gib or cfg.deepspeed not in ("", "zero2", "zero3", "zero3_offload"):
        return {**plan, "layers": a.layers, "why": "no GPU memory to plan with" if not gib else "own DeepSpeed file"}
    job = mp.job_config(a, seq, cfg.mode, cfg.deepspeed, run.ranks.world, lora, cfg.loss_chunk)
    parts = mp.train_parts(job, "job", cfg.mode, seq=seq, gpu_mem_gb=gib)
    k = mp.recompute_layers(a, seq, sum(parts.values()) - parts["activations"], gib * mp.GIB)
    return {**plan, "layers": k, "why": "memory plan", "predicted_peak_gib": round(mp.gib_of(parts), 2)}


def build_engine(run: Run) -> None:
    cfg, device = run.cfg, run.ranks.device
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(cfg.model, revision=cfg.revision or None,
                                              trust_remote_code=cfg.trust_remote_code).to_dict()
    run.recompute = plan_recompute(run, model_config)
    run.kernels = engines.kernels_choice(cfg.kernels, model_config.get("model_type", ""), device)
    optim = engines.Optim(cfg.lr, (cfg.adam_beta1, cfg.adam_beta2), cfg.weight_decay, cfg.max_grad_norm)
    bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda")
    ds = engines.deepspeed_config(cfg.deepspeed, cfg.micro_batch, run.accum, cfg.global_batch, optim,
                                  bf16) if cfg.deepspeed else None
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        cfg.dtype, torch.bfloat16 if device.type == "cuda" and cfg.deepspeed else torch.float32)
    lora = None if cfg.mode == "full" else {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha,
                                             "dropout": cfg.lora_dropout, "targets": cfg.lora_targets.split(",")}
    run.engine = engines.build(lambda: engines.load_model(cfg.model, cfg.revision, dtype, cfg.trust_remote_code,
                                                          run.recompute["layers"], lora, device,
                                                          run.kernels[0]),
                               run.ranks, optim, ds)
    # bf16 autocast over fp32 weights on the plain GPU path; DeepSpeed runs a bf16 module itself
    run.loss_fn = TokenLoss(run.engine.model, cfg.loss_impl, cfg.loss_chunk, zero3=run.engine.zero3, device=device,
                            autocast=cfg.dtype == "auto" and device.type == "cuda" and not cfg.deepspeed)


def restore_state(run: Run) -> None:
    """Continue from <out>/work/resume when it was saved by a run with the same fingerprint."""
    saved, master = load_resume(run.work), run.ranks.master
    if saved is not None and saved["fingerprint"] == run.fp:
        restore(run.work, run.engine, saved, lora=run.cfg.mode == "lora")
        run.step, run.metrics, run.keeper = saved["step"], saved["metrics"], Keeper.saved(saved["keeper"])
        if master:
            print(f"resumed at step {run.step} from {run.work / grid.RESUME}", flush=True)
    elif saved is not None and master:
        old = saved.get("fingerprint_parts") or {}
        changed = sorted(k for k in run.parts if old.get(k) != run.parts[k]) or ["settings"]
        print(f"resume state is from other settings ({', '.join(changed)} changed); starting over", flush=True)
    if master and not run.metrics:  # a fresh start: no stale checkpoints from other settings
        shutil.rmtree(run.ckpts, ignore_errors=True)


def announce(run: Run, stop: StopWatch) -> None:
    e, cfg = run.engine, run.cfg
    if not run.ranks.master:
        return
    print(f"trainable parameters: {e.trainable:,} of {e.total:,} ({100 * e.trainable / e.total:.4f}%)", flush=True)
    print(f"world_size {run.ranks.world}, grad_accum {run.accum}, global_batch {cfg.global_batch}, "
          f"deepspeed {cfg.deepspeed or 'off'}, loss {run.loss_fn.impl} ({run.loss_fn.why})", flush=True)
    r = run.recompute
    print(f"model kernels {run.kernels[0]} ({run.kernels[1]}), optimizer AdamW "
          f"{'fused' if getattr(e.opt, 'defaults', {}).get('fused') else 'for-each'}", flush=True)
    print(f"recompute {r['layers']} of {r['of']} layers ({r['why']}; longest sequence {r['longest_sequence']} "
          f"tokens, GPU {r['gpu_mem_gib']:g} GiB)", flush=True)
    if stop.end is not None:
        print(f"SLURM job ends in {(stop.end - time.time()) / 60:.1f} min: saving a resume state "
              f"{cfg.stop_margin_min:g} min before", flush=True)


def log(run: Run, row: dict) -> None:
    row["loss_impl"], row["recompute_layers"] = run.loss_fn.impl, run.recompute.get("layers")
    run.metrics.append(row)
    if run.ranks.master:
        write_jsonl(grid.run_outputs(run.work)[grid.METRICS], run.metrics)
        print(json.dumps(row), flush=True)


def save_checkpoint(run: Run, step: int) -> int | None:
    """Write step-<step> (every rank takes part), then drop every other; rank 0: how many were on disk."""
    provenance = {"train_fingerprint": run.fp, "step": step, "fingerprint_parts": run.parts, "versions": versions(),
                  "recompute": run.recompute, "kernels": run.kernels[0]}
    run.engine.save_weights(grid.step_dir(run.ckpts, step), run.tokenizer, provenance)
    if not run.ranks.master:
        return None
    on_disk = checkpoint_count(run.ckpts)  # the peak: the new one written, the old not yet pruned
    keep_only(run.ckpts, step)
    return on_disk


def evaluate_and_keep(run: Run, step: int, extra: dict) -> None:
    if not run.val_set:  # LoRA on every row: nothing to select on
        log(run, {"step": step, "val_loss": None, **extra})
        return
    r = run.ranks
    loss = validation_loss(run.engine.model, run.val_set, r.rank, r.world, r.device, run.loss_fn)
    on_disk = save_checkpoint(run, step) if run.keeper.observe(step, loss) else None
    log(run, {"step": step, "val_loss": loss, "best_val_loss": run.keeper.best, "checkpoints_on_disk": on_disk,
              **extra})
    run.tracker.evaluation(step, loss, run.keeper.best, run.keeper.candidate, run.keeper.bad)
    stop_if_diverged(run, step, {"val_loss": loss})


def stop_if_diverged(run: Run, step: int, values: dict) -> None:  # values are the same on every rank
    msg = divergence(step, values, "lora.lr" if run.cfg.mode == "lora" else "train.lr", run.cfg.lr)
    if msg:
        close(run)
        raise SystemExit(msg)


def train_step(run: Run) -> dict:
    """One optimizer step over the global batch; this rank takes every world-th example."""
    cfg, r, device = run.cfg, run.ranks, run.ranks.device
    t_step, tokens_before = time.perf_counter(), run.tokens
    idx = batch_indices(run.step, len(run.train_set), cfg.global_batch, cfg.seed)
    n_tok = sum(supervised_tokens(run.train_set[i][1]) for i in idx)
    lr = lr_at(run.step, cfg.lr, warmup(cfg.warmup_steps, cfg.warmup_ratio, cfg.max_steps), cfg.max_steps)
    run.engine.set_lr(lr)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    mine = idx[r.rank::r.world]
    for k, i in enumerate(mine):
        ids, labels = run.train_set[i]
        # The loss is summed over tokens and divided by the tokens of the GLOBAL batch; x world
        # undoes DDP's/DeepSpeed's mean over ranks: the gradient is exactly the per-token mean
        # over the global batch, whatever the world size.
        scaled = lambda x=ids, y=labels: run.loss_fn(run.engine.model, x, y, device) / n_tok * r.world  # noqa: E731
        loss = run.engine.backward(scaled, last=k == len(mine) - 1)
        loss_sum += loss.detach().double() / r.world
        run.tokens += len(ids)
    r.all_sum(loss_sum)
    gnorm = run.engine.step()
    run.step += 1
    return {"train_loss": loss_sum.item(), "lr": lr, "grad_norm": gnorm,
            "tokens_per_s": run.tokens * r.world / max(1e-9, time.time() - run.t0),
            **engines.speed_and_memory(device, (run.tokens - tokens_before) * r.world, time.perf_counter() - t_step)}


def save_and_stop(run: Run) -> int:
    blob = {"step": run.step, "keeper": dataclasses.asdict(run.keeper), "metrics": run.metrics,
            "fingerprint": run.fp, "fingerprint_parts": run.parts}
    save_resume(run.work, run.engine, blob)
    if run.ranks.master:
        print(f"stop requested: saved resume state at step {run.step}", flush=True)
    close(run)
    return 143


def finish(run: Run) -> None:
    """Publish the kept checkpoint and the metrics as the declared outputs; keep them by content."""
    if not run.val_set:  # LoRA on every row: the final state is the candidate
        save_checkpoint(run, run.step)
    run.ranks.barrier()
    if run.ranks.master:
        publish(run.out, run.work)
        store_finished(run.out, done_key(run))
    close(run)


def close(run: Run) -> None:
    """Drop the engine (its process groups, pending gloo work) while the interpreter is alive, then
    destroy the groups: at interpreter shutdown their destructors can abort a finished rank."""
    run.engine = run.loss_fn = None
    run.tracker is not None and run.tracker.close()
    gc.collect()
    run.ranks.close()


def progress_bar(run: Run):
    from tqdm import tqdm

    return tqdm(total=run.cfg.max_steps, initial=run.step, desc="train", unit="step", file=sys.stderr,
                mininterval=5.0, dynamic_ncols=False, ascii=True) if run.ranks.master and run.cfg.progress else None


def train(cfg: TrainConfig) -> int:
    run = setup(cfg)
    if restore_finished(run.out, done_key(run), run.ranks.master):  # same inputs, settings, code: no training
        return 0
    run.ranks.init(deepspeed=bool(cfg.deepspeed))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    load_data(run)
    build_engine(run)
    restore_state(run)
    run.tracker = open_tracker(cfg.tracking, run.out, run.ranks.master, run.step,
                               run_hparams(run.out, dataclasses.asdict(cfg)))
    stop = StopWatch(cfg.stop_margin_min if run.ranks.master else 0.0)  # rank 0 watches the clock
    if not run.ranks.master:
        stop.signal_at = {}  # the test hook's signal reaches rank 0; ranks.any stops every rank
    announce(run, stop)
    bar = progress_bar(run)
    run.engine.model.train()
    if run.step == 0 and not run.metrics and run.val_set:
        evaluate_and_keep(run, 0, {"train_loss": None, "lr": 0.0, "n_trainable": run.engine.trainable})
    run.t0 = time.time()
    while run.step < cfg.max_steps and run.keeper.bad < cfg.patience:
        if run.ranks.any(stop.due(run.step)):
            bar is not None and bar.close()
            return save_and_stop(run)
        extra = train_step(run)
        run.tracker.train(run.step, extra)
        stop_if_diverged(run, run.step, {k: extra[k] for k in ("train_loss", "grad_norm")})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{extra['train_loss']:.4f}", lr=f"{extra['lr']:.2e}", refresh=False)
        if run.step % cfg.eval_every == 0 or run.step == cfg.max_steps:
            evaluate_and_keep(run, run.step, extra)
    bar is not None and bar.close()
    finish(run)
    return 0


def main(argv=None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return train(TrainConfig(**vars(dataclass_parser(TrainConfig, __doc__).parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
