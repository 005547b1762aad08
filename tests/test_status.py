"""status.py: the grid of a config with seeds done / missing / failed after deleting some cells."""
import base64
import json

import pytest
import yaml

import status
from tests.conftest import ROOT

CFG = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())  # tiny-a, tiny-b; 16, 8; 2 tasks; seeds 0, 1


@pytest.fixture
def run(tmp_path):
    """A finished demo-shaped run: every eval output and log, every selection."""
    g = status.grid(CFG)
    res = tmp_path / "results"
    for size in g["sizes"]:
        for config in g["configs"]:
            if config not in ("base", "skyline"):
                sel = res / "models" / size / config / "selection.json"
                sel.parent.mkdir(parents=True, exist_ok=True)
                sel.write_text("{}")
                for stage in ("train", "select"):
                    log = res / "logs" / stage / size / f"{config}.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    log.write_text("ok")
            for task in g["tasks"]:
                for seed in g["seeds"]:
                    for root, ext in ((res / "eval", ".json"), (res / "logs" / "eval", ".log")):
                        p = root / size / config / task / f"seed{seed}{ext}"
                        p.parent.mkdir(parents=True, exist_ok=True)
                        p.write_text("{}")
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    return tmp_path, res, cfg


def cell(st, size, config, task):
    return next(c for c in st["cells"] if (c["size"], c["configuration"], c["task"]) == (size, config, task))


def test_all_done(run, capsys):
    tmp, res, cfg = run
    assert status.main(["--config", str(cfg), "--results", str(res), "--check"]) == 0
    out = capsys.readouterr().out
    assert "2 sizes × 5 configurations × 2 tasks × 2 seeds" in out
    assert "Evaluations: 40/40 done, 0 failed, 0 missing. Models: 6/6 selected." in out
    assert "Nothing left to run" in out and "missing" not in out.split("Evaluations")[0]


def test_deleted_cells(run, capsys):
    tmp, res, cfg = run
    # failed: output gone, log kept (the job ran and died)
    (res / "eval" / "tiny-a" / "lora" / "demo_gpqa" / "seed1.json").unlink()
    # missing: output and log gone (never ran)
    for seed in (0, 1):
        (res / "eval" / "tiny-b" / "full-8" / "demo_aime" / f"seed{seed}.json").unlink()
        (res / "logs" / "eval" / "tiny-b" / "full-8" / "demo_aime" / f"seed{seed}.log").unlink()
    # failed: output exists but snakemake's incomplete marker names it (killed mid-write)
    key = "results/eval/tiny-b/base/demo_gpqa/seed0.json"
    marker = tmp / ".snakemake" / "incomplete" / base64.urlsafe_b64encode(key.encode()).decode()
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"external_jobid": None}))
    # a model whose selection is gone but whose training log exists: failed; one never trained: missing
    (res / "models" / "tiny-b" / "full-16" / "selection.json").unlink()
    (res / "models" / "tiny-a" / "full-8" / "selection.json").unlink()
    for stage in ("train", "select"):
        (res / "logs" / stage / "tiny-a" / "full-8.log").unlink()

    st = status.collect(status.grid(CFG), res)
    assert cell(st, "tiny-a", "lora", "demo_gpqa")["state"] == "failed"
    assert cell(st, "tiny-a", "lora", "demo_gpqa")["done"] == 1
    assert cell(st, "tiny-a", "lora", "demo_gpqa")["seeds"] == {0: "done", 1: "failed"}
    assert cell(st, "tiny-b", "full-8", "demo_aime")["state"] == "missing"
    assert cell(st, "tiny-b", "full-8", "demo_aime")["done"] == 0
    assert cell(st, "tiny-b", "base", "demo_gpqa")["seeds"] == {0: "failed", 1: "done"}
    assert cell(st, "tiny-b", "full-16", "demo_aime")["model"] == "failed"
    assert cell(st, "tiny-a", "full-8", "demo_aime")["model"] == "missing"
    assert cell(st, "tiny-a", "base", "demo_aime")["model"] == "-"
    done = [c for c in st["cells"] if c["state"] == "done"]
    assert len(done) == 20 - 3

    assert status.main(["--config", str(cfg), "--results", str(res), "--check"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    tiny_b = lines.index(next(line for line in lines if line.startswith("tiny-b")))
    assert lines[tiny_b].split() == ["tiny-b", "model", "demo_aime", "demo_gpqa"]
    assert lines[tiny_b + 1].split() == ["base", "-", "2/2", "done", "1/2", "failed"]
    assert lines[tiny_b + 4].split() == ["full-16", "failed", "2/2", "done", "2/2", "done"]
    assert lines[tiny_b + 5].split() == ["full-8", "ready", "0/2", "missing", "2/2", "done"]
    assert "Evaluations: 36/40 done, 2 failed, 2 missing. Models: 4/6 selected." in out
    # 4 to run + 8 done but downstream of the two models to redo (tiny-b/full-16, tiny-a/full-8)
    assert "train/select 2 model(s), run 12 evaluation(s) (8 of them done but downstream" in out
    assert "failed: results/eval/tiny-a/lora/demo_gpqa/seed1.json" in out


def test_one_size_json_and_lock(run, capsys):
    tmp, res, cfg = run
    (res / "eval" / "tiny-b" / "lora" / "demo_aime" / "seed0.json").unlink()
    (tmp / ".snakemake" / "locks").mkdir(parents=True)
    (tmp / ".snakemake" / "locks" / "0.input.lock").write_text("")
    assert status.main(["--config", str(cfg), "--results", str(res), "--sizes", "tiny-a", "--check"]) == 0
    out = capsys.readouterr().out
    assert "tiny-b" not in out and "1 sizes" in out and "a run may be active" in out
    status.main(["--config", str(cfg), "--results", str(res), "--json"])
    st = json.loads(capsys.readouterr().out)
    assert len(st["cells"]) == 2 * 5 * 2
    assert [c["state"] for c in st["cells"] if c["state"] != "done"] == ["failed"]
    with pytest.raises(SystemExit):
        status.grid(CFG, ["70B"])
