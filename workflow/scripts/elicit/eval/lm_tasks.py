"""Building lm-eval tasks the same way in every process: fetch_tasks (submit host) and eval_cell.

  task_manager(task, include_paths)   index only our YAMLs when the task is ours (skips ~15 s)
  build_task(task, include_paths, revision)
      the Task with its documents a function of the configuration: GPQA shuffles its choices
      with Python's global `random` inside a datasets map, which datasets would cache keyed by
      the code, not the random state, so any earlier process (an unseeded fetch, another
      machine) would fix the order. lm-eval maps process_docs twice while building a task
      (few-shot split, then evaluation split); plain lm-eval on a fresh machine (cache on)
      reuses the FIRST map's result for the second. We give exactly that, whatever the disk
      cache holds: the disk cache is off and `fresh_cache` replays a fresh one in memory (a map
      of the same dataset and function returns the first result). Python's random is seeded
      with PYTHON_SEED right before the task is built, and the documents computed then are
      frozen on the task (lm-eval reads eval_docs again to score; process_docs runs per read).
      Every datasets.load_dataset call is recorded (hub path, name, revision; `revision` pins
      it) and the commit the cache holds is resolved offline.
  prompts_sha256(samples)             sha256 over (doc_id, prompt, target): equal iff same prompts
"""
from __future__ import annotations

import contextlib
from pathlib import Path

# Fixed across seeds: data order / choice shuffles must not change; only the torch seed varies.
PYTHON_SEED = 0
NUMPY_SEED = 1234
FEWSHOT_SEED = 1234


def task_manager(task: str, include_paths: list[str] | None):
    """Index only our YAMLs when the task is ours (skips ~15 s of built-in indexing)."""
    from lm_eval.tasks import TaskManager

    if include_paths:
        paths = [str(Path(p).resolve()) for p in include_paths]
        tm = TaskManager(include_path=paths, include_defaults=False)
        if task in tm.all_tasks:
            return tm
        return TaskManager(include_path=paths, include_defaults=True)
    return TaskManager()


@contextlib.contextmanager
def dataset_loads(revision: str | None):
    """Record every datasets.load_dataset call while a task is built, and pin its revision."""
    import datasets

    calls, orig = [], datasets.load_dataset

    def load(*a, **kw):
        if revision and not kw.get("revision"):
            kw["revision"] = revision
        path = kw.get("path", a[0] if a else None)
        calls.append({"path": path, "name": kw.get("name"), "revision": kw.get("revision")})
        return orig(*a, **kw)

    datasets.load_dataset = load
    try:
        yield calls
    finally:
        datasets.load_dataset = orig


@contextlib.contextmanager
def fresh_cache():
    """Dataset.map as a fresh datasets cache answers it within one task build: the same dataset
    (fingerprint) mapped by the same function (datasets' own hash of it) and arguments returns the
    first result, as the cache hit of plain lm-eval's second process_docs does."""
    import datasets
    from datasets.fingerprint import Hasher

    orig, memo = datasets.Dataset.map, {}

    def cached_map(self, function=None, *args, **kwargs):
        try:
            key = (self._fingerprint, Hasher.hash(function), Hasher.hash((args, kwargs)))
        except Exception:  # an unhashable transform: datasets would not cache it either
            return orig(self, function, *args, **kwargs)
        if key not in memo:
            memo[key] = orig(self, function, *args, **kwargs)
        return memo[key]

    datasets.Dataset.map = cached_map
    try:
        yield
    finally:
        datasets.Dataset.map = orig


def build_task(task: str, include_paths, revision: str | None = None, tm=None):
    """(Task, TaskManager, {path, name, revision, resolved} of its hub dataset or None); see above."""
    import random

    import datasets

    from elicit.provenance import hub_commit

    datasets.disable_caching()
    tm = tm if tm is not None and task in tm.all_tasks else task_manager(task, include_paths)
    random.seed(PYTHON_SEED)
    with dataset_loads(revision) as calls, fresh_cache():
        obj = tm.load([task])["tasks"][task]
    docs = obj.task_docs  # computed once in Task.__init__ under the seed above
    obj.test_docs = obj.validation_docs = lambda: docs
    hub = [c for c in calls if c["path"] and "/" in str(c["path"]) and not Path(str(c["path"])).exists()]
    source = None
    if hub:
        c = hub[0]
        source = {**c, "resolved": hub_commit(c["path"], c["revision"], repo_type="dataset")}
    return obj, tm, source


def prompts_sha256(samples: list[dict]) -> str:
    """sha256 over (doc_id, prompt, target) of every scored document: equal iff same prompts."""
    from elicit.provenance import sha256_json

    return sha256_json([[s["doc_id"], s["prompt"], str(s["target"])] for s in samples])



def builtin_tasks() -> set[str]:
    """lm-eval's own task, group and tag names, indexed once per lm-eval version (~15 s) and kept
    in the user's cache directory (~/.cache/elicit/), so planning pays for it once."""
    import json
    import os
    from importlib.metadata import version

    from elicit.atomic import write_text

    cache = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "elicit"
             / f"lm_eval-{version('lm_eval')}-tasks.json")
    try:
        return set(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    try:
        write_text(cache, json.dumps(names))
    except OSError:
        pass
    return set(names)


def unknown_tasks(tasks: list[str], include_path: str | None) -> str | None:
    """A plan-time message naming the tasks lm-eval cannot build (with close names and the
    include_path's own tasks), or None."""
    import difflib

    local = set()
    if include_path:
        from lm_eval.tasks import TaskManager

        local = set(TaskManager(include_path=include_path, include_defaults=False).all_tasks)
    known = local if set(tasks) <= local else local | builtin_tasks()
    unknown = [t for t in tasks if t not in known]
    if not unknown:
        return None
    near = {t: difflib.get_close_matches(t, sorted(known), n=5, cutoff=0.6) for t in unknown}
    return ("eval.tasks: unknown lm-eval task(s) " + ", ".join(
        f"{t!r} (close: {', '.join(near[t]) or 'none'})" for t in unknown)
        + (f"; the tasks of eval.include_path {include_path}: {', '.join(sorted(local))}" if local else "")
        + f"; lm-eval knows {len(known)} tasks (`lm-eval ls tasks` lists them). Nothing was run or deleted.")
