"""Every evaluation setting falls on one side (issue 29, item 3):

  answer    defines what an answer is (model, task data, seed, sampling, generation limits, backend,
            scoring): a rerun trigger (the eval rules' params) and part of the finished-cell cache key
            (cell.cache_key);
  cell      which cells a job makes (their result paths say it): neither, a cell's own task and seed
            are in its cache key;
  schedule  how the work is run (how many sequences are in flight, how cells are grouped into jobs,
            the GPU layout, where and how the job runs): neither a rerun trigger nor in the cache key.
            The result records what each answer was made with (eval_record.describe).

The rule for eval.batch_size: it schedules the work for every backend whose answers do not depend on it
(hf-cb seeds every answer on its own; hf-slots); hf-resumable cuts fixed batches of batch_size and seeds
each batch (lm_backend.py), and plain hf draws one torch stream over lm-eval's batches, so for those two
it defines the answers (elicit/backends.py: batch_defines_answers)."""
import copy
import subprocess

import pytest
import yaml

from elicit.eval import cell
from tests.conftest import ROOT, copy_run

SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())

# eval.* of the config schema
CONFIG = {
    "tasks": "cell", "seeds": "cell",
    "task_revisions": "answer", "include_path": "answer", "max_gen_toks": "answer", "temperature": "answer",
    "top_p": "answer", "top_k": "answer", "min_p": "answer", "repetition_penalty": "answer",
    "backend": "answer", "limit": "answer", "enable_thinking": "answer",
    "batch_size": "schedule",  # answer for hf-resumable and hf (see above)
    "seeds_per_job": "schedule",
}
# eval_cell.py's flags (argparse dests)
FLAGS = {
    "task": "cell", "seed": "cell", "out": "cell",
    "model": "answer", "adapter": "answer", "revision": "answer", "dtype": "answer", "max_length": "answer",
    "backend": "answer", "trust_remote_code": "answer", "include_path": "answer", "limit": "answer",
    "task_revision": "answer", "metric": "answer", "max_gen_toks": "answer", "temperature": "answer",
    "top_p": "answer", "top_k": "answer", "min_p": "answer", "repetition_penalty": "answer",
    "enable_thinking": "answer", "batch_size": "schedule", "layout": "schedule", "device": "schedule", "allow_hub": "schedule",
}


def test_every_setting_is_classified():
    import eval_cell

    assert set(CONFIG) == set(SCHEMA["properties"]["eval"]["properties"])
    dests = {a.dest for a in eval_cell.build_parser()._actions if a.dest != "help"}
    assert set(FLAGS) == dests


# A changed value per flag (the second model dir has other content: another fingerprint)
CHANGED = {"model": "OTHER", "adapter": "OTHER", "revision": "v2", "dtype": "float32", "max_length": 1024,
           "backend": "hf-resumable", "trust_remote_code": True, "include_path": "OTHER_TASKS", "limit": 3,
           "task_revision": "abc123", "metric": "exact_match,none", "max_gen_toks": 20, "temperature": 0.7,
           "top_p": 0.9, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1, "batch_size": "7",
           "layout": "dp", "device": "cpu", "allow_hub": True, "enable_thinking": False}


def _cell(tmp_path, **over):
    """eval_cell's namespace of one demo cell as the rule builds it (elicit/steps.py), `over` on top."""
    import eval_cell
    from elicit import steps
    from tests.conftest import demo_config

    cfg = demo_config()
    args = {**steps.eval_args(cfg, cfg["sizes"][0], ["demo_aime"], [0], layout="single"),
            "model": str(tmp_path / "m1"), "include_path": str(tmp_path / "tasks"), "out": str(tmp_path / "o.json")}
    for k, v in over.items():
        args[k] = {"OTHER": str(tmp_path / "m2"), "OTHER_TASKS": str(tmp_path / "tasks2")}.get(v, v) \
            if isinstance(v, str) else v
    if isinstance(args.get("task_revision"), str):
        args["task_revision"] = [args["task_revision"]]
    return cell.cells(eval_cell.build_parser().parse_args(steps.argv(args)))[0]


