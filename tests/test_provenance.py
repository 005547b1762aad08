"""Revisions and fingerprints: what a result was computed from (provenance.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

SHA_A, SHA_B = "a" * 40, "0123456789abcdef0123456789abcdef01234567"


def _fake_cache(root: Path, repo: str, repo_type: str, sha: str) -> None:
    """The layout huggingface_hub writes: <type>s--owner--name/{refs/main, snapshots/<sha>/}."""
    d = root / f"{repo_type}s--{repo.replace('/', '--')}"
    (d / "refs").mkdir(parents=True)
    (d / "refs" / "main").write_text(sha)
    (d / "snapshots" / sha).mkdir(parents=True)
    (d / "snapshots" / sha / "config.json").write_text("{}")


def test_hub_commits_resolve_offline_from_the_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from elicit.provenance import hub_commit, model_fingerprint

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    _fake_cache(tmp_path, "Org/model", "model", SHA_A)
    _fake_cache(tmp_path, "Org/data", "dataset", SHA_B)
    assert hub_commit("Org/model") == SHA_A
    assert hub_commit("Org/data", repo_type="dataset") == SHA_B
    assert hub_commit("Org/absent") is None
    assert hub_commit("Org/absent", SHA_B) == SHA_B  # a pinned sha is its own commit
    assert model_fingerprint("Org/model")["fingerprint"] == f"hub:Org/model@{SHA_A}"
    assert model_fingerprint("Org/absent")["fingerprint"] == "hub:Org/absent@main:unresolved"


def test_local_model_fingerprint_follows_content_not_path(tmp_path):
    from elicit.provenance import model_fingerprint

    a = tmp_path / "a"
    a.mkdir()
    (a / "model.safetensors").write_bytes(b"weights-1")
    (a / "config.json").write_text("{}")
    fa = model_fingerprint(str(a))["fingerprint"]
    b = tmp_path / "b"
    b.mkdir()
    for f in a.iterdir():
        (b / f.name).write_bytes(f.read_bytes())
    assert model_fingerprint(str(b))["fingerprint"] == fa  # same bytes elsewhere: same model
    (a / "model.safetensors").write_bytes(b"weights-2")
    assert model_fingerprint(str(a))["fingerprint"] != fa  # retrained in place: another model
    (a / "provenance.json").write_text(json.dumps({"train_fingerprint": "f00d", "step": 40}))
    assert model_fingerprint(str(a))["fingerprint"] == "train:f00d@step-40"


def test_unpinned_ids_of_the_paper_config_one_line_each(tmp_path):
    from elicit.provenance import unpinned

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    lines = unpinned(cfg, tmp_path)
    assert len(lines) == 1 + 8 + 3  # data, base + skyline x 4 sizes, 3 tasks
    assert any(line.startswith("unpinned hub revision: Qwen/Qwen2.5-7B-Instruct@main")
               and "models.7B.base_revision: <commit;" in line for line in lines)
    # once fetched, each line carries the commit to paste
    (tmp_path / "hub" / "models" / "7B").mkdir(parents=True)
    (tmp_path / "hub" / "models" / "7B" / "base.json").write_text(json.dumps({"commit": SHA_A}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s1k.json").write_text(json.dumps({"resolved_revision": SHA_B}))
    (tmp_path / "hub" / "tasks.json").write_text(json.dumps({"datasets": {
        "aime24": {"dataset": {"path": "Maxwell-Jia/AIME_2024", "resolved": SHA_B}}}}))
    lines = unpinned(cfg, tmp_path)
    assert f"models.7B.base_revision: {SHA_A}" in "\n".join(lines)
    assert f"data.revision: {SHA_B}" in "\n".join(lines)
    assert f"eval.task_revisions.aime24: {SHA_B}" in "\n".join(lines)
    # pinned: silent
    cfg["data"]["revision"] = SHA_B
    for m in cfg["models"].values():
        m["base_revision"] = m["skyline_revision"] = SHA_A
    cfg["eval"]["task_revisions"] = {t: SHA_B for t in cfg["eval"]["tasks"]}
    assert unpinned(cfg, tmp_path) == []
    assert unpinned(yaml.safe_load((ROOT / "config" / "demo.yaml").read_text()), tmp_path) == []


def test_dry_run_prints_the_unpinned_lines():
    import subprocess

    out = subprocess.run(["snakemake", "-n", "--configfile", str(ROOT / "config" / "config.yaml"), "-d",
                          str(ROOT)], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert text.count("unpinned hub revision:") == 0  # issue 31: one line, not 12
    assert text.count("12 hub revisions float (1 data, 8 models, 3 task datasets)") == 1


@pytest.mark.parametrize("bad", ["main; touch /tmp/x", "$(touch /tmp/x)main", "a b"])
def test_revisions_outside_their_character_set_fail_the_config_check(bad):
    from elicit.checks.config import ConfigError, check

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["models"]["7B"]["base_revision"] = bad
    with pytest.raises(ConfigError, match=r"models\.7B\.base_revision"):
        check(cfg)
