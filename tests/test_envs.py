"""Conda env files cannot be built here: check they pin exactly what pyproject.toml pins."""
import re
import tomllib

import yaml

from tests.conftest import ROOT


def pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        assert m, f"not an exact pin: {line!r}"
        out[m[1].lower().replace("_", "-")] = m[2]
    return out


def test_envs_agree_with_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    project = pins(meta["dependencies"] + [d for extra in meta["optional-dependencies"].values() for d in extra])
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert {e.stem for e in envs} == {"train", "eval", "aggregate"}
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        for name, version in pins(pip).items():
            assert project.get(name) == version, f"{env.name}: {name}=={version}, pyproject has {project.get(name)}"


def test_every_rule_has_log_and_conda():
    text = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = re.findall(r"^rule (\w+):(.*?)(?=^rule |\Z)", text, re.S | re.M)
    assert len(rules) >= 10
    for name, body in rules:
        assert "log:" in body and "conda:" in body, f"rule {name} lacks log: or conda:"
