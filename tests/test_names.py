"""Issue 19: size and task names. A size made of dots or holding a path separator is refused by
the schema (it would write outside its folder); an unknown task is refused at plan time naming it
and the known ones, before fetch_tasks could delete results/hub/tasks.json."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from elicit.checks.config import ConfigError, check
from tests.conftest import ROOT, snakemake

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


@pytest.mark.parametrize("name", [".", "..", "a/b", "../lora", "a\\b", ".hidden"])
def test_size_names_of_dots_or_separators_are_refused(name):
    cfg = copy.deepcopy(DEMO)
    cfg["models"][name] = cfg["models"].pop("tiny-a")
    cfg["sizes"] = [name, "tiny-b"]
    with pytest.raises(ConfigError, match=r"sizes\.0|models"):
        check(cfg)


def test_real_size_names_pass():
    cfg = copy.deepcopy(DEMO)
    cfg["models"]["1.5B"] = cfg["models"].pop("tiny-a")
    cfg["sizes"] = ["1.5B", "tiny-b"]
    cfg["train"]["seed_sizes"] = ["1.5B"]  # the demo's second training seed, of the renamed size
    check(cfg)


def test_unknown_task_is_named_with_the_known_ones():
    from elicit.eval.lm_tasks import unknown_tasks

    inc = str(ROOT / "workflow" / "tasks" / "demo")
    assert unknown_tasks(["demo_aime", "demo_gpqa"], inc) is None
    msg = unknown_tasks(["demo_aime", "demo_aimee"], inc)
    assert "'demo_aimee'" in msg and "close: demo_aime" in msg and "demo_gpqa" in msg


def test_unknown_task_is_refused_at_plan_time_and_nothing_is_deleted(tmp_path):
    cfg = copy.deepcopy(DEMO)
    cfg["eval"]["tasks"] = [*cfg["eval"]["tasks"], "demo_aimee"]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    fetched = tmp_path / "results" / "hub" / "tasks.json"
    fetched.parent.mkdir(parents=True)
    fetched.write_text(json.dumps({"tasks": DEMO["eval"]["tasks"]}))
    out = snakemake(tmp_path, "--configfile", str(tmp_path / "cfg.yaml"), "--forcerun", "fetch_tasks",
                    "results/hub/tasks.json", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "unknown lm-eval task(s) 'demo_aimee'" in text, text[-3000:]
    assert "KeyError" not in text and fetched.exists()
