"""elicit.steps.eval_args / select_args: the rules' eval_cell.py and select_checkpoint.py commands are
what elicit/steps.py builds from the config, and the tests' eval flags (conftest.eval_settings) are the
rule's, but for the settings a test overrides."""
import re
import subprocess

import pytest
import yaml

from elicit.flags import dataclass_parser
from tests.conftest import ROOT, demo_config, eval_settings

# Everything the builder renders: a variant per section, a pinned task next to an unpinned one, a
# model with custom code, a limit; `single` plans one cell per job (the rule `evaluate`).
EXTRA = {
    "variants": {"topp-0.95": {"eval": {"top_p": 0.95, "limit": 5}}, "tol": {"train": {"tolerance": 0.05}}},
    "eval": {"task_revisions": {"aime24": "abc123"}},
    "models": {"7B": {"trust_remote_code": True}},
}
OUT = re.compile(r"results/eval/([^/]+)/([^/]+)/([^/]+)/seed(\d+)\.json")


def planned_commands(tmp_path, extra: dict) -> list[str]:
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
    out = subprocess.run(["snakemake", "-n", "-p", "--forceall", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(ROOT / "config" / "config.yaml"), str(tmp_path / "extra.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [line for line in out.stdout.splitlines() if line.startswith("Shell command:")]


def paper_config(extra: dict) -> dict:
    from snakemake.utils import update_config

    from elicit.checks.config import check

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(cfg, extra)
    return check(cfg)


def parsed(flags: str) -> dict:
    """eval_cell's namespace of these flags (the model and the outputs made up)."""
    import shlex

    import eval_cell

    return vars(eval_cell.build_parser().parse_args([*shlex.split(flags), "--model", "m", "--layout", "single",
                                                     "--out", "o.json"]))


@pytest.mark.parametrize("grouping", ["grouped", "single"])
def test_rule_commands_are_what_steps_builds(tmp_path, grouping):
    """Every planned evaluation job's flags between the model and --layout are eval_args' (its size,
    the variant applied, its cells), and every selection's are select_args'."""
    from elicit import steps, variants

    extra = {**EXTRA, "eval": {**EXTRA["eval"], **({"seeds_per_job": 1} if grouping == "single" else {})}}
    cfg, seen = paper_config(extra), set()
    for cmd in planned_commands(tmp_path, extra):
        if "elicit.run eval_cell" in cmd:
            cells = [OUT.fullmatch(o).groups() for o in cmd.split("--out ", 1)[1].split(" >>")[0].split()]
            size, config = cells[0][:2]
            tasks, seeds = list(dict.fromkeys(c[2] for c in cells)), list(dict.fromkeys(int(c[3]) for c in cells))
            if grouping == "single":
                assert len(cells) == 1
            applied = variants.apply(cfg, variants.split(config)[1])
            flags = cmd[cmd.index(" --task "):cmd.index(" --layout ")].strip()
            # the cells and scheduling flags (a resource) come first, then the answer's (params): the
            # same settings as eval_args, in another order
            assert parsed(flags) == parsed(steps.shell(steps.eval_args(applied, size, tasks, seeds))), cmd
            assert flags.startswith(f"--task {' '.join(tasks)} --seed {' '.join(map(str, seeds))}"), cmd
            seen |= {("limit", "--limit 5" in flags), ("pinned", "--task-revision abc123" in flags),
                     ("custom code", "--trust-remote-code true" in flags), ("variant", "@" in config)}
        elif "elicit.run select_checkpoint" in cmd:
            run = re.search(r"--train-dir results/train/[^/]+/(\S+)", cmd)[1]
            applied = variants.apply(cfg, variants.split(run)[1])
            assert f" --tolerance {steps.select_args(applied)['tolerance']} > " in cmd
            seen.add(("tolerance", "--tolerance 0.05" in cmd))
    assert {(k, True) for k in ("limit", "pinned", "custom code", "variant", "tolerance")} <= seen


def test_one_dialect_rendered_and_parsed():
    """steps.argv, the one renderer: booleans true/false, None left out, a list = one flag with several
    values, '' kept (quoted by shell); what it renders, eval_cell's and train.py's parsers (elicit.flags) read
    back as the same values."""
    import eval_cell
    import train
    from elicit import steps

    args = {"task": ["a b", "c"], "seed": [0, 1], "top_p": 1.0, "limit": None, "trust_remote_code": False,
            "allow_hub": True, "task_revision": ["abc", ""]}
    assert steps.argv(args) == ["--task", "a b", "c", "--seed", "0", "1", "--top-p", "1.0", "--trust-remote-code",
                                "false", "--allow-hub", "true", "--task-revision", "abc", ""]
    assert steps.shell(args) == ("--task 'a b' c --seed 0 1 --top-p 1.0 --trust-remote-code false --allow-hub true "
                                 "--task-revision abc ''")
    assert steps.placeholders({"tolerance": 0.1}) == "--tolerance {params.tolerance}"
    cfg = demo_config()
    size = cfg["sizes"][0]
    job = {**steps.eval_args(cfg, size, ["t", "u"], [0, 1], layout="single"), "model": "m", "out": ["a", "b", "c", "d"],
           "trust_remote_code": True, "allow_hub": False, "enable_thinking": False, "task_revision": ["abc", ""]}
    parsed = vars(eval_cell.build_parser().parse_args(steps.argv(job)))
    assert {k: parsed[k] for k in job} == {**job, "batch_size": str(job["batch_size"])}
    run = {**steps.train_args(cfg, size, "lora"), "model": "m", "table": "t", "manifest": "f", "out": "o",
           "stop_margin_min": 0.0, "tracking": "none"}
    parsed = vars(dataclass_parser(train.TrainConfig).parse_args(steps.argv(run)))
    assert {k: parsed[k] for k in run} == run


def test_tests_evaluate_with_the_rules_settings():
    """conftest.eval_settings parses (eval_cell's parser) to the demo rule's values for every setting
    but those the tests set on purpose (small batches and context, fixed batches, their own cells)."""
    import eval_cell
    from elicit import steps

    cfg = demo_config()
    size = cfg["sizes"][0]
    cell = ["--out", "o.json", "--model", "m"]
    ours = vars(eval_cell.build_parser().parse_args([*eval_settings(), "--task", "t", "--seed", "0",
                                                     "--max-gen-toks", "8", *cell]))
    rule = vars(eval_cell.build_parser().parse_args(
        [*steps.argv(steps.eval_args(cfg, size, ["t"], [0], layout="single")), *cell]))
    overridden = {"batch_size", "backend", "max_length", "max_gen_toks"}
    assert {k: v for k, v in ours.items() if k not in overridden} == \
           {k: v for k, v in rule.items() if k not in overridden}
    assert (ours["batch_size"], ours["backend"], ours["max_length"]) == ("1", "hf-resumable", 512)


def test_docstring_example_is_the_demo_rules_cell():
    """eval_cell.py's first usage example parses, and is the demo's LoRA cell as the rule runs it:
    the demo's model paths and every setting eval_args gives that cell."""
    import shlex

    import eval_cell
    from elicit import steps

    example = eval_cell.__doc__.split("  python workflow/scripts/eval_cell.py", 2)[1]
    argv = shlex.split(example.split("\n\n", 1)[0].replace("\\\n", " "))
    ours = vars(eval_cell.build_parser().parse_args(argv))
    cfg = demo_config()
    size, task, seed = ours["model"].split("/")[-2], ours["task"][0], ours["seed"][0]
    rule = [*steps.argv(steps.eval_args(cfg, size, [task], [seed], layout="single")),
            *steps.argv({**steps.include_args(cfg), **steps.eval_model_args(cfg, size, "lora", "lora")}),
            "--out", ours["out"][0]]
    assert ours == vars(eval_cell.build_parser().parse_args(rule))
