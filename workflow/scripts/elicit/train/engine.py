"""One training backend behind one interface: plain torch (one process or DDP) or DeepSpeed ZeRO.

train.py uses only this surface, whatever the backend:

  Ranks.from_env()            rank, world size and device (torchrun's variables, or srun's)
  ranks.init(deepspeed)       the process group; barrier / all_sum / any / close
  build(load, ranks, optim, ds_config)  -> Engine
  engine.model                what the forward runs through (the DDP wrapper / DeepSpeed engine)
  engine.backward(fn, last)   run the forward fn() and accumulate its gradient; `last` = the
                              last micro-batch of this rank's step (DDP syncs gradients then)
  engine.step()               the optimizer step (clipping included); returns the gradient norm
  engine.set_lr(lr)
  engine.save_weights(path, tokenizer, provenance)   save_pretrained on rank 0 (ZeRO-3 gathers first)
  engine.save_state(dir) / engine.load_state(dir, saved, lora)   the exact resume state

DeepSpeed: workflow/deepspeed/<name>.json (zero2 | zero3 | zero3_offload, or a JSON path), with
batch size, accumulation, clipping and precision filled in from the training settings. ZeRO-3
loads the model under zero.Init (each rank reads its shard only) and gathers full 16-bit weights
on rank 0 to save them.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from elicit import REPO
from elicit.atomic import atomic_dir
from elicit.provenance import PROVENANCE
from elicit.slurm import ranks_from_slurm

DS_DIR = REPO / "workflow" / "deepspeed"


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Ranks":
        os.environ.update(ranks_from_slurm())  # started by srun (multi-node): one task per rank
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), device)

    def init(self, deepspeed: bool) -> None:
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if deepspeed and self.world == 1:  # one GPU, started as plain `python` (slurm.launcher)
            single_process_env()
        if self.world > 1 and deepspeed:
            import deepspeed as ds

            ds.init_distributed(backend)
        elif self.world > 1:
            dist.init_process_group(backend)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (ranks then act at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()


def single_process_env() -> None:
    """A one-process group's rendezvous variables, where no launcher set them. Without them
    deepspeed.initialize falls back to MPI discovery: an ImportError without mpi4py, and an MPI
    singleton start (which can hang) on a GPU node that has it."""
    import socket

    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    for k, v in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(k, v)


@dataclass(frozen=True)
class Optim:
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    max_grad_norm: float


def set_recompute(model, layers: int) -> int:
    """Gradient checkpointing of the first `layers` decoder layers (the others keep their activations
    for the backward); returns how many layers the model has."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if layers > 0:
        model.gradient_checkpointing_enable()
    for i, block in enumerate(blocks):
        block.gradient_checkpointing = i < layers
    return len(blocks)


KERNELS = ("auto", "liger", "torch")


def kernels_choice(kernels: str, model_type: str, device: torch.device) -> tuple[str, str]:
    """(liger | torch, why) for the model's RMSNorm, SwiGLU and RoPE: Liger's Triton kernels on CUDA where
    installed and the model type is one Liger patches; on CPU liger is never imported."""
    if kernels not in KERNELS:
        raise SystemExit(f"--kernels must be one of {KERNELS}, got {kernels!r}")
    if kernels == "torch":
        return "torch", "requested"
    if device.type != "cuda":
        why = "no CUDA"
    else:
        import importlib.util

        if importlib.util.find_spec("liger_kernel") is None:
            why = "liger-kernel not installed"
        else:
            from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

            why = "" if model_type in MODEL_TYPE_TO_APPLY_LIGER_FN else f"Liger does not patch {model_type}"
    if why and kernels == "liger":
        raise SystemExit(f"--kernels liger: {why}")
    return ("torch", why) if why else ("liger", "CUDA and liger-kernel available")


def apply_kernels(model, kernels: str) -> None:
    """Liger's RMSNorm, SwiGLU and RoPE on this model instance (the loss stays elicit/train/loss.py's)."""
    if kernels == "liger":
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

        MODEL_TYPE_TO_APPLY_LIGER_FN[model.config.model_type](
            rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False, model=model)


