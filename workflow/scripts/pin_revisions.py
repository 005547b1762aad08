#!/usr/bin/env python
"""Pin every hub revision of a config to the commit it resolves to now, in the config file itself.

On a machine with hub access (GPQA's dataset is gated: export HF_TOKEN), for each floating
revision that planning counts (elicit.provenance.unpinned): the s1K dataset (`data.revision`),
each size's base and skyline model (`models.<size>.base_revision`, `.skyline_revision`) and each
lm-eval task's hub dataset (`eval.task_revisions.<task>`), ask the hub for the commit the revision
names today and write it into the YAML file in place: comments and layout are kept, a missing key
is added in its block, and the file is rewritten only if it then loads as the same config with
exactly those pins set.

Usage:
  python -m elicit.run pin_revisions config/config.yaml            # resolve and write
  python -m elicit.run pin_revisions config/config.yaml --dry-run  # print the YAML keys only
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import sys
from pathlib import Path

import yaml

from elicit.provenance import is_commit, is_local


def targets(cfg: dict, task_datasets=None) -> list[tuple[tuple[str, ...], str, str, str]]:
    """(key path, 'model' | 'dataset', hub id, revision) of every floating revision of `cfg`."""
    out = []
    d = cfg["data"]
    if not is_local(d["source"]) and not is_commit(d.get("revision")):
        out.append((("data", "revision"), "dataset", d["source"], d.get("revision") or "main"))
    for size in cfg["sizes"]:
        m = cfg["models"][size]
        for role in ("base", "skyline"):
            if not is_local(m[role]) and not is_commit(m.get(f"{role}_revision")):
                out.append((("models", size, f"{role}_revision"), "model", m[role], m.get(f"{role}_revision") or "main"))
    pins = cfg["eval"].get("task_revisions") or {}
    for task in cfg["eval"]["tasks"]:
        if is_commit(pins.get(task)):
            continue
        path = (task_datasets or task_dataset)(task, cfg["eval"].get("include_path"))
        if path and not is_local(path):
            out.append((("eval", "task_revisions", task), "dataset", path, pins.get(task) or "main"))
    return out


@functools.cache
def _task_manager(include_path: str | None):
    from lm_eval.tasks import TaskManager

    from elicit import repo_path

    return TaskManager(include_path=str(repo_path(include_path)) if include_path else None)


def _dataset_path(yaml_path: Path, depth: int = 0) -> str | None:
    """`dataset_path:` of a task YAML, or of the files it `include:`s (upstream GPQA names it there)."""
    text = yaml_path.read_text()
    m = re.search(r"^dataset_path:\s*['\"]?([^\s'\"#]+)", text, re.M)
    if m or depth >= 3:
        return m[1] if m else None
    for inc in re.findall(r"^include:\s*['\"]?([^\s'\"#]+)", text, re.M):
        if (yaml_path.parent / inc).exists() and (found := _dataset_path(yaml_path.parent / inc, depth + 1)):
            return found
    return None


def task_dataset(task: str, include_path: str | None) -> str | None:
    """The hub dataset a task's YAML names (`dataset_path`, through its `include:`s); None: local."""
    tm = _task_manager(include_path)
    if task not in tm.task_index:
        raise SystemExit(f"pin_revisions: unknown task {task!r}")
    return _dataset_path(Path(tm.task_index[task].yaml_path))


