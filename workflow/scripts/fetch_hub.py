#!/usr/bin/env python
"""Download hub artefacts once, on the submit host, so compute jobs can run offline.

  model: snapshot a model repo at a revision into the HF cache; the marker JSON names
         the local snapshot and the COMMIT the revision resolved to (pin it in config:
         models.<size>.base_revision / skyline_revision), and the size and sha256 of every
         file, each checked against the hash its blob is named by. Jobs then load the hub id
         with HF_HUB_OFFLINE=1; planning compares the sizes, a job the sha256 before loading
         (elicit/checks/integrity.py).
  tasks: build the lm-eval tasks once (lm_tasks.build_task, exactly as evaluation builds
         them) so their datasets land in the HF datasets cache; the marker records each
         task's hub dataset and the commit it resolved to (pin: eval.task_revisions), and the
         sha256 of its prompts. GPQA is gated: the token comes from HF_TOKEN in the
         environment and is never printed or written.

Usage:
  python workflow/scripts/fetch_hub.py model --repo Qwen/Qwen2.5-7B-Instruct --revision main \\
      --out results/hub/models/7B/base.json
  HF_TOKEN=... python workflow/scripts/fetch_hub.py tasks --tasks aime24 aime25 \\
      gpqa_diamond_cot_zeroshot --out results/hub/tasks.json
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from elicit.atomic import write_json
from elicit.eval.lm_tasks import build_task
from elicit.provenance import is_commit, versions


def fetch_model(repo: str, revision: str | None) -> dict:
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo, revision=revision or None,
                             allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"])
    commit = Path(path).name
    files, bad = verify_snapshot(Path(path))
    if bad:
        raise SystemExit("fetch_hub: damaged download(s) in the HF cache:\n  " + "\n  ".join(bad) + "\n  fix: rm "
                         "each blob named, then fetch again (the same command): the hub serves it anew")
    # the sizes and sha256 of every file: planning compares the sizes, a job the sha256 before loading
    return {"repo": repo, "revision": revision or None, "commit": commit if is_commit(commit) else None,
            "snapshot": path, "files": files, "versions": versions()}


def verify_snapshot(snapshot: Path) -> tuple[dict, list[str]]:
    """({relative path: {size, sha256}}, problems) of a hub snapshot: each file's blob is named by its hash
    (sha256 for LFS files, git's blob sha1 for the others); a blob whose content has another hash is
    damaged (a torn or tampered download)."""
    import hashlib

    files, bad = {}, []
    for p in sorted(snapshot.rglob("*")):
        if not p.is_file():
            continue
        blob = p.resolve()
        sha, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % blob.stat().st_size)
        with open(blob, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                sha.update(chunk)
                git.update(chunk)
        files[str(p.relative_to(snapshot))] = {"size": blob.stat().st_size, "sha256": sha.hexdigest()}
        want = blob.name
        if len(want) in (40, 64) and all(c in "0123456789abcdef" for c in want) and \
                want not in (sha.hexdigest(), git.hexdigest()):
            bad.append(f"{p} -> {blob}: content hash differs from the blob's name")
    return files, bad


GATED = "Idavidrein/gpqa"  # the hub dataset behind GPQA tasks; needs accepted terms + a token


def gated_without_token(tasks: list[str], tm) -> list[str]:
    """Tasks whose dataset is gated on the hub (GPQA) while no token is in the environment."""
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return []
    return [t for t in tasks if GATED in _yaml_text(Path(tm.task_index[t].yaml_path))]


def _yaml_text(path: Path, depth: int = 0) -> str:
    """A task YAML with the files it `include:`s (where upstream GPQA names its dataset)."""
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("include:") and depth < 3:
            inc = path.parent / line.split(":", 1)[1].strip().strip("'\"")
            if inc.exists():
                text += _yaml_text(inc, depth + 1)
    return text


def fetch_tasks(tasks: list[str], include_path: str | None, revisions: dict | None = None) -> dict:
    """Build every task once, as evaluation will (its dataset lands in the HF cache). Tasks
    found in include_path alone (the demo's local JSONL tasks, or workflow/tasks/paper) skip
    the ~15 s index of lm-eval's built-in tasks."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if tm is None or not set(tasks) <= set(tm.all_tasks):
        tm = TaskManager(include_path=include_path)
    gated = gated_without_token(tasks, tm)
    if gated:
        raise SystemExit(f"fetch_hub: {', '.join(gated)}: GPQA is gated on the hub: accept its "
                         f"terms on huggingface.co/datasets/{GATED} and export HF_TOKEN")
    datasets = {}
    for task in tasks:
        obj, _, source = build_task(task, [include_path] if include_path else None,
                                    (revisions or {}).get(task), tm=tm)
        datasets[task] = {"dataset": source, "n_docs": len(obj.task_docs)}
    return {"tasks": sorted(tasks), "token_used": bool(os.environ.get("HF_TOKEN")), "datasets": datasets,
            "versions": versions()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("model")
    p.add_argument("--repo", required=True)
    p.add_argument("--revision", default="")
    p.add_argument("--out", required=True)
    p = sub.add_parser("tasks")
    p.add_argument("--tasks", nargs="+", required=True)
    p.add_argument("--include-path", default=None)
    p.add_argument("--revisions", nargs="*", default=[], metavar="TASK=SHA",
                   help="pinned commits of the tasks' hub datasets (eval.task_revisions)")
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "model":
        write_json(args.out, fetch_model(args.repo, args.revision), checksum=True)
    else:
        from elicit import repo_path

        pins = dict(r.split("=", 1) for r in args.revisions)
        include = repo_path(args.include_path) if args.include_path else None
        write_json(args.out, fetch_tasks(args.tasks, include, pins), checksum=True)


if __name__ == "__main__":
    main()
