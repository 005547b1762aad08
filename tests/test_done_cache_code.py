"""The finished-work cache key covers the code a step runs, found from its import statements
(elicit.done_cache.code_files): editing a module the step reaches only through another module
changes the key (a stale result is never restored), editing one it never imports does not."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBE = """
import json, sys
from pathlib import Path
from elicit import done_cache as d
step = Path(sys.argv[1]).resolve()
files = d.code_files(step)
direct = {d.module_file(n) for n in d._imported(step, "")}
print(json.dumps({"key": d.code_sha(*files), "files": [str(f) for f in files],
                  "indirect": [str(f) for f in files if f not in direct and f != step and f.name != "__init__.py"]}))
"""


@pytest.fixture
def scripts(tmp_path):
    """A copy of workflow/scripts and workflow/tasks: the checkout whose code is keyed."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "workflow" / "scripts", tmp_path / "workflow" / "scripts", ignore=ignore)
    shutil.copytree(ROOT / "workflow" / "tasks", tmp_path / "workflow" / "tasks", ignore=ignore)
    return tmp_path / "workflow" / "scripts"


def probe(scripts, step) -> dict:
    """Key, files and the modules reached only through others, as the copy's elicit finds them
    (a fresh process: nothing of the checkout's is imported)."""
    return json.loads(subprocess.run([sys.executable, "-c", PROBE, step], cwd=scripts, env={"PYTHONPATH": str(scripts)},
                                     check=True, capture_output=True, text=True).stdout)


def key(scripts, step) -> str:
    return probe(scripts, step)["key"]


def touch(path):
    path.write_text(path.read_text() + "\n# edited\n")


def test_old_hand_lists_are_covered():
    """What TRAIN_CODE / EVAL_CODE listed by hand before they were derived is still in them."""
    import train
    from elicit.eval import cell

    assert {"train.py", "loss.py", "chat.py", "s1k.py", "engine.py", "checkpoints.py", "flags.py"} <= \
        {p.name for p in train.TRAIN_CODE}
    assert {"eval_cell.py", "lm_backend.py", "lm_backend_cb.py", "lm_tasks.py", "scoring.py", "stops.py"} <= \
        {p.name for p in cell.EVAL_CODE}


@pytest.mark.parametrize("step", ["train.py", "eval_cell.py"])
def test_indirect_import_changes_the_key_and_a_foreign_module_does_not(scripts, step):
    found = probe(scripts, step)
    indirect = [Path(f) for f in found["indirect"]]
    assert step == "train.py" or indirect, "eval_cell.py reaches some modules only through others"
    assert all(f.is_relative_to(scripts) for f in indirect)  # the copy's, never the checkout's
    foreign = scripts / "elicit" / "report" / "figures.py"
    assert str(foreign) not in found["files"]
    before = found["key"]
    touch(foreign)
    assert key(scripts, step) == before
    for module in indirect or [scripts / "elicit" / "train" / "loss.py"]:
        touch(module)
        after = key(scripts, step)
        assert after != before, module
        before = after


def test_imports_in_functions_relative_and_transitive(scripts):
    """step -> (in a function) elicit.probe_a -> (relative) probe_b -> (from elicit.x import) atomic."""
    pkg = scripts / "elicit"
    (pkg / "probe_a.py").write_text("from . import probe_b\n")
    (pkg / "probe_b.py").write_text("def f():\n    from elicit.atomic import write_json\n")
    (scripts / "step.py").write_text("def main():\n    import elicit.probe_a\n")
    found = probe(scripts, "step.py")
    assert [Path(p).relative_to(scripts).as_posix() for p in found["files"]] == \
        ["step.py", "elicit/__init__.py", "elicit/atomic.py", "elicit/probe_a.py", "elicit/probe_b.py"]
    before = found["key"]
    touch(pkg / "atomic.py")
    assert key(scripts, "step.py") != before