@pytest.mark.parametrize("backend", ["hf-cb", "hf-resumable"])
def test_cache_key_holds_exactly_the_answer_settings(tmp_path, backend):
    for d, text in (("m1", "a"), ("m2", "b"), ("tasks", "x"), ("tasks2", "y")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "config.json").write_text(text)
    base = cell.cache_key(_cell(tmp_path, backend=backend))
    for flag, side in FLAGS.items():
        if flag in ("task", "seed", "out"):
            continue
        value = CHANGED[flag] if not (flag == "backend" and backend == "hf-resumable") else "hf"
        changed = cell.cache_key(_cell(tmp_path, **{"backend": backend, flag: value}))
        # the rule: batch size defines hf-resumable's answers (fixed batches, a seed per batch)
        answer = side == "answer" or (flag == "batch_size" and backend == "hf-resumable")
        assert (changed != base) == answer, f"{flag} ({side}, {backend})"
    other_cell = cell.cache_key(_cell(tmp_path, backend=backend, seed=[1]))
    assert other_cell != base


def _plans(work, extra: dict | None) -> dict:
    """{rule: jobs} a dry-run of the finished demo plans, with `extra` on top of config/demo.yaml."""
    from tests.helpers import planned_jobs

    args = []
    if extra is not None:
        cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
        for section, values in extra.items():
            cfg[section] = {**cfg[section], **values}
        (work / "changed.yaml").write_text(yaml.safe_dump(cfg))
        args = ["--configfile", str(work / "changed.yaml")]
    return {k: v for k, v in planned_jobs(work, *args).items() if v and k != "total"}


# The report prints the whole config (provenance): it is rebuilt (seconds, no model) whatever changed.
CONFIG_ONLY = {"report", "all"}


@pytest.mark.slow
def test_a_finished_demo_reruns_nothing_for_a_scheduling_setting(demo_run, tmp_path):
    """On the finished demo: each scheduling setting changed plans no evaluation (nor anything but the
    report, which prints the config); an answer setting plans every evaluation again."""
    work = copy_run(demo_run, tmp_path / "run")
    assert _plans(work, None) == {}
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    single = {**demo["models"]["tiny-a"], "eval": {**demo["models"]["tiny-a"]["eval"], "layout": "single"}}
    for extra in ({"eval": {"batch_size": 3}}, {"eval": {"seeds": [1, 0]}}, {"eval": {"seeds_per_job": 1}},
                  {"eval": {"batch_size": 5, "seeds": [1, 0], "seeds_per_job": 1}},
                  {"models": {"tiny-a": single}}):
        jobs = _plans(work, extra)
        assert set(jobs) <= CONFIG_ONLY, (extra, jobs)
    jobs = _plans(work, {"eval": {"temperature": 0.7}})
    # every model's job per benchmark, both seeds in it (5 + the variant's LoRA per size, + tiny-a's full-8@tseed1)
    assert jobs["evaluate"] == (2 * (5 + 1) + 1) * 2, jobs


def test_a_variant_of_a_scheduling_setting_is_refused():
    """A variant is extra cells whose answers differ: one that changes only how the work is scheduled
    would evaluate the same answers again under another name."""
    from elicit.checks.config import ConfigError, check

    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    for key, value in (("batch_size", 4), ("seeds_per_job", 1)):
        c = copy.deepcopy(cfg)
        c["variants"] = {"v": {"eval": {key: value}}}
        with pytest.raises(ConfigError, match=rf"variants.v: eval.{key} .*schedules"):
            check(c)
    c = copy.deepcopy(cfg)  # where the batch size changes the answers, a variant of it is other answers
    c["variants"] = {"v": {"eval": {"backend": "hf-resumable", "batch_size": 4}}}
    check(c)


def test_seeds_are_a_set():
    from elicit.checks.config import check
    from tests.conftest import demo_config

    cfg = demo_config()
    cfg["eval"]["seeds"] = [1, 0]
    assert check(cfg)["eval"]["seeds"] == [0, 1]


@pytest.mark.parametrize("backend,batch_in_params", [("hf-cb", False), ("hf-resumable", True)])
def test_the_rules_pass_the_batch_size_by_its_side(tmp_path, backend, batch_in_params):
    """The eval rules' params (rerun triggers) hold the answer's settings; the job's cells and, where it
    changes no answer, the batch size are a resource (eval_cells), as the layout is."""
    import re

    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"eval": {"backend": backend}}))
    out = subprocess.run(["snakemake", "-n", "-p", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile",
                          str(ROOT / "config" / "demo.yaml"), str(tmp_path / "x.yaml"), "--",
                          "results/eval/tiny-a/base/demo_aime/seed0.json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    cells = re.search(r"eval_cells=(.*?), mem_mb", out.stdout)[1]
    assert cells.startswith("--task demo_aime --seed 0 1")
    assert ("--batch-size" in cells) != batch_in_params
    assert "--batch-size auto" in out.stdout.split("Shell command:")[-1]  # the program gets it either way
