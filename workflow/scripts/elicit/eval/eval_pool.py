"""One evaluation job for several (task, seed) cells: eval_cell.py with several --task/--seed (each cell:
elicit/eval/cell.py).

A task and seed alone cannot fill a GPU (AIME: 30 problems, a GPU holds ~80 sequences of 29k
tokens of 1.5B), so a job may evaluate several seeds (and tasks) together. The results stay one
file per task and seed (OUT.json + OUT.samples.jsonl, grid.eval_output: aggregation unchanged).

With `hf-cb` (lm_backend_cb.py) the cells share ONE continuous-batching run:
  1. collect: lm-eval runs each cell with the model in collecting mode (generate_until records
     the cell's requests, keys, sampling seeds and sidecar, answers "");
  2. generate: every missing answer of every cell in one manager; each finished answer goes to
     its own cell's sidecar at once (resume per answer);
  3. score: lm-eval runs each cell again; every answer is now in its sidecar.
A cell's answers depend on its own seed and requests only (per-request sampling seeds), so a
job of several seeds gives the answers of one job per seed, and a seed added later reuses the
finished cells (done cache) and the answers of unfinished ones (sidecars).
Other backends evaluate the cells one after another (a model load each).
"""
from __future__ import annotations

from elicit import backends, done_cache
from elicit.eval import cell


def run_cells(cells) -> list[dict]:
    """Records of every cell (elicit/eval/cell.py's namespaces, one job's)."""
    records, pending = {}, []
    for c in cells:
        root, _ = cell.cached(c.out)
        if (root / cell.cache_key(c) / done_cache.COMPLETE).exists():
            records[c.out] = cell.main_cell(c)  # restored, nothing generated
        else:
            pending.append(c)
    if pending and backends.get(pending[0].backend).pooled:
        cell.set_offline(pending[0].allow_hub)
        cell.refuse_damaged_model(pending[0])  # every cell of a job evaluates the same model
        lm = cell.make_lm(pending[0], cell.resolve_device(pending[0]))
        stats = pool(pending, lm)
        for c in pending:
            lm.use_cell(cell.partial_path(c.out), c.seed)
            lm.stats = stats[c.out]
            records[c.out] = cell.main_cell(c, lm)
    else:
        for c in pending:
            records[c.out] = cell.main_cell(c)
    return [records[c.out] for c in cells]


def pool(cells, lm) -> dict:
    """Collect every cell's requests, then generate all missing answers in one run; per-cell stats."""
    lm.collecting, first = [], {}
    for c in cells:
        lm.use_cell(cell.partial_path(c.out), c.seed)
        first[c.out] = len(lm.collecting)
        limit = int(c.limit) if c.limit is not None and float(c.limit).is_integer() else c.limit
        cell.evaluate(c, lm, limit)
    works, lm.collecting = lm.collecting, None
    lm.generate_pool(works)
    out = {}
    for c in cells:
        mine = works[first[c.out]:]
        stats = mine[0]["stats"] if mine else {"requests": 0, "reused": 0, "generated": 0, "generate_s": 0.0}
        out[c.out] = {**stats, "pooled_cells": len(cells)}
    return out
