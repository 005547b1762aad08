"""Issue 31: one command pins every floating hub revision of a config in the file itself
(workflow/scripts/pin_revisions.py), and planning says in one line how many float. The hub is
not reachable here: the commits are given to the writer, and the command itself is run offline
to check it refuses without writing."""
import subprocess
import sys

import yaml

import pin_revisions
from elicit.checks.config import check
from elicit.provenance import unpinned
from tests.conftest import ROOT, child_env

PAPER = (ROOT / "config" / "config.yaml").read_text()
DATASETS = {"aime24": "Maxwell-Jia/AIME_2024", "aime25": "math-ai/aime25", "gpqa_diamond_cot_zeroshot": "Idavidrein/gpqa"}


def test_the_paper_config_pinned_in_place(tmp_path):
    cfg = check(yaml.safe_load(PAPER))
    todo = pin_revisions.targets(cfg, lambda task, include: DATASETS[task])
    assert len(todo) == len(unpinned(cfg, tmp_path)) == 12  # what planning counts, one for one
    pins = {keys: f"{i + 1:040x}" for i, (keys, *_) in enumerate(todo)}
    text = pin_revisions.pin(PAPER, pins)
    pinned = check(yaml.safe_load(text))
    assert unpinned(pinned, tmp_path) == [] and pin_revisions.targets(pinned, lambda t, i: DATASETS[t]) == []
    assert pinned["models"]["32B"]["skyline_revision"] == pins[("models", "32B", "skyline_revision")]
    assert pinned["eval"]["task_revisions"]["aime25"] == pins[("eval", "task_revisions", "aime25")]
    comments = [line.strip() for line in PAPER.splitlines() if "#" in line]
    assert all(any(c.split("#", 1)[1] in line for line in text.splitlines()) for c in comments)  # every comment kept
    assert "revision: \"0000000000000000000000000000000000000001\"          # pin a commit sha" in text


def test_inline_and_existing_values():
    text = "eval:\n  tasks: [a]\n  task_revisions: {a: main}  # pins\nmodels:\n  \"7B\":\n    base: x/y\n"
    out = pin_revisions.pin(text, {("eval", "task_revisions", "a"): "b" * 40,
                                   ("models", "7B", "base_revision"): "c" * 40})
    assert yaml.safe_load(out) == {"eval": {"tasks": ["a"], "task_revisions": {"a": "b" * 40}},
                                   "models": {"7B": {"base": "x/y", "base_revision": "c" * 40}}}


def test_offline_it_names_what_it_needs_and_writes_nothing(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(PAPER)
    out = subprocess.run([sys.executable, "-m", "elicit.run", "pin_revisions", str(cfg)], capture_output=True,
                         text=True, env=child_env(), cwd=ROOT, timeout=600)  # offline
    assert out.returncode != 0 and "needs hub access" in out.stderr and "simplescaling/s1K-1.1@main" in out.stderr
    assert cfg.read_text() == PAPER


def test_planning_counts_floating_revisions_in_one_line():
    out = subprocess.run(["snakemake", "-n", "--configfile", "config/config.yaml", "--quiet", "rules"], cwd=ROOT,
                         capture_output=True, text=True, env=child_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    lines = [line for line in text.splitlines() if "float" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("12 hub revisions float") and "pin_revisions" in lines[0]


def test_task_datasets_come_from_the_task_yamls():
    """The hub dataset of each paper task, read offline from lm-eval's task files (GPQA's through its
    include)."""
    assert {t: pin_revisions.task_dataset(t, None) for t in DATASETS} == DATASETS
