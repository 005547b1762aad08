"""Plan-time check of every result file the workflow reads: damage is caught before any job runs.

Producers record what they wrote (atomic.write_json's `_sha256`, the table's sha256 in
s1k.json, the metrics' sha256 in the kept checkpoint's provenance.json, each cell's samples
sha256); this reads everything back cheaply (small files; one hash of the data table) and returns
one message per damaged file, naming it, saying what is wrong and what to do. common.smk refuses
to plan while any is found, so a damaged input never makes Snakemake rerun (and delete) finished
trainings or evaluations, and a damaged evaluation never reaches Table 1.

Usage (what `snakemake status` and common.smk run):
  PYTHONPATH=workflow/scripts python -m elicit.checks.integrity --results results
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elicit import grid
from elicit.atomic import CorruptFile, read_json, read_jsonl
from elicit.provenance import PROVENANCE, sha256_file
from elicit.train.checkpoints import checkpoint_problems, manifest_problems
from elicit.train.weights import weights_problems

FIX_EVAL = "delete it and its .samples.jsonl: the next run recomputes this cell alone"
FIX_DATA = ("delete it: the next run rebuilds it; finished trainings and evaluations whose inputs come out "
            "identical are restored from their caches, not recomputed")
FIX_HUB = "delete it, then `snakemake {path}` rebuilds it alone; then rerun"


def _read(path: Path, fix: str, keys: tuple = ()) -> tuple[dict | None, list[str]]:
    try:
        return read_json(path, keys), []
    except CorruptFile as e:
        return None, [f"{e}\n    fix: {fix.format(path=path)}"]


def data_problems(results: Path) -> list[str]:
    """s1k.parquet against s1k.json (its recorded sha256), and manifest.json."""
    table, meta_p, manifest_p = (Path(f(results)) for f in (grid.data_table, grid.data_meta, grid.data_manifest))
    problems, shas = [], {}
    meta, p = _read(meta_p, FIX_DATA) if meta_p.exists() else (None, [])
    problems += p
    if table.exists():
        shas["table"] = sha256_file(table)
        if meta and meta.get("sha256") and meta["sha256"] != shas["table"]:
            problems.append(f"{table}: sha256 {shas['table'][:12]}… differs from {meta['sha256'][:12]}… that "
                            f"fetch_data recorded in {meta_p} (damaged or replaced)\n    fix: {FIX_DATA}")
    if manifest_p.exists():
        manifest, p = _read(manifest_p, FIX_DATA, keys=("all", "subsets", "validation"))
        problems += p
        if manifest is not None and shas.get("table") and manifest.get("source_sha256") not in (None, shas["table"]):
            problems.append(f"{manifest_p}: split from another table than {table} (source_sha256 differs)\n"
                            f"    fix: {FIX_DATA}")
    return problems


def source_problems(source: str, expected_rows: int | None, results: Path = Path("results")) -> list[str]:
    """A local data.source of the user's whose bytes differ from those fetch_data last read (or that it
    never read): read and validated now, as fetch_data will, so that a file it cannot use (not UTF-8,
    bad rows) is refused at plan time instead of planning every training and cell and failing in the
    first job. An unchanged source is not reread (one hash, as the fetch_data rule's params take)."""
    from elicit.data.s1k import DataError, load_source, validate

    path = Path(source)
    if source.startswith("results/") or not path.is_file():
        return []
    meta = Path(grid.data_meta(results))
    try:
        recorded = read_json(meta).get("source_file_sha256") if meta.exists() else None
    except CorruptFile:  # data_problems reports it
        recorded = None
    if recorded == sha256_file(path):
        return []
    try:
        validate(load_source(source), expected_rows)
    except DataError as e:
        msg = str(e) if str(e).startswith("data.source") else f"data.source {source}: {e}"
        return [f"{msg}\n    fix: repair the file or point data.source at a good copy; nothing was run or deleted"]
    return []


def training_problems(results: Path) -> list[str]:
    problems = []
    for run in grid.train_runs(results):
        metrics, ckpts = grid.run_outputs(run).values()
        fix = f"delete {run}: the next run retrains it (and redoes what depends on it)"
        try:
            read_jsonl(metrics)
        except CorruptFile as e:
            problems.append(f"{e}\n    fix: {fix}")
            continue
        problems += [f"{m}\n    fix: {fix}" for m in checkpoint_problems(ckpts, full=False)]
        for prov_p in (c / PROVENANCE for c in grid.step_dirs(ckpts) if (c / PROVENANCE).exists()):
            prov, p = _read(prov_p, fix)
            problems += p
            if prov is None:
                continue
            if prov.get("metrics_sha256") and prov["metrics_sha256"] != sha256_file(metrics):
                problems.append(f"{metrics}: not the metrics the run wrote (sha256 differs from {prov_p})\n"
                                f"    fix: {fix}")
    return problems


def result_problems(results: Path) -> list[str]:
    problems = []
    for sel in sorted((results / "models").glob("*/*/selection.json")):
        rec, p = _read(sel, f"delete {sel.parent}: the next run selects again (no retraining)",
                       keys=("selected_step",))
        problems += p
        if rec and rec.get("files") and (sel.parent / "model").exists():  # sizes only: cheap
            problems += [f"{m}\n    fix: rm -rf {sel.parent / 'model'}; the next run re-publishes it from "
                         f"{rec['checkpoint']} (no retraining)"
                         for m in manifest_problems(sel.parent / "model", rec["files"], full=False)]
    for *_, cell in grid.eval_cells(results):
        rec, p = _read(cell, FIX_EVAL, keys=("score", "n_samples"))
        problems += p
        samples = grid.samples_path(cell)
        if rec and rec.get("samples_sha256"):
            if not samples.exists() or sha256_file(samples) != rec["samples_sha256"]:
                problems.append(f"{samples}: missing or not the samples of {cell} (sha256 differs)\n"
                                f"    fix: {FIX_EVAL}")
    for marker in sorted((results / "hub").rglob("*.json")):
        problems += _read(marker, FIX_HUB)[1]
    return problems


def problems(results: Path = Path("results")) -> list[str]:
    """Every damaged file under `results` (and the base/skyline weights it fetched or built), one message each."""
    return data_problems(results) + training_problems(results) + result_problems(results) + weights_problems(results)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    found = problems(Path(args.results))
    for line in found:
        print(line)
    print(f"{len(found)} damaged file(s) under {args.results}" if found else f"{args.results}: every file checks out")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
