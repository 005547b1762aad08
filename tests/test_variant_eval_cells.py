"""A variant does what it says or is refused at plan time with the reason (issue 29, item 2). Before,
`eval: {seeds: [0, 1, 2]}` was accepted and planned seeds 0 and 1 only (the default's), regenerating
answers byte-identical to the default cells' as if they were other rows; `eval: {tasks: [...]}` was
ignored."""
import copy
import subprocess

import pytest
import yaml

from elicit.checks.config import ConfigError, check
from tests.conftest import ROOT

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


@pytest.mark.parametrize("settings,needle", [
    ({"seeds": [0, 1, 2]}, "eval.seeds cannot vary"),
    ({"tasks": ["demo_aime"]}, "eval.tasks cannot vary"),
    ({"include_path": "workflow/tasks"}, "eval.include_path cannot vary"),
    ({"seeds": [0, 1, 2], "temperature": 0.0}, "eval.seeds cannot vary"),
])
def test_a_variant_of_the_cells_is_refused_with_the_reason(settings, needle):
    cfg = copy.deepcopy(DEMO)
    cfg["variants"] = {"more": {"eval": settings}}
    with pytest.raises(ConfigError) as e:
        check(cfg)
    assert f"variants.more: {needle}" in str(e.value) and "change eval." in str(e.value), str(e.value)


def test_a_variant_of_answer_settings_still_plans_every_cell():
    """What a variant may change (sampling, limits, backend, task data) gives its own cells for every
    configuration, task and seed."""
    from elicit import variants

    cfg = copy.deepcopy(DEMO)
    cfg["variants"] = {"greedy": {"eval": {"temperature": 0.0, "max_gen_toks": 30}}}
    cfg = check(cfg)
    assert variants.cells(cfg) == [f"{c}@greedy" for c in ("base", "skyline", "lora", "full-16", "full-8")] + [
        "full-8@tseed1"]  # then the demo's second training seed (train.seeds)


def test_dry_run_refuses_a_seeds_variant(tmp_path):
    (tmp_path / "v.yaml").write_text(yaml.safe_dump({"variants": {"seeds3": {"eval": {"seeds": [0, 1, 2]}}}}))
    out = subprocess.run(["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile",
                          str(ROOT / "config" / "demo.yaml"), str(tmp_path / "v.yaml")], capture_output=True, text=True)
    assert out.returncode != 0 and "variants.seeds3: eval.seeds cannot vary" in out.stdout + out.stderr
