#!/usr/bin/env python
"""What one optimiser step computes, counted on CPU (torch.utils.flop_counter.FlopCounterMode), beside
what the same step needs: the waste of recomputation and padding, isolated.

Per setting (mode full | lora, model size, sequence length) it counts, the same way:
  executed   the step with the project's settings: train.gradient_checkpointing recomputing as many
             layers as the memory plan says the GPU needs (elicit/plan/memory_plan.py planned_recompute,
             on --gpu-mem-gb GiB, the config's DeepSpeed stage and GPUs), one sequence per micro-batch;
  reference  the same step with no recomputation and no padding;
and prints their ratio, the padding fraction (tokens fed to the model that are not the sequences'
own), and the memory plan's predicted peak GiB per GPU for that setting.

Rows:
  demo     the tiny demo model (config/demo.yaml's architecture, random init) through train.py's own
           step (train.train_step: engine, TokenLoss, one sequence per micro-batch, a global batch of
           the demo's size) on CPU in fp32: its loss is the chunked one (each chunk's logits are
           recomputed in its backward: counted as waste; on CUDA the Liger loss has none); lengths
           drawn from the s1K-1.1 distribution below divided by --demo-scale.
  1.5B/7B  the real Qwen2.5 architectures (resources/models/) through the same transformers model code
           on the meta device (no memory, no DeepSpeed: ZeRO changes where states live, not the
           FLOPs), every layer; one micro-batch of one sequence, times global_batch for the step
           (AdamW's element-wise update is no matmul: not counted). On meta the loss is the plain one
           (whole logits + cross-entropy): the same matmuls as Liger's fused loss on CUDA (logits, their
           input and weight gradients, no recompute). transformers' packed-sequence probe reads a
           value (.item()), which meta tensors have not: it is told there is one sequence.
Sequence lengths: points of a normal distribution with s1K-1.1's recorded mean, sd and maximum under
the Qwen tokenizer (config/config.yaml cost: mean_train_tokens, sd_train_tokens, max_train_tokens):
mean - sd, mean, mean + sd, max. Attention is counted as the kernels run it on meta (the full
T x T score matrix), on both sides of the ratio alike; MFU (bench/gpu_acceptance.py) counts it causal.

Usage:
  python bench/train_flops.py                      # the table (~2 min of CPU time)
  python bench/train_flops.py --json               # one row per setting
  python bench/train_flops.py --sizes 1.5B --gpu-mem-gb 141
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> dict:
    from elicit.checks.config import check

    return check(yaml.safe_load(path.read_text()))


def grid_lengths(config: dict) -> list[int]:
    c = config["cost"]
    mean, sd, top = c["mean_train_tokens"], c["sd_train_tokens"], c["max_train_tokens"]
    return [round(mean - sd), round(mean), round(mean + sd), int(top)]


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


# ----------------------------------------------------------------------------- real sizes, meta device
@contextlib.contextmanager
def one_sequence_on_meta():
    import transformers.masking_utils as mu

    saved = mu.find_packed_sequence_indices
    mu.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        mu.find_packed_sequence_indices = saved


def meta_model(config: dict, size: str, mode: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    from elicit.data.demo import architecture_file
    from elicit.plan.memory_plan import arch_file

    fields = architecture_file(arch_file(config["models"][size]["base"]))
    hf = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf, dtype=torch.bfloat16)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora = config["lora"]
        model = get_peft_model(model, LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"],
                                                 target_modules=lora["targets"], task_type="CAUSAL_LM"))
    return model.train()


def meta_step(model, seq: int, recompute: int) -> int:
    """FLOPs of one micro-batch (one sequence of `seq` tokens, every label supervised but the first)."""
    from elicit.train.engine import set_recompute
    from elicit.train.loss import plain_loss

    set_recompute(model, recompute)
    x = torch.zeros(1, seq, dtype=torch.long, device="meta")
    with one_sequence_on_meta():
        return flops(lambda: plain_loss(model, x, x).backward())


def real_rows(config: dict, sizes: list[str], gpu_mem_gb: float, lengths: list[int] | None = None) -> list[dict]:
    from elicit.plan.memory_plan import gib_of, load_arch, planned_recompute, train_parts

    rows, batch = [], config["train"]["global_batch"]
    for size in sizes:
        layers = load_arch(config, size).layers
        for mode in ("full", "lora"):
            model = meta_model(config, size, mode)
            for seq in lengths or grid_lengths(config):
                k = planned_recompute(config, size, mode, gpu_mem_gb, seq)
                ref = meta_step(model, seq, 0)
                done = meta_step(model, seq, k) if k else ref
                rows.append({"mode": mode, "size": size, "seq_len": seq, "recompute_planned": k, "layers": layers,
                             "executed": batch * done, "reference": batch * ref, "ratio": done / ref,
                             "padding": 0.0, "loss": "plain (Liger's matmuls)",
                             "plan_gib": gib_of(train_parts(config, size, mode, seq=seq, gpu_mem_gb=gpu_mem_gb))})
    return rows


# ----------------------------------------------------------------------------- the demo through train.py
def synthetic_run(config: dict, mode: str, model_dir: Path, lengths: list[int], **over):
    """A train.py Run of the config's settings (the train rule's flags, `over` on top) on `model_dir`,
    its training set random token sequences of `lengths` (a 16-token unsupervised prompt each), the
    engine and loss built by train.build_engine (its recompute plan included)."""
    import train
    from elicit import steps
    from elicit.train import engine as engines
    from elicit.train.checkpoints import Keeper

    size = config["sizes"][0]
    args = steps.train_args(config, size, "lora" if mode == "lora" else f"full-{config['data']['subsets'][0]}")
    cfg = train.TrainConfig(**{**args, "model": str(model_dir), "table": "", "manifest": "", "out": "",
                               "stop_margin_min": 0, "tracking": "none", "progress": False, **over})
    ranks = engines.Ranks.from_env()
    ranks.init(deepspeed=bool(cfg.deepspeed))  # one process: DeepSpeed's rendezvous variables
    run = train.Run(cfg, ranks, train.grad_accum(cfg.global_batch, 1, ranks.world), {}, Keeper(cfg.tolerance))
    rng = random.Random(0)
    vocab = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    for n in lengths:
        ids = [rng.randrange(vocab) for _ in range(n)]
        run.train_set.append((ids, [-100] * 16 + ids[16:]))
    train.build_engine(run)
    run.engine.model.train()
    return run


def demo_step(run) -> tuple[int, float]:
    """(FLOPs of one train.train_step, padding fraction of the tokens the model was fed)."""
    import train

    fed = []
    hook = run.engine.module.register_forward_pre_hook(
        lambda m, a, kw: fed.append((kw.get("input_ids") if kw.get("input_ids") is not None else a[0]).numel()),
        with_kwargs=True)
    run.t0 = 0.0
    try:
        n = flops(lambda: train.train_step(run))
    finally:
        hook.remove()
    real = sum(len(run.train_set[i][0]) for i in range(len(run.train_set)))
    return n, 1.0 - real / max(1, sum(fed))


def demo_rows(config: dict, scale: float) -> list[dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    from elicit.data.demo import architecture

    demo = load(ROOT / "config" / "demo.yaml")
    size, batch = demo["sizes"][0], demo["train"]["global_batch"]
    d = demo["models"][size]["demo"]
    mean, sd = config["cost"]["mean_train_tokens"], config["cost"]["sd_train_tokens"]
    top, rng = config["cost"]["max_train_tokens"], random.Random(0)
    lengths = [max(32, round(min(top, max(256, rng.gauss(mean, sd))) / scale)) for _ in range(batch)]
    fields = architecture(d["hidden"], d["layers"], d["heads"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).save_pretrained(tmp)
        for mode in ("full", "lora"):
            run = synthetic_run(demo, mode, Path(tmp), lengths)  # CPU: every layer recomputed if checkpointing
            k = run.recompute["layers"]
            done, padding = demo_step(run)
            ref, _ = demo_step(synthetic_run(demo, mode, Path(tmp), lengths, loss_impl="materialised",
                                             gradient_checkpointing=False))
            rows.append({"mode": mode, "size": f"demo ({size})", "seq_len": round(sum(lengths) / len(lengths)),
                         "recompute_planned": k, "layers": d["layers"], "executed": done, "reference": ref,
                         "ratio": done / ref, "padding": padding, "loss": "chunked (CPU)", "plan_gib": None})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    ap.add_argument("--sizes", nargs="+", default=["1.5B", "7B"])
    ap.add_argument("--gpu-mem-gb", type=float, default=80.0, help="GiB per GPU the recompute plan fills (H100: 80)")
    ap.add_argument("--demo-scale", type=float, default=20.0, help="the demo's lengths: the grid's divided by this")
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--lengths", type=int, nargs="+", help="these sequence lengths instead of the grid's four")
    ap.add_argument("--json", action="store_true", help="one JSON row per setting")
    args = ap.parse_args(argv)
    config = load(Path(args.config))
    rows = ([] if args.no_demo else demo_rows(config, args.demo_scale)) + real_rows(config, args.sizes,
                                                                                    args.gpu_mem_gb, args.lengths)
    if args.json:
        for r in rows:
            print(json.dumps({k: r[k] for k in ("mode", "size", "seq_len", "recompute_planned", "ratio", "padding")}))
        return 0
    print(f"one optimiser step ({config['train']['global_batch']} sequences; demo: its own batch), FLOPs counted by "
          f"FlopCounterMode; recompute planned for {args.gpu_mem_gb:g} GiB GPUs; lengths: s1K-1.1's mean - sd, mean, "
          "mean + sd, max (demo: drawn, / --demo-scale, mean shown)")
    head = f"{'mode':<5} {'size':<12} {'seq':>6} {'recompute':>9} {'executed':>12} {'reference':>12} {'ratio':>6} " \
           f"{'padding':>7} {'plan GiB':>8}  loss"
    print(head)
    for r in rows:
        plan = f"{r['plan_gib']:.1f}" if r["plan_gib"] is not None else "-"
        print(f"{r['mode']:<5} {r['size']:<12} {r['seq_len']:>6} {r['recompute_planned']:>4}/{r['layers']:<4} "
              f"{r['executed'] / 1e12:>10.1f} T {r['reference'] / 1e12:>10.1f} T {r['ratio']:>6.3f} "
              f"{r['padding']:>7.1%} {plan:>8}  {r['loss']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
