#!/usr/bin/env python
"""What is done, missing or failed in the evaluation grid, i.e. what a rerun would still do.

Reads the grid from the workflow's config YAML (sizes, data.subsets, eval.tasks, eval.seeds;
the same keys the Snakefile uses), then looks at the files under --results only; it starts no
snakemake, so it is safe to run next to a live run.

  python workflow/scripts/status.py --config config/demo.yaml --results results
  python workflow/scripts/status.py --config config/config.yaml --sizes 32B --json
  snakemake status            # the same, for the config snakemake was given (local rule;
                              # it passes the grid as --config-json)

For each size × configuration × task it prints the seeds done out of N and a state:

  done     every seed's results/eval/{size}/{config}/{task}/seed{k}.json exists
  failed   at least one seed FAILED: its log results/logs/eval/.../seed{k}.log exists but its output
           does not, or snakemake's incomplete marker (.snakemake/incomplete/) names its output
           (a job killed mid-run, whose output snakemake will treat as incomplete and redo)
  missing  otherwise: some seeds not run yet (never started), none failed

A job still running looks like "failed" (its log exists, its output not yet); the footer says
so when .snakemake/locks holds a lock. For LoRA and full finetunes the `model` column tells
whether the checkpoint is selected (results/models/{size}/{config}/selection.json: ready), its
training or selection failed (log without selection.json), or is still to train (missing).

Exit status 0; with --check, 1 unless every cell is done.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

import yaml

STATES = ("done", "missing", "failed")


def grid(cfg: dict, sizes: list[str] | None = None) -> dict:
    """The evaluation grid of a config dict, in the Snakefile's order."""
    all_sizes = list(cfg["sizes"])
    if sizes:
        unknown = [s for s in sizes if s not in all_sizes and s not in cfg.get("models", {})]
        if unknown:
            raise SystemExit(f"status: sizes {unknown} are not in the config")
    subsets = sorted(cfg["data"]["subsets"], reverse=True)
    return {"sizes": list(sizes or all_sizes),
            "configs": ["base", "skyline", "lora"] + [f"full-{n}" for n in subsets],
            "tasks": list(cfg["eval"]["tasks"]), "seeds": list(cfg["eval"]["seeds"])}


