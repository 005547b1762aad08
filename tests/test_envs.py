"""The workflow's one software environment: pyproject.toml's pins (`make venv`), built into an
Apptainer image by envs/elicit.def for compute nodes. The image cannot be built here: check that
it names exactly pyproject.toml's pins and Python, and that every rule runs in it."""
import re
import tomllib

from tests.conftest import ROOT

PIN = re.compile(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def pins(lines):
    out = {}
    for line in lines:
        m = PIN.fullmatch(line.strip())
        assert m, f"not an exact pin: {line!r}"
        out[m[1].lower().replace("_", "-")] = m[2]
    return out


def project_pins(extras=("gpu",)) -> dict:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return pins(meta["dependencies"] + [d for e in extras for d in meta["optional-dependencies"][e]])


def test_container_pins_equal_pyproject():
    text = (ROOT / "envs" / "elicit.def").read_text()
    post = text.split("%post", 1)[1].split("\n%", 1)[0]
    named = {m[1].lower().replace("_", "-"): m[2] for m in PIN.finditer(post)}
    assert named == project_pins(), set(named.items()) ^ set(project_pins().items())
    python = re.search(r"^From: python:(\d+\.\d+)", text, re.M)[1]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={python},<3.{int(python.split('.')[1]) + 1}", (python, requires)
    assert "--no-deps -e /opt/elicit" in post  # the project itself, resolving nothing else


def test_dev_extra_is_pinned():
    assert set(project_pins(("dev",))) >= {"ruff", "snakefmt"}


def test_every_rule_has_a_log_and_runs_in_the_one_environment():
    text = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    # `rule NAME:`, and `rule:` with a `name:` (the evaluation rules, defined in a loop: eval.smk)
    rules = re.findall(r"^ *rule ?(\w*):(.*?)(?=^ *rule ?\w*:|\Z)", text, re.S | re.M)
    assert len(rules) >= 10 and any(not name and "name:" in body for name, body in rules)
    for name, body in rules:
        assert "log:" in body, f"rule {name} lacks log:"
        assert "conda:" not in body and "container:" not in body, f"rule {name} has an environment of its own"
    assert 'container: f"{workflow.basedir}/envs/elicit.sif"' in (ROOT / "Snakefile").read_text()
    assert not list((ROOT / "envs").glob("*.yaml"))  # no per-rule conda envs left to drift