def load_model(path: str, revision: str, dtype: torch.dtype, trust_remote_code: bool,
               recompute: int, lora: dict | None, device: torch.device, kernels: str = "torch"):
    """from_pretrained with `recompute` layers checkpointed (set_recompute) and `kernels` (kernels_choice's
    answer), optionally wrapped in a peft LoRA (lora: rank, alpha, dropout, targets)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, revision=revision or None, dtype=dtype,
                                                 trust_remote_code=trust_remote_code)
    apply_kernels(model, kernels)
    set_recompute(model, recompute)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"],
                                                 lora_dropout=lora["dropout"],
                                                 target_modules=lora["targets"], task_type="CAUSAL_LM"))
    return model.to(device)


def deepspeed_config(name: str, micro_batch: int, accum: int, global_batch: int, optim: Optim,
                     bf16: bool) -> dict:
    path = Path(name) if name.endswith(".json") else DS_DIR / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"--deepspeed {name}: no such config {path}")
    ds = json.loads(path.read_text())
    ds.update(train_micro_batch_size_per_gpu=micro_batch, gradient_accumulation_steps=accum,
              train_batch_size=global_batch, gradient_clipping=optim.max_grad_norm,
              bf16={"enabled": bf16}, steps_per_print=10**9, wall_clock_breakdown=False)
    if "optimizer" in ds:  # offload configs: DeepSpeed's CPU AdamW, our hyperparameters
        ds["optimizer"]["params"] = {"lr": optim.lr, "betas": list(optim.betas), "eps": 1e-8,
                                     "weight_decay": optim.weight_decay}
    return ds


def build(load, ranks: Ranks, optim: Optim, ds: dict | None = None) -> "Engine":
    """The engine for a model made by load() (called here: under zero.Init for ZeRO-3)."""
    keep = None
    if ds and ds.get("zero_optimization", {}).get("stage") == 3:
        # zero.Init: from_pretrained loads each rank's shard only (a 32B model would otherwise
        # sit whole in CPU memory once per process). Must outlive loading: kept by the engine.
        from transformers.integrations import HfDeepSpeedConfig

        keep = HfDeepSpeedConfig(ds)
    model = load()
    numel = lambda p: getattr(p, "ds_numel", p.numel())  # noqa: E731  (ZeRO-3: partitioned)
    counts = (sum(numel(p) for p in model.parameters() if p.requires_grad), sum(numel(p) for p in model.parameters()))
    params = [p for p in model.parameters() if p.requires_grad]
    engine = (DeepSpeedEngine(model, params, ranks, optim, ds) if ds else PlainEngine(model, params, ranks, optim))
    engine.trainable, engine.total, engine._zero3_init = counts[0], counts[1], keep
    return engine


def speed_and_memory(device, tokens: int, seconds: float) -> dict:
    """This step's tokens/s (no validation or saving: the MFU figure of bench/gpu_acceptance.sh) and,
    on a GPU, the allocator's peak so far (the memory plan's check)."""
    row = {"step_tokens": tokens, "step_tokens_per_s": tokens / max(1e-9, seconds)}
    if device.type == "cuda":
        row["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def adamw_impl(params) -> dict:
    """torch's fused AdamW (one kernel for every tensor) where every parameter is on CUDA; on CPU the
    default (for-each) one."""
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}


class Engine:
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    zero3 = False

    def __init__(self, ranks: Ranks):
        self.ranks = ranks

    @property
    def module(self):
        return getattr(self.model, "module", self.model)

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def save_weights(self, path: Path, tokenizer, provenance: dict | None = None) -> None:
        """save_pretrained on rank 0, provenance.json beside it. Call on EVERY rank."""
        state_dict = self._full_state_dict()
        if not self.ranks.master:
            return
        with atomic_dir(path) as tmp:
            self.module.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
            tokenizer.save_pretrained(tmp)
            if provenance is not None:
                (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")

    def _full_state_dict(self):
        return None


class PlainEngine(Engine):
    """One process, or DDP: every rank holds the whole model and optimizer."""

    def __init__(self, model, params, ranks: Ranks, optim: Optim):
        super().__init__(ranks)
        self.params, self.max_grad_norm = params, optim.max_grad_norm
        self.opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas,
                                     **adamw_impl(params))
        self.model = torch.nn.parallel.DistributedDataParallel(model) if ranks.world > 1 else model

    def backward(self, compute_loss, last: bool) -> torch.Tensor:
        sync = last or self.ranks.world == 1
        with (contextlib.nullcontext() if sync else self.model.no_sync()):  # the forward too: DDP needs it
            loss = compute_loss()
            loss.backward()
        return loss

    def step(self) -> float:
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm).item()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return gnorm

    def save_state(self, tmp: Path) -> dict:
        """Rank 0 writes the weights (exact fp32/bf16 tensors); the optimizer state goes in the blob
        (DDP keeps both identical on every rank)."""
        if not self.ranks.master:
            return {}
        self.module.save_pretrained(tmp / "model")
        return {"opt": self.opt.state_dict()}

    def load_state(self, resume: Path, saved: dict, lora: bool) -> None:
        from safetensors.torch import load_file

        if lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.module, load_file(resume / "model" / "adapter_model.safetensors"))
        else:
            missing, unexpected = self.module.load_state_dict(load_file(resume / "model" / "model.safetensors"),
                                                              strict=False)
            tied = set(getattr(self.module, "_tied_weights_keys", None) or [])
            if unexpected or any(k not in tied and "lm_head" not in k for k in missing):
                raise SystemExit(f"resume state does not fit the model: missing {missing}, unexpected {unexpected}")
        self.opt.load_state_dict(saved["opt"])


class DeepSpeedEngine(Engine):
    """deepspeed.initialize: ZeRO partitions optimizer state (2) and parameters (3) over ranks."""

    def __init__(self, model, params, ranks: Ranks, optim: Optim, ds: dict):
        import deepspeed

        super().__init__(ranks)
        opt = None if "optimizer" in ds else torch.optim.AdamW(
            params, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas)
        self.model, self.opt, _, _ = deepspeed.initialize(model=model, optimizer=opt, model_parameters=params,
                                                          config=ds)
        self.zero3 = self.model.zero_optimization_stage() == 3

    def backward(self, compute_loss, last: bool) -> torch.Tensor:
        loss = compute_loss()
        self.model.backward(loss, scale_wrt_gas=False)
        self.model.step()  # DeepSpeed steps the optimizer at the accumulation boundary only
        return loss

    def step(self) -> float:
        return float(self.model.get_global_grad_norm() or 0.0)

    def _full_state_dict(self):
        return self.model._zero3_consolidated_16bit_state_dict() if self.zero3 else None

    def save_state(self, tmp: Path) -> dict:
        self.model.save_checkpoint(str(tmp / "ds"), tag="resume")  # collective: every rank its shard
        return {}

    def load_state(self, resume: Path, saved: dict, lora: bool) -> None:
        self.model.load_checkpoint(str(resume / "ds"), tag="resume")