def resolve(kind: str, repo: str, revision: str) -> str:
    """The commit `revision` of hub repo `repo` names now."""
    from huggingface_hub import HfApi

    api = HfApi()
    info = api.model_info(repo, revision=revision) if kind == "model" else api.dataset_info(repo, revision=revision)
    if not is_commit(info.sha):
        raise SystemExit(f"pin_revisions: {repo}@{revision}: the hub answered no commit ({info.sha!r})")
    return info.sha


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) else json.dumps(k)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def set_in_yaml(text: str, keys: tuple[str, ...], value: str) -> str:
    """`text` with the block-style mapping key path `keys` set to the scalar `value`: an existing
    value is replaced (its comment kept), missing keys are appended at the end of their block."""
    value = value if yaml.safe_load(value) == value else json.dumps(value)  # a string in YAML too
    lines = text.splitlines(keepends=True)
    start, end, parent = 0, len(lines), -1
    for depth, key in enumerate(keys):
        pattern = re.compile(rf"^( *)(['\"]?){re.escape(key)}\2\s*:(?P<rest>.*)$")
        children = [i for i in range(start, end) if _content(lines[i]) and _indent(lines[i]) > parent]
        level = min((_indent(lines[i]) for i in children), default=parent + 2)
        hit = next((i for i in children if _indent(lines[i]) == level and pattern.match(lines[i].rstrip("\n"))), None)
        if hit is None:
            at = max([i + 1 for i in children], default=start)
            new = [f"{' ' * (level + 2 * n)}{_key(k)}:" + (f" {value}\n" if k == keys[-1] and n == len(keys) - depth - 1
                                                          else "\n") for n, k in enumerate(keys[depth:])]
            return "".join(lines[:at] + new + lines[at:])
        rest = pattern.match(lines[hit].rstrip("\n"))["rest"]
        if depth == len(keys) - 1:
            m = re.match(r"^(\s*)([^#]*?)(\s*#.*)?$", rest)
            lines[hit] = lines[hit][:len(lines[hit].rstrip("\n")) - len(rest)] + f" {value}" + \
                (m[3] or "") + "\n"
            return "".join(lines)
        if rest.split("#")[0].strip():  # an inline value ({...}): rewrite it as a flow mapping
            inline = yaml.safe_load(rest.split("#")[0]) or {}
            node = inline
            for k in keys[depth + 1:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
            flow = yaml.safe_dump(inline, default_flow_style=True, width=10_000).strip()
            lines[hit] = lines[hit][:len(lines[hit].rstrip("\n")) - len(rest)] + f" {flow}\n"
            return "".join(lines)
        parent, start = _indent(lines[hit]), hit + 1
        end = next((i for i in range(start, len(lines)) if _content(lines[i]) and _indent(lines[i]) <= parent),
                   len(lines))
    raise AssertionError("unreachable")


def pin(text: str, pins: dict[tuple[str, ...], str]) -> str:
    """`text` with every pin set; refuses (ValueError) unless the result loads as the same config
    with exactly those keys changed."""
    want = copy.deepcopy(yaml.safe_load(text))
    for keys, value in pins.items():
        text = set_in_yaml(text, keys, value)
        node = want
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    if yaml.safe_load(text) != want:
        raise ValueError("pin_revisions: the edited file would not load as the same config with the pins; "
                         "nothing written. Pin by hand: " + ", ".join(f"{'.'.join(k)}: {v}" for k, v in pins.items()))
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="the config file to pin (e.g. config/config.yaml)")
    ap.add_argument("--dry-run", action="store_true", help="print the keys and commits, write nothing")
    args = ap.parse_args(argv)
    from elicit.checks.config import check

    path = Path(args.config)
    text = path.read_text()
    cfg = check(yaml.safe_load(text))
    todo = targets(cfg)
    if not todo:
        print(f"{path}: every hub revision is pinned")
        return
    pins = {}
    for keys, kind, repo, rev in todo:
        try:
            pins[keys] = resolve(kind, repo, rev)
        except SystemExit:
            raise
        except Exception as e:  # offline, gated without a token, unknown id: say which, pin nothing
            raise SystemExit(f"pin_revisions: {repo}@{rev} ({'.'.join(keys)}): {type(e).__name__}: {e}\n"
                             "needs hub access (HF_HUB_OFFLINE unset; GPQA: export HF_TOKEN); nothing written")
        print(f"{'.'.join(keys)}: {pins[keys]}  # {repo}@{rev}")
    if args.dry_run:
        return
    path.write_text(pin(text, pins))
    print(f"{path}: {len(pins)} revision(s) pinned", file=sys.stderr)


if __name__ == "__main__":
    main()
