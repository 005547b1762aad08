#!/usr/bin/env python
"""What a rerun would do, cell by cell: the evaluation grid with the state of every seed.

The plan comes from Snakemake itself (`snakemake -n --nolock` with the workflow's own rerun
triggers; its jobs and their reasons), so "done" means what a dry-run would not run, not merely
a file that exists.
Damage comes from workflow/scripts/elicit/checks/integrity.py, running jobs from Snakemake's incomplete markers
with a live lock and from SLURM's queue (jobs of this directory, by the plugin's comment).

States of one seed of one cell (results/eval/{size}/{config}/{task}/seed{k}.json), worst first:
  corrupt     the result or its samples fail the integrity check (the file is named below)
  failed      no result, but a log: the last attempt died
  running     an incomplete marker with a lock held by a live snakemake (a process in this directory on
              this host), or a SLURM job of this directory runs it
  incomplete  an incomplete marker and no run: killed mid-job; the rerun redoes it
  outdated    the result exists but a dry-run would redo it (params changed, upstream redone, ...)
  missing     never ran
  done        exists, checks out, and a dry-run would leave it alone
A model (LoRA/full finetune) is ready / outdated / running / failed / missing / corrupt likewise.

  python workflow/scripts/status.py --config config/demo.yaml       # beside a run; starts no job
  python workflow/scripts/status.py --config config/config.yaml --sizes 32B --json
  snakemake status                                                  # the same for snakemake's config
Exit status 0; with --check, 1 unless every cell is done.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from elicit import grid, variants
from elicit.checks import integrity
from elicit.checks.config import check, load_site
from elicit.plan import eval_jobs

ORDER = ("corrupt", "failed", "running", "incomplete", "outdated", "missing", "done")
ROOT = Path(__file__).resolve().parents[2]


def the_grid(cfg: dict, sizes: list[str] | None = None) -> dict:
    """The evaluation grid of a config dict, in the Snakefile's order."""
    unknown = [s for s in sizes or [] if s not in cfg["models"]]
    if unknown:
        raise SystemExit(f"status: sizes {unknown} are not in the config's models")
    sizes = list(sizes or cfg["sizes"])
    extra = [c for c in variants.cells(cfg) if any(c in variants.cells(cfg, s) for s in sizes)]  # `lora@<variant>`...
    return {"sizes": sizes,
            "configs": grid.configurations(cfg["data"]["subsets"]) + extra,
            "tasks": list(cfg["eval"]["tasks"]), "seeds": list(cfg["eval"]["seeds"])}


REASONS = {"Params have changed": "params changed", "Input files updated by another job": "upstream redone",
           "Missing output files": "missing", "Incomplete output files": "incomplete", "Forced": "forced",
           "Set of input files has changed": "inputs changed", "Code has changed": "code changed",
           "Updated input files": "newer inputs", "Software environment": "software changed"}


def reasons(text: str) -> str:
    """Snakemake's `reason:` line in short: 'params changed, upstream redone'."""
    found = [short for long, short in REASONS.items() if long in text]
    return ", ".join(found) or text.strip()[:80]


