"""What an evaluation backend cannot honour is refused at plan time, naming the backends that can
(issue 29, item 4): before, `eval.repetition_penalty: 1.1` with hf-cb passed the dry-run and every job
failed after loading its model, with Snakemake having deleted the finished cells. The capabilities live
in one registry (elicit/backends.py) that eval_cell.py and the checks read."""
import copy
import subprocess

import pytest
import yaml

from elicit.checks.config import ConfigError, check
from tests.conftest import ROOT

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def demo(**eval_over) -> dict:
    cfg = copy.deepcopy(DEMO)
    cfg["eval"].update(eval_over)
    return cfg


@pytest.mark.parametrize("over,needles", [
    ({"repetition_penalty": 1.1}, ["eval.repetition_penalty: 1.1", "hf-cb", "hf-resumable, hf"]),
    ({"backend": "hf-resumable", "repetition_penalty": 1.1}, None),
    ({"top_k": 20, "min_p": 0.05}, None),  # continuous batching samples with these
])
def test_sampling_options_the_backend_cannot_honour(over, needles):
    if needles is None:
        check(demo(**over))
        return
    with pytest.raises(ConfigError) as e:
        check(demo(**over))
    assert all(n in str(e.value) for n in needles), str(e.value)


def test_a_variant_is_checked_against_its_backend():
    cfg = demo()
    cfg["variants"] = {"rep": {"eval": {"repetition_penalty": 1.1}}}
    with pytest.raises(ConfigError, match=r"variants.rep: eval.repetition_penalty: 1.1 .*hf-cb"):
        check(cfg)
    cfg["variants"] = {"rep": {"eval": {"repetition_penalty": 1.1, "backend": "hf-resumable"}}}
    check(cfg)


def test_a_layout_the_backend_cannot_run():
    cfg = demo()
    cfg["models"]["tiny-a"]["eval"].update(gpus=2, layout="tp")
    with pytest.raises(ConfigError, match=r"models.tiny-a.eval.layout: layout tp is not run by eval.backend hf-cb"
                                          r".*\(hf-slots, hf-resumable\)"):
        check(cfg)
    cfg["eval"]["backend"] = "hf-resumable"
    check(cfg)


def test_the_memory_plans_layout_is_checked_too():
    """auto picks a layout from the site's GPU memory: one the backend cannot run is refused with it."""
    from elicit.checks.config import layout_problems

    cfg = check(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    assert layout_problems(cfg, 80) == []
    cfg["eval"]["backend"] = "hf"  # plain lm-eval: one process, no torchrun layouts
    problems = layout_problems(cfg, 80)
    assert problems and all("eval.backend hf" in p and "(auto)" in p for p in problems), problems


def test_dry_run_refuses_before_any_job(tmp_path):
    (tmp_path / "rep.yaml").write_text(yaml.safe_dump({"eval": {"repetition_penalty": 1.1}}))
    out = subprocess.run(["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(ROOT / "config" / "demo.yaml"), str(tmp_path / "rep.yaml")],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "eval.repetition_penalty: 1.1 is not supported by eval.backend hf-cb" in out.stdout + out.stderr


def test_one_registry():
    """eval_cell's --backend choices, the schema's enum and the registry agree; eval_cell holds no list of
    its own nor a branch on a backend's name."""
    import re

    import eval_cell
    from elicit import backends

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["properties"]["eval"]["properties"]["backend"]["enum"]) == set(backends.NAMES)
    action = next(a for a in eval_cell.build_parser()._actions if a.dest == "backend")
    assert tuple(action.choices) == backends.NAMES
    src = (ROOT / "workflow" / "scripts" / "eval_cell.py").read_text()
    assert not re.search(r"BACKENDS\s*=|backend\s*[!=]=\s*\"hf", src)
