#!/usr/bin/env python
"""Download hub artefacts once, on the submit host, so compute jobs can run offline.

  model: snapshot a model repo at a revision into the HF cache; the marker JSON names
         the local snapshot. Jobs then load the hub id with HF_HUB_OFFLINE=1.
  tasks: load the lm-eval tasks once so their datasets land in the HF datasets cache.
         GPQA is gated: the token comes from HF_TOKEN in the environment and is never
         printed or written.

Usage:
  python workflow/scripts/fetch_hub.py model --repo Qwen/Qwen2.5-7B-Instruct --revision main \\
      --out results/hub/models/7B/base.json
  HF_TOKEN=... python workflow/scripts/fetch_hub.py tasks --tasks aime24 aime25 \\
      gpqa_diamond_cot_zeroshot --out results/hub/tasks.json
"""
from __future__ import annotations

import argparse
import os

from atomic import write_json


def fetch_model(repo: str, revision: str | None) -> dict:
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo, revision=revision or None,
                             allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"])
    return {"repo": repo, "revision": revision or None, "snapshot": path}


def fetch_tasks(tasks: list[str], include_path: str | None) -> dict:
    from lm_eval.tasks import TaskManager, get_task_dict

    if "gpqa" in " ".join(tasks) and not (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        raise SystemExit("fetch_hub: GPQA is gated on the hub: accept its terms and export HF_TOKEN")
    tm = TaskManager(include_path=include_path)
    loaded = get_task_dict(tasks, tm)
    return {"tasks": sorted(loaded), "token_used": bool(os.environ.get("HF_TOKEN"))}


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
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "model":
        write_json(args.out, fetch_model(args.repo, args.revision))
    else:
        write_json(args.out, fetch_tasks(args.tasks, args.include_path))


if __name__ == "__main__":
    main()