def incomplete_outputs(snakemake_dir: Path) -> set[Path]:
    """Outputs snakemake marked incomplete: .snakemake/incomplete/<urlsafe-b64 of the path>,
    split into '@'-prefixed chunks where longer than a file name may be."""
    root = snakemake_dir / "incomplete"
    out: set[Path] = set()
    if not root.is_dir():
        return out
    workdir = snakemake_dir.resolve().parent
    for dirpath, _, files in os.walk(root):
        for f in files:
            rel = Path(dirpath, f).relative_to(root)
            enc = "".join(p.removeprefix("@") for p in rel.parts)
            try:
                name = base64.urlsafe_b64decode(enc.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # e.g. migration_underway
            p = Path(name)
            out.add((p if p.is_absolute() else workdir / p).resolve())
    return out


def seed_state(output: Path, log: Path, incomplete: set[Path]) -> str:
    if output.resolve() in incomplete:
        return "failed"
    if output.exists():
        return "done"
    return "failed" if log.exists() else "missing"


def model_state(results: Path, size: str, config: str, incomplete: set[Path]) -> str:
    if config in ("base", "skyline"):
        return "-"
    sel = results / "models" / size / config / "selection.json"
    if sel.exists() and sel.resolve() not in incomplete:
        return "ready"
    logs = [results / "logs" / stage / size / f"{config}.log" for stage in ("train", "select")]
    return "failed" if any(p.exists() for p in logs) or sel.resolve() in incomplete else "missing"


def collect(g: dict, results: Path, snakemake_dir: Path | None = None) -> dict:
    """Per cell: seeds done/failed/missing, state; per trained model: its state."""
    snakemake_dir = snakemake_dir if snakemake_dir is not None else results.resolve().parent / ".snakemake"
    incomplete = incomplete_outputs(snakemake_dir)
    cells = []
    for size in g["sizes"]:
        for config in g["configs"]:
            model = model_state(results, size, config, incomplete)
            for task in g["tasks"]:
                seeds = {}
                for seed in g["seeds"]:
                    rel = Path(size) / config / task / f"seed{seed}"
                    seeds[seed] = seed_state(results / "eval" / rel.with_suffix(".json"),
                                             results / "logs" / "eval" / rel.with_suffix(".log"), incomplete)
                states = set(seeds.values())
                state = "failed" if "failed" in states else "done" if states == {"done"} else "missing"
                cells.append({"size": size, "configuration": config, "task": task, "model": model,
                              "done": sum(v == "done" for v in seeds.values()), "n": len(seeds),
                              "state": state, "seeds": seeds})
    locks = snakemake_dir / "locks"
    return {"grid": g, "cells": cells, "locked": locks.is_dir() and any(locks.iterdir())}


def render(st: dict, source: str = "") -> str:
    g, cells = st["grid"], st["cells"]
    n_seeds = len(g["seeds"])
    lines = [f"Grid{f' ({source})' if source else ''}: {len(g['sizes'])} sizes × {len(g['configs'])} "
             f"configurations × {len(g['tasks'])} tasks × {n_seeds} seeds (seeds {', '.join(map(str, g['seeds']))})"]
    w_cfg = max(len(c) for c in g["configs"] + ["configuration"])
    w_task = max(max(len(t) for t in g["tasks"]), len(f"{n_seeds}/{n_seeds} missing"))
    for size in g["sizes"]:
        lines.append("")
        lines.append(f"{size:<{w_cfg + 2}} {'model':<8} " + " ".join(f"{t:<{w_task}}" for t in g["tasks"]))
        for config in g["configs"]:
            row = [c for c in cells if c["size"] == size and c["configuration"] == config]
            lines.append(f"  {config:<{w_cfg}} {row[0]['model']:<8} "
                         + " ".join(f"{str(c['done']) + '/' + str(c['n']) + ' ' + c['state']:<{w_task}}" for c in row))
    runs = [(c, s) for c in cells for s, v in c["seeds"].items() if v != "done"]
    failed = [(c, s) for c, s in runs if c["seeds"][s] == "failed"]
    models = {(c["size"], c["configuration"]): c["model"] for c in cells if c["model"] != "-"}
    todo_models = [k for k, v in models.items() if v != "ready"]
    total = len(cells) * n_seeds
    lines += ["", f"Evaluations: {total - len(runs)}/{total} done, {len(failed)} failed, "
                  f"{len(runs) - len(failed)} missing. Models: {len(models) - len(todo_models)}/{len(models)} selected."]
    redo = [(c, s) for c in cells for s, v in c["seeds"].items()
            if v == "done" and (c["size"], c["configuration"]) in todo_models]
    if runs or todo_models:
        lines.append(f"A rerun would still: train/select {len(todo_models)} model(s), run {len(runs) + len(redo)} "
                     f"evaluation(s)" + (f" ({len(redo)} of them done but downstream of a model to redo)" if redo else "")
                     + ", then aggregate.")
    else:
        lines.append("Nothing left to run for this grid (aggregation reruns only if its inputs changed).")
    for c, s in failed:
        lines.append(f"  failed: results/eval/{c['size']}/{c['configuration']}/{c['task']}/seed{s}.json "
                     f"(log: results/logs/eval/{c['size']}/{c['configuration']}/{c['task']}/seed{s}.log)")
    for size, config in todo_models:
        if models[(size, config)] == "failed":
            lines.append(f"  failed: model {size}/{config} (logs: results/logs/train|select/{size}/{config}.log)")
    if st["locked"]:
        lines.append("Note: .snakemake/locks holds a lock, a run may be active: 'failed' cells may still be running.")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the workflow config YAML (config/demo.yaml, config/config.yaml)")
    src.add_argument("--config-json", help="the same keys as JSON (what `snakemake status` passes)")
    ap.add_argument("--results", default="results", help="the results directory of the run")
    ap.add_argument("--sizes", nargs="+", default=None, help="only these sizes (default: the config's `sizes`)")
    ap.add_argument("--snakemake-dir", default=None, help="default: .snakemake next to --results")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every cell is done")
    ap.add_argument("--no-lock-note", action="store_true", help="do not warn about .snakemake/locks "
                    "(set by `snakemake status`, whose own lock it would be)")
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text()) if args.config else json.loads(args.config_json)
    st = collect(grid(cfg, args.sizes), Path(args.results), Path(args.snakemake_dir) if args.snakemake_dir else None)
    if args.no_lock_note:
        st["locked"] = False
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        sys.stdout.write(render(st, args.config or "snakemake config"))
    return 1 if args.check and any(c["state"] != "done" for c in st["cells"]) else 0


if __name__ == "__main__":
    sys.exit(main())
