"""What a group adopting the workflow relies on: licence and citation, steps started by name
(no checkout path in the rules), captions rendered as reStructuredText, site options checked."""
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, child_env


def test_licence_and_citation():
    assert "Permission is hereby granted, free of charge" in (ROOT / "LICENSE").read_text()  # MIT
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["authors"]
    assert cff["preferred-citation"]["title"] == "Reasoning Elicitation is Scale Dependent"
    assert "How to cite" in (ROOT / "README.md").read_text()


def test_release_metadata_agrees():
    """Issue 31: CITATION.cff names the released version and date; pyproject.toml and the newest
    release of CHANGELOG.md say the same."""
    import tomllib

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    released = re.findall(r"^## \[(\d[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert str(cff["version"]) == version == released[0][0], (cff["version"], version, released)
    assert str(cff["date-released"]) == released[0][1]


def test_rules_name_no_path_of_the_checkout():
    text = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    shells = re.findall(r"shell:\n((?:\s+\".*\"\n)+)", text)
    assert len(shells) >= 10
    for shell in shells:
        assert "SCRIPTS" not in shell and "workflow/scripts" not in shell, shell
        assert "-m elicit.run " in shell, shell


def test_step_runs_by_name_in_the_same_process(tmp_path):
    """python -m elicit.run STEP execs workflow/scripts/STEP.py: the program replaces the process (a
    launcher's signal reaches it; the launcher's atexit never runs), with the program's own --help."""
    out = subprocess.run([sys.executable, "-u", "-m", "elicit.run", "select_checkpoint", "--help"],
                         capture_output=True, text=True, env=child_env(), cwd=tmp_path)
    assert out.returncode == 0 and "usage: select_checkpoint.py" in out.stdout, out.stderr
    probe = ("import atexit, sys; from elicit import run; atexit.register(print, 'launcher exited'); "
             "sys.argv = ['x', 'status', '--help']; run.main()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=child_env(), cwd=tmp_path)
    assert out.returncode == 0 and "usage: status.py" in out.stdout, out.stderr
    assert "launcher exited" not in out.stdout  # replaced by exec, not a child
    bad = subprocess.run([sys.executable, "-m", "elicit.run", "no_such_step"], capture_output=True, text=True,
                         env=child_env(), cwd=tmp_path)
    assert bad.returncode != 0 and "train" in bad.stderr


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "workflow" / "report").glob("*.rst")))
def test_captions_render_as_restructuredtext(name):
    """report.py renders the captions snakemake --report renders, with docutils (any warning is an
    error); no markup is left as text."""
    import report

    html = report.caption(name)
    text = re.sub(r"<[^>]+>", "", html)
    for markup in ("**", "``", ":sub:", "\\ "):
        assert markup not in text, (name, markup, text)
    if name == "table1":
        assert "(n<sub>t</sub>/N)" in html


def test_site_options_are_checked_and_defaulted():
    from elicit.checks.config import ConfigError, load_site

    site = load_site({"sizes": ["7B"], "site": {"partitions": {"default": "gpu"}}})
    assert (site["gpu_request"], site["constraint"], site["no_account"], site["mem_increase_per_retry"]) == \
        ("gpus", None, False, 0)
    for bad, key in (({"account": "a", "no_account": True}, "site.no_account"),
                     ({"gpu_request": "gpu"}, "site.gpu_request"), ({"constraint": "a;b"}, "site.constraint"),
                     ({"mem_increase_per_retry": -1}, "site.mem_increase_per_retry")):
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_site({"sizes": ["7B"], "site": {"partitions": {"default": "gpu"}, **bad}})


def test_slurm_profile_documents_real_plugin_options():
    """Issue 31: the profile's commented options are the plugin's own (uncommenting works), and the
    site file's remark that plugin 2.8.0 never reads its `no_account` setting holds for the pin."""
    import dataclasses
    from pathlib import Path

    import snakemake_executor_plugin_slurm as plugin

    fields = {f.name.replace("_", "-") for f in dataclasses.fields(plugin.ExecutorSettings)}
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    commented = re.findall(r"^# (slurm-[a-z-]+):", text, re.M)
    assert "slurm-efficiency-report" in commented and "slurmdbd" in text
    assert {c.removeprefix("slurm-") for c in commented} <= fields, commented
    source = "".join(p.read_text() for p in Path(plugin.__file__).parent.rglob("*.py"))
    assert source.count("no_account") == 1  # the setting's field; nothing reads it
    assert "never read by 2.8.0" in (ROOT / "profiles" / "slurm" / "site.yaml").read_text()
