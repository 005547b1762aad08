#!/usr/bin/env python
"""The table of bench/gpu_acceptance.sh: one PASS / FAIL / SKIP line per check of a finished
config/gpu_smoke.yaml run (the .sh runs the DAG, then this).

Checks, from what the project's own programs recorded (train.py's metrics.jsonl rows, eval_cell.py's
result JSON), never from a separate benchmark of bare model steps:
  rules        the DAG finished (snakemake's exit code) and a second dry-run plans nothing
  train mem    the allocator's peak of each training vs the memory plan's prediction (elicit/plan/memory_plan.py,
               less its CUDA_OVERHEAD_GIB, which the allocator does not see): ratio within [0.7, 1.3]
  eval mem     the same for each evaluation cell
  train speed  train.py's step tokens/s (median over steps, the first left out) and its MFU: model FLOPs
               (6 x (matmul parameters + layers x seq x hidden) per token, 4 x for a LoRA) over the
               GPU's dense bf16 peak (--peak-tflops); a GPU run needs MFU >= --min-mfu
  eval speed   tokens/s of the default backend vs lm-eval's plain HF backend (`hf`), same cell, prompts
               and answer lengths (random weights never stop early: every answer is max_gen_toks long;
               whole eval_cell.py runs, model load included, so the ratio understates generation alone)
  fused loss   the loss implementation train.py chose: liger (fused linear cross-entropy) on CUDA
  tensor par.  SKIP with one GPU (the smoke has one)
On CPU (--rehearse) the memory checks are SKIP (no allocator peak) and the speed checks only need > 0.

Usage:  python bench/gpu_acceptance.py --workdir W --configfile config/gpu_smoke.yaml [...] \
            --snakemake-rc 0 --snakemake-s 312 --throughput W/speed [--rehearse]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RATIO = (0.7, 1.3)
rows: list[tuple[str, str, str, str]] = []


def row(check: str, measured: str, expected: str, ok: bool | None) -> None:
    rows.append((check, measured, expected, "SKIP" if ok is None else ("PASS" if ok else "FAIL")))


def load_config(files: list[str]) -> dict:
    from snakemake.utils import update_config

    from elicit.checks.config import check

    config: dict = {}
    for f in files:  # as snakemake merges several --configfile
        update_config(config, yaml.safe_load(Path(f).read_text()))
    return check(config)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def memory_row(what: str, measured_gib: float | None, parts: dict, gpu: bool, bounds=RATIO) -> None:
    from elicit.plan.memory_plan import CUDA_OVERHEAD_GIB, gib_of

    predicted = gib_of(parts) - CUDA_OVERHEAD_GIB
    if not gpu or measured_gib is None:
        row(what, "no CUDA allocator" if not gpu else "not recorded", f"plan {predicted:.2f} GiB",
            None if not gpu else False)
        return
    ratio = measured_gib / predicted
    row(what, f"{measured_gib:.2f} GiB ({ratio:.2f} x plan)", f"plan {predicted:.2f} GiB, x {bounds[0]}-{bounds[1]}",
        bounds[0] <= ratio <= bounds[1])


def model_flops_per_token(a, seq: float, mode: str) -> float:
    """Model FLOPs per trained token (MFU's numerator): forward 2N + backward 4N over the matmul
    parameters N (the LM head included), a LoRA 4N (its frozen weights need no weight gradients),
    plus causal attention (layers x seq x hidden, times the same factor); recomputation not counted."""
    matmul = a.params() - a.vocab * a.hidden + (a.vocab * a.hidden if a.tied else 0)  # the LM head is a matmul
    return (6 if mode == "full" else 4) * (matmul + a.layers * seq * a.hidden)


def print_table(title: str) -> int:
    """The rows as one PASS / FAIL / SKIP table; 1 if any failed."""
    print(f"\n{title}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[3]:<5} {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  expected {r[2]}")
    failed = [r for r in rows if r[3] == "FAIL"]
    print(f"FAILED: {len(failed)} of {len(rows)} checks" if failed else
          f"ALL PASS: {sum(r[3] == 'PASS' for r in rows)} checks ({sum(r[3] == 'SKIP' for r in rows)} skipped)")
    return 1 if failed else 0


def recorded_on_gpu(config: dict, size: str, workdir: str) -> bool:
    """Whether the run's trainings or evaluation cells ran on CUDA (as they recorded: a training row
    has the allocator's peak only on CUDA): the table can be rebuilt from a GPU run's files on another
    machine (--skip-runs), also when its evaluation never finished."""
    from elicit import grid

    f = Path(workdir) / grid.eval_output(size, "base", config["eval"]["tasks"][0], config["eval"]["seeds"][0])
    if f.is_file() and str(json.loads(f.read_text()).get("device", "")).startswith("cuda"):
        return True
    for trained in grid.trained(sorted(config["data"]["subsets"], reverse=True)):
        metrics = Path(workdir) / grid.train_outputs(size, trained)["metrics"]
        if metrics.is_file() and any(r.get("peak_gpu_mem_gib") for r in jsonl(metrics)):
            return True
    return False


def check_rules(args) -> None:
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", args.workdir,
                          "--configfile", *args.configfile], capture_output=True, text=True)
    nothing = out.returncode == 0 and "Nothing to be done" in out.stdout + out.stderr
    row("rules: whole DAG finished", f"exit {args.snakemake_rc} in {args.snakemake_s:.0f} s",
        "exit 0", args.snakemake_rc == 0)
    row("rules: rerun plans nothing", "nothing to be done" if nothing else "jobs left", "nothing", nothing)


def check_training(config: dict, size: str, gpu: bool, args) -> None:
    from elicit import grid
    from elicit.plan.memory_plan import load_arch, train_parts

    a = load_arch(config, size)
    for trained in grid.trained(sorted(config["data"]["subsets"], reverse=True)):
        metrics = Path(args.workdir) / grid.train_outputs(size, trained)["metrics"]
        if not metrics.is_file():
            row(f"train {trained}: metrics", "missing", str(metrics), False)
            continue
        steps = [r for r in jsonl(metrics) if r.get("step_tokens_per_s")]
        mode = "lora" if trained == "lora" else "full"
        memory_row(f"train {trained}: peak memory", max((r.get("peak_gpu_mem_gib", 0) for r in steps), default=None)
                   or None, train_parts(config, size, mode), gpu)
        warm = steps[1:] or steps
        tps = statistics.median(r["step_tokens_per_s"] for r in warm)
        seq = statistics.mean(r["step_tokens"] for r in warm) / config["train"]["global_batch"]
        mfu = tps * model_flops_per_token(a, seq, mode) / (args.peak_tflops * 1e12)
        row(f"train {trained}: tokens/s, MFU", f"{tps:,.0f} tok/s, MFU {mfu:.1%} (seq {seq:,.0f})",
            f"MFU >= {args.min_mfu:.0%}" if gpu else "> 0", mfu >= args.min_mfu if gpu else tps > 0)
        impl = {r.get("loss_impl") for r in steps}
        want = "liger" if gpu else "chunked"
        row(f"train {trained}: loss", ", ".join(sorted(map(str, impl))), want, impl == {want})


def check_eval(config: dict, size: str, gpu: bool, args) -> None:
    from elicit import grid
    from elicit.plan.memory_plan import eval_layout, eval_plan

    layout = eval_layout(config, size, None)
    records = []
    for cfg in grid.configurations(sorted(config["data"]["subsets"], reverse=True)):
        for task in config["eval"]["tasks"]:
            for seed in config["eval"]["seeds"]:
                f = Path(args.workdir) / grid.eval_output(size, cfg, task, seed)
                records.append(json.loads(f.read_text()) if f.is_file() else {})
    measured = max((r["peak_gpu_mem_gib"] for r in records if r.get("peak_gpu_mem_gib") is not None), default=None)
    memory_row(f"eval ({len(records)} cells): peak memory", measured,
               eval_plan(config, size, layout, batch=answers_in_flight(config, size)), gpu)
    if config["eval"]["backend"] == "hf-cb":  # flash-attn, or per-sequence SDPA: never one SDPA over all sequences
        made = [r["resume"] for r in records if (r.get("resume") or {}).get("generated")]  # not restored ones
        used = sorted({str(m.get("attention")) for m in made})
        row("eval attention (hf-cb)", ", ".join(used) or "no cell generated", "flash_attention_2/3 or sdpa-varlen",
            bool(made) and set(used) <= {"flash_attention_2", "flash_attention_3", "sdpa-varlen"})


def answers_in_flight(config: dict, size: str) -> int:
    """hf-cb: every answer of the largest job (its cache is sized to the workload when that fits);
    hf-resumable / hf: eval.batch_size."""
    from elicit.plan.eval_jobs import groups

    e = config["eval"]
    if e["backend"] != "hf-cb":
        return e["batch_size"] if isinstance(e["batch_size"], int) else 1
    return max(int(e["limit"] or 30) * len(tasks) * len(seeds) for tasks, seeds in groups(config, size, None))


def run_speed_cells(config: dict, size: str, args) -> None:
    """The same cell (base model, first task, seed 0) under the default backend and plain `hf`, one after
    the other on an otherwise idle GPU."""
    from elicit import steps

    e, out = config["eval"], Path(args.throughput)
    out.mkdir(parents=True, exist_ok=True)
    # the eval rule's flags for the base model's cell; paths of the run's workdir, not the checkout's
    cell = {**steps.eval_model_args(config, size, "base", "base"),
            **steps.eval_args(config, size, e["tasks"][:1], [0], layout="single"), **steps.include_args(config)}
    cell["model"] = str(Path(args.workdir) / cell["model"])
    if cell["include_path"]:
        cell["include_path"] = str(ROOT / cell["include_path"])
    common = {**cell, "max_gen_toks": args.speed_tokens, "limit": e["limit"] or 8}
    # plain hf in lockstep batches of 8 (the former default): its batch_size auto would first probe
    # batches of up to 64 at the full context length, and that probe is not generation (104 s of
    # a 109 s cell on the CPU rehearsal)
    for name, backend, bs in (("default", e["backend"], cell["batch_size"]), ("hf", "hf", 8)):
        cmd = [sys.executable, str(ROOT / "workflow" / "scripts" / "eval_cell.py"),
               *steps.argv({**common, "backend": backend, "batch_size": bs}), "--out", str(out / f"{name}.json")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=args.workdir, timeout=args.speed_timeout)
            (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
        except subprocess.TimeoutExpired as err:
            text = "".join(x.decode() if isinstance(x, bytes) else x for x in (err.stdout or "", err.stderr or ""))
            (out / f"{name}.log").write_text(f"stopped after {args.speed_timeout} s\n{text}")


def check_eval_speed(config: dict, gpu: bool, args) -> None:
    speeds = {}
    for backend in ("default", "hf"):
        f = Path(args.throughput) / f"{backend}.json"
        if not f.is_file():
            row("eval speed: default vs plain hf (batches of 8)", f"{f.name} missing", "both cells", False)
            return
        r = json.loads(f.read_text())
        speeds[backend] = (r["n_samples"] * args.speed_tokens / r["elapsed_s"], r["backend"])
    (d, name), (h, _) = speeds["default"], speeds["hf"]
    ratio = d / h
    row("eval speed: default vs plain hf (batches of 8)", f"{name} {d:,.0f} vs hf {h:,.0f} tok/s ({ratio:.2f} x)",
        ">= 0.9 x" if gpu else "> 0", ratio >= 0.9 if gpu else d > 0 and h > 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--configfile", nargs="+", required=True)
    ap.add_argument("--snakemake-rc", type=int, required=True)
    ap.add_argument("--snakemake-s", type=float, required=True)
    ap.add_argument("--throughput", required=True, help="folder for the speed cells (default.json, hf.json)")
    ap.add_argument("--speed-tokens", type=int, default=256, help="max_gen_toks of the two speed cells")
    ap.add_argument("--speed-timeout", type=float, default=None, help="seconds per speed cell (None: no limit)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    ap.add_argument("--min-mfu", type=float, default=0.10)
    ap.add_argument("--skip-runs", action="store_true", help="run nothing: the table of recorded files only")
    ap.add_argument("--rehearse", action="store_true", help="CPU: no allocator peaks, speeds need only be > 0")
    args = ap.parse_args()
    import torch

    config = load_config(args.configfile)
    size = config["sizes"][0]
    gpu = recorded_on_gpu(config, size, args.workdir) and not args.rehearse
    check_rules(args)
    check_training(config, size, gpu, args)
    check_eval(config, size, gpu, args)
    if not args.skip_runs:
        run_speed_cells(config, size, args)
    check_eval_speed(config, gpu, args)
    row("tensor parallel", f"{torch.cuda.device_count()} GPU(s)", "needs >= 2 GPUs", None)
    where = ("recorded on CUDA" if not torch.cuda.is_available() else torch.cuda.get_device_name()) if gpu \
        else "CPU rehearsal"
    return print_table(f"gpu_acceptance: {where}, torch {torch.__version__}, config {' + '.join(args.configfile)}")


if __name__ == "__main__":
    sys.exit(main())
