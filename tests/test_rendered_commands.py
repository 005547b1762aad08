"""The rules' command lines are rerun triggers (Snakemake params): the pieces elicit/steps.py renders for the
train and evaluate rules are byte for byte what they were when issue 32 merged the two flag dialects
(tests/data/rendered_commands.json, rendered by the code before it), for every shipped config, a limit, a
pinned task and a variant of each section. A difference here reruns every finished job it touches."""
import json

import pytest
import yaml

from tests.conftest import ROOT

SNAPSHOT = json.loads((ROOT / "tests" / "data" / "rendered_commands.json").read_text())
CONFIGS = {"demo": ["demo.yaml"], "paper": ["config.yaml"], "qwen3": ["qwen3.yaml"], "pilot": ["pilot.yaml"],
           "gpu_smoke": ["gpu_smoke.yaml"], "gpu_smoke_cpu": ["gpu_smoke.yaml", "gpu_smoke_cpu.yaml"],
           # a limit, a pinned task next to an unpinned one, an eval and a train variant
           "paper_extra": ["config.yaml", {"variants": {"topp-0.95": {"eval": {"top_p": 0.95, "limit": 5}},
                                                         "tol": {"train": {"tolerance": 0.05}}},
                                            "eval": {"task_revisions": {"aime24": "abc123"}}}]}


def load(files: list) -> dict:
    from snakemake.utils import update_config

    from elicit.checks.config import check

    cfg = {}
    for f in files:
        update_config(cfg, f if isinstance(f, dict) else yaml.safe_load((ROOT / "config" / f).read_text()))
    return check(cfg)


def rendered(config: dict) -> dict[str, str]:
    """What the rules render (workflow/rules/common.smk): train's params.cli per trained run; evaluate's
    params.model and params.cli (the answers' settings) per configuration, its resource eval_cells (a job
    of every task and seed, and one of one cell), params.include."""
    from elicit import backends, grid, steps, variants

    out = {"include": steps.shell(steps.include_args(config))}
    subsets = config["data"]["subsets"]
    for size in config["sizes"]:
        for trained in [*grid.trained(subsets), *variants.trained_runs(config)]:
            t, v = variants.split(trained)
            out[f"train {size} {trained}"] = steps.shell(steps.train_args(variants.apply(config, v), size, t))
        for c in [*grid.configurations(subsets), *variants.cells(config)]:
            cfg = variants.apply(config, variants.split(c)[1])
            kind, run = variants.split(c)[0], variants.model_run(config, c)
            out[f"model {size} {c}"] = steps.shell(steps.eval_model_args(config, size, kind, run))
            job = (*backends.CELLS, *backends.scheduling(cfg["eval"]["backend"]))
            tasks, seeds = list(cfg["eval"]["tasks"]), list(cfg["eval"]["seeds"])
            for name, (ts, ss) in {"cli": ([], []), "all": (tasks, seeds), "one": (tasks[-1:], seeds[-1:])}.items():
                args = steps.eval_args(cfg, size, ts, ss)
                if name == "cli":  # the answers' settings: the same text for every grouping of the cells
                    out[f"eval {size} {c}"] = steps.shell({k: v for k, v in args.items() if k not in job})
                out[f"cells {name} {size} {c}"] = steps.shell({k: v for k, v in args.items() if k in job})
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rendered_command_lines_are_unchanged(name):
    now, before = rendered(load(CONFIGS[name])), SNAPSHOT[name]
    assert set(before) <= set(now)
    changed = {k: (before[k], now[k]) for k in before if now[k] != before[k]}
    assert not changed, f"{len(changed)} rendered command line(s) changed (each reruns its jobs): {changed}"
