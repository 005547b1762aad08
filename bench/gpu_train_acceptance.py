#!/usr/bin/env python
"""The steps and the table of bench/gpu_train_acceptance.sh (training at the GPU's compute speed).

  model   a random-init model of config/gpu_smoke.yaml's architecture (the shipped Qwen2.5-1.5B; the
          CPU override's tiny one in a rehearsal), saved once for the cells
  cell    train.py's own step (train.build_engine: its engine, loss and memory-planned recompute;
          train.train_step) on sequences of exactly --seq tokens, --steps optimiser steps of --batch
          sequences each, the config's settings (DeepSpeed stage included); writes one JSON per length:
          median tokens/s of the steps after the first, the allocator's peak, the plan's parts
  table   one PASS / FAIL / SKIP line per check (bench/gpu_acceptance.py's rows and memory check):
          full finetune and rank-1 LoRA at each length: tokens/s, MFU (model FLOPs, 6N per token full,
          4N LoRA, plus causal attention, over --peak-tflops) against --min-mfu-full (the first length;
          the longer ones are reported) and --min-mfu-lora, peak memory within --memory-tolerance of
          the plan; the smoke DAG's evaluation, aggregation and report (ran and finished, or in a
          rehearsal planned)
A rehearsal (--rehearse) runs on CPU: speeds need only be > 0, the memory checks are SKIP.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gpu_acceptance as acc  # noqa: E402  (the table's rows, memory check and MFU formula)


def cmd_model(args) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from elicit.data.demo import architecture, architecture_file

    config = acc.load_config(args.configfile)
    d = config["models"][config["sizes"][0]]["demo"]
    fields = architecture_file(d["arch"]) if d.get("arch") else architecture(d["hidden"], d["layers"], d["heads"])
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    with torch.device("cuda" if cuda else "cpu"):  # random init of 1.5B parameters: seconds on a GPU
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields),
                                                 dtype=torch.bfloat16 if cuda else torch.float32)
    tmp = Path(f"{args.out}.tmp")
    model.save_pretrained(tmp)
    tmp.rename(args.out)


def cmd_cell(args) -> None:
    config = acc.load_config(args.configfile)
    for mode in args.mode:
        for seq in args.seq:
            one_cell(config, mode, seq, args)


def one_cell(config: dict, mode: str, seq: int, args) -> None:
    from train_flops import synthetic_run

    import train
    from elicit.plan import memory_plan as mp

    run = synthetic_run(config, mode, Path(args.model), [seq] * args.batch, global_batch=args.batch,
                        max_steps=args.steps, gpu_mem_gib=args.gpu_mem_gib)
    if run.ranks.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run.t0, steps, t = time.time(), [], time.time()
    for _ in range(args.steps):
        steps.append(train.train_step(run))
    r, cfg = run.recompute, run.cfg
    a = mp.Arch.from_config(json.loads((Path(args.model) / "config.json").read_text()))
    lora = {"rank": cfg.lora_rank, "targets": cfg.lora_targets.split(",")} if mode == "lora" else None
    job = mp.job_config(a, seq, mode, cfg.deepspeed, run.ranks.world, lora, cfg.loss_chunk)
    parts = mp.train_parts(job, "job", mode, seq=seq, gpu_mem_gb=r["gpu_mem_gib"] or None)
    out = {"mode": mode, "seq": seq, "batch": args.batch, "steps": args.steps, "seconds": time.time() - t,
           "tokens_per_s": statistics.median(s["step_tokens_per_s"] for s in steps[1:] or steps),
           "peak_gib": max((s.get("peak_gpu_mem_gib") or 0 for s in steps), default=0) or None,
           "parts": parts, "recompute": r, "loss_impl": run.loss_fn.impl, "deepspeed": cfg.deepspeed,
           "device": torch.cuda.get_device_name() if run.ranks.device.type == "cuda" else "cpu"}
    Path(args.out, f"{mode}-{seq}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "parts"}), flush=True)
    train.close(run)
    if run.ranks.device.type == "cuda":
        torch.cuda.empty_cache()


def training_rows(config: dict, args, gpu: bool) -> None:
    from elicit.plan.memory_plan import load_arch

    a = load_arch(config, config["sizes"][0])
    tol = args.memory_tolerance
    for mode, goal in (("full", args.min_mfu_full), ("lora", args.min_mfu_lora)):
        for i, seq in enumerate(args.seq):
            f = Path(args.out, f"{mode}-{seq}.json")
            what = f"train {mode} {seq} tokens"
            if not f.is_file():
                acc.row(f"{what}: tokens/s, MFU", "no result (timed out or failed: see its log)", "a result", False)
                continue
            c = json.loads(f.read_text())
            mfu = c["tokens_per_s"] * acc.model_flops_per_token(a, seq, mode) / (args.peak_tflops * 1e12)
            want = goal if mode == "lora" or i == 0 else None  # the longer lengths: reported
            r = c["recompute"]
            acc.row(f"{what}: tokens/s, MFU",
                    f"{c['tokens_per_s']:,.0f} tok/s, MFU {mfu:.1%}, recompute {r['layers']}/{r['of']}, "
                    f"{c['deepspeed'] or 'no DeepSpeed'}, loss {c['loss_impl']}",
                    (f"MFU >= {want:.0%}" if want is not None else "reported") if gpu else "> 0",
                    mfu >= want if gpu and want is not None else c["tokens_per_s"] > 0)
            acc.memory_row(f"{what}: peak memory", c["peak_gib"], c["parts"], gpu, (1 - tol, 1 + tol))


def dag_rows(args) -> None:
    log = Path(args.dag_log).read_text() if Path(args.dag_log).is_file() else ""
    if args.rehearse:  # a dry run: the smoke DAG plans its evaluation, aggregation and report
        planned = [r for r in ("evaluate", "aggregate", "report") if r in log]
        acc.row("smoke DAG: evaluation, aggregation, report", f"dry run exit {args.snakemake_rc}, planned "
                f"{', '.join(planned) or 'none'}", "exit 0, all three planned",
                args.snakemake_rc == 0 and len(planned) == 3)
        return
    acc.check_rules(args)
    made = [p for p in ("results/table1.csv", "results/report.html") if (Path(args.workdir) / p).is_file()]
    acc.row("smoke DAG: evaluation, aggregation, report", f"{len(made)} of 2 outputs ({', '.join(made)})",
            "table1.csv and report.html", len(made) == 2)


def cmd_table(args) -> int:
    config = acc.load_config(args.configfile)
    cells = [json.loads(f.read_text()) for f in sorted(Path(args.out).glob("*.json"))]
    gpu = any(c["device"] != "cpu" for c in cells) and not args.rehearse
    training_rows(config, args, gpu)
    dag_rows(args)
    device = next((c["device"] for c in cells), "no cell ran")
    return acc.print_table(f"gpu_train_acceptance: {'CPU rehearsal' if args.rehearse else device}, "
                           f"torch {torch.__version__}, config {' + '.join(args.configfile)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("model", "cell", "table"):
        p = sub.add_parser(name)
        p.add_argument("--configfile", nargs="+", required=True)
        p.add_argument("--out", required=True, help="model: its folder; cell, table: the cells' folder")
        p.add_argument("--seq", type=int, nargs="+", default=[8192, 16384])
    cell, table = sub.choices["cell"], sub.choices["table"]
    cell.add_argument("--mode", choices=("full", "lora"), nargs="+", required=True)
    cell.add_argument("--model", required=True)
    cell.add_argument("--batch", type=int, default=2, help="sequences per optimiser step")
    cell.add_argument("--steps", type=int, default=3, help="optimiser steps (the first is not timed)")
    cell.add_argument("--gpu-mem-gib", type=float, default=0.0,
                      help="GiB the recompute plan fills (0: the GPU's own; a rehearsal plans for an H100's 80)")
    table.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    table.add_argument("--min-mfu-full", type=float, default=0.40)
    table.add_argument("--min-mfu-lora", type=float, default=0.30)
    table.add_argument("--memory-tolerance", type=float, default=0.15)
    table.add_argument("--rehearse", action="store_true")
    table.add_argument("--workdir", required=True, help="the smoke DAG's workdir")
    table.add_argument("--dag-log", required=True)
    table.add_argument("--snakemake-rc", type=int, required=True)
    table.add_argument("--snakemake-s", type=float, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "model":
        cmd_model(args)
        return 0
    if args.cmd == "cell":
        cmd_cell(args)
        return 0
    return cmd_table(args)


if __name__ == "__main__":
    sys.exit(main())