def plan(cfg: dict, snakefile: Path, workdir: Path, triggers: list[str]) -> dict[str, tuple[str, str]]:
    """{output: (rule, why)} of every job a dry-run of this config would run (no lock taken)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
    cmd = [shutil.which("snakemake") or "snakemake", "-n", "--nolock", "--rerun-incomplete", "-s", str(snakefile),
           "-d", str(workdir), "--configfile", fh.name, "--rerun-triggers", *triggers]
    env = dict(os.environ, WORKFLOW_SKIP_INTEGRITY="1")  # damage is reported here, not a refusal
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    finally:
        os.unlink(fh.name)
    if out.returncode:
        raise SystemExit(f"status: the dry-run failed:\n{out.stderr[-3000:]}")
    rows, rule, outputs = {}, None, []
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            rule, outputs = line[5:-1], []
        elif rule and line.strip().startswith("output:"):
            outputs = [o.strip() for o in line.split(":", 1)[1].split(",")]
        elif rule and line.strip().startswith("reason:"):
            why = reasons(line.split(":", 1)[1])
            rows.update({o: (rule, why) for o in outputs})
    return rows


def incomplete_outputs(workdir: Path) -> set[str]:
    """Outputs snakemake marked incomplete: .snakemake/incomplete/<urlsafe-b64 of the path>."""
    root, out = workdir / ".snakemake" / "incomplete", set()
    for dirpath, _, files in os.walk(root):
        for f in files:
            enc = "".join(p.removeprefix("@") for p in Path(dirpath, f).relative_to(root).parts)
            try:
                out.add(base64.urlsafe_b64decode(enc.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return out


def locked_outputs(workdir: Path) -> set[str]:
    """Outputs a live snakemake holds (.snakemake/locks/N.output.lock, one path per line)."""
    out = set()
    for lock in (workdir / ".snakemake" / "locks").glob("*.output.lock"):
        for line in lock.read_text().splitlines():
            if line.strip():
                p = Path(line.strip())
                out.add(os.path.relpath(p, workdir) if p.is_absolute() else str(p))
    return out


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def live_snakemake(workdir: Path) -> bool:
    """A snakemake process on this host working in `workdir` (not a --nolock dry-run, not this
    program's own ancestors: `snakemake status`). Snakemake's lock files hold no pid: a lock with
    no such process is stale (a kill -9), and its outputs are incomplete, not running."""
    here, mine = os.path.realpath(workdir), _ancestors(os.getpid())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            live = int(proc.name) not in mine and os.readlink(proc / "cwd") == here
        except (OSError, ValueError):
            continue
        if live and any(Path(a).name == "snakemake" for a in argv[:2]) and "--nolock" not in argv:
            return True
    return False


def slurm_comments(workdir: Path) -> set[str]:
    """Comments (rule_<rule>_wildcards_<values>) of this directory's queued SLURM jobs."""
    if shutil.which("squeue") is None:
        return set()
    try:
        out = subprocess.run(["squeue", "--me", "-h", "-o", "%k|%Z"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    here = os.path.realpath(workdir)
    return {c for c, _, d in (line.partition("|") for line in out.splitlines()) if os.path.realpath(d) == here}


def state_of(path: str, log: Path, ctx: dict, comment: str) -> tuple[str, str]:
    """(state, why) of one output file."""
    if path in ctx["damaged"]:
        return "corrupt", ctx["damaged"][path]
    running = comment in ctx["queued"] or (path in ctx["incomplete"] and path in ctx["locked"])
    if running:
        return "running", "a job is writing it"
    if path in ctx["incomplete"]:
        return "incomplete", "killed mid-job; the rerun redoes it"
    if not (ctx["workdir"] / path).exists():
        return ("failed", f"see {log}") if log.exists() else ("missing", "never ran")
    return ("outdated", ctx["plan"][path][1]) if path in ctx["plan"] else ("done", "")


def collect(cfg: dict, g: dict, workdir: Path, plan_rows: dict) -> dict:
    res = workdir / "results"
    damaged = {}
    for msg in integrity.problems(res):
        name = msg.split(":", 1)[0]
        rel = os.path.relpath(name, workdir) if os.path.isabs(name) else name
        damaged.setdefault(rel.replace(".samples.jsonl", ".json"), msg.splitlines()[0])
    ctx = {"plan": plan_rows, "damaged": damaged, "incomplete": incomplete_outputs(workdir), "workdir": workdir,
           "queued": slurm_comments(workdir),
           "locked": locked_outputs(workdir) if live_snakemake(workdir) else set()}  # a stale lock: none
    cells, models = [], {}
    gpu_mem = load_site(cfg).get("gpu_mem_gb")  # how the evaluation cells are grouped into jobs
    for size in g["sizes"]:
        for cell in g["configs"]:
            if variants.split(cell)[1] and cell not in variants.cells(cfg, size):
                continue  # an extra training seed's cell of another size (train.seed_sizes)
            config = variants.model_run(cfg, cell)  # a variant's cell may evaluate the default's model
            if config not in ("base", "skyline") and f"{size}/{config}" not in models:
                sel = grid.selection(size, config)
                hurt = [m for p, m in damaged.items() if p.startswith((f"results/train/{size}/{config}/",
                                                                        f"results/models/{size}/{config}/"))]
                train_log = res / "logs" / "train" / size / f"{config}.log"
                models[f"{size}/{config}"] = ("corrupt", hurt[0]) if hurt else state_of(
                    sel, train_log, ctx, f"rule_train_wildcards_{size}_{config}")
            for task in g["tasks"]:
                seeds = {}
                for seed in g["seeds"]:
                    seeds[seed] = state_of(grid.eval_output(size, cell, task, seed),
                                           Path(grid.eval_log(size, cell, task, seed, res)), ctx,
                                           eval_jobs.slurm_comment(cfg, gpu_mem, size, cell, task, seed))
                worst = min((s for s, _ in seeds.values()), key=ORDER.index)
                cells.append({"size": size, "configuration": cell, "task": task,
                              "model": models.get(f"{size}/{config}", ("-", ""))[0], "state": worst,
                              "done": sum(s == "done" for s, _ in seeds.values()), "n": len(seeds),
                              "seeds": {k: {"state": s, "why": w} for k, (s, w) in seeds.items()}})
    jobs = {"train": set(), "evaluate": set()}  # one job per training dir, per evaluation file
    for path, (rule, _) in plan_rows.items():
        rule = "evaluate" if rule.startswith("evaluate") else rule  # evaluate_<tasks>_seeds_<seeds>: several cells
        if rule in jobs:
            jobs[rule].add(str(Path(path).parent) if rule == "train" else path)
    return {"grid": g, "cells": cells, "models": {k: {"state": s, "why": w} for k, (s, w) in models.items()},
            "would_run": {rule: len(v) for rule, v in jobs.items()}}


def render(st: dict) -> str:
    g, cells = st["grid"], st["cells"]
    lines = [f"Grid: {len(g['sizes'])} sizes × {len(g['configs'])} configurations × {len(g['tasks'])} tasks × "
             f"{len(g['seeds'])} seeds (seeds {', '.join(map(str, g['seeds']))})"]
    w_cfg, w_task = max(map(len, g["configs"] + ["configuration"])), max(map(len, g["tasks"] + ["4/4 incomplete"]))
    for size in g["sizes"]:
        lines += ["", f"{size:<{w_cfg + 2}} {'model':<10} " + " ".join(f"{t:<{w_task}}" for t in g["tasks"])]
        for config in g["configs"]:
            row = [c for c in cells if (c["size"], c["configuration"]) == (size, config)]
            if not row:
                continue
            lines.append(f"  {config:<{w_cfg}} {row[0]['model']:<10} "
                         + " ".join(f"{c['done']}/{c['n']} {c['state']:<{w_task - 4}}" for c in row))
    seeds = [(c, k, v) for c in cells for k, v in c["seeds"].items()]
    counts = {s: sum(v["state"] == s for _, _, v in seeds) for s in ORDER}
    lines += ["", "Evaluations: " + ", ".join(f"{counts[s]} {s}" for s in ORDER if counts[s] or s == "done")
              + f" (of {len(seeds)}). Models: "
              + ", ".join(f"{n} {s}" for s in ("ready", *ORDER) if (n := sum(m["state"] == s for m in st["models"].values())))]
    wr = st["would_run"]
    lines.append(f"A rerun would run {wr['train']} training(s) and {wr['evaluate']} evaluation(s) (what a dry-run "
                 "plans), then aggregate." if wr["train"] or wr["evaluate"] else
                 "Nothing left to run for this grid (a dry-run plans no training or evaluation).")
    for c, k, v in seeds:
        if v["state"] not in ("done", "missing"):
            lines.append(f"  {v['state']}: {grid.eval_output(c['size'], c['configuration'], c['task'], k)}"
                         + (f" ({v['why']})" if v["why"] else ""))
    lines += [f"  {m['state']} model: {name} ({m['why']})" for name, m in st["models"].items()
              if m["state"] not in ("done", "missing")]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the workflow config YAML (config/demo.yaml, config/config.yaml)")
    src.add_argument("--config-json", help="the whole config as JSON (what `snakemake status` passes)")
    ap.add_argument("--workdir", default=".", help="the run's working directory (holds results/ and .snakemake/)")
    ap.add_argument("--snakefile", default=str(ROOT / "Snakefile"))
    ap.add_argument("--rerun-triggers", nargs="+", default=["params", "input"], help="as the run uses (the profiles': params input)")
    ap.add_argument("--sizes", nargs="+", default=None, help="only these sizes (default: the config's `sizes`)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every cell is done")
    args = ap.parse_args(argv)
    cfg = check(yaml.safe_load(Path(args.config).read_text()) if args.config else json.loads(args.config_json))
    g, workdir = the_grid(cfg, args.sizes), Path(args.workdir).resolve()
    st = collect(cfg, g, workdir, plan(cfg, Path(args.snakefile), workdir, args.rerun_triggers))
    sys.stdout.write(json.dumps(st, indent=2, default=str) + "\n" if args.json else render(st))
    return 1 if args.check and any(c["state"] != "done" for c in st["cells"]) else 0


if __name__ == "__main__":
    sys.exit(main())
