"""Table 1 and Recovered % against hand-computed values."""
import json
import math

import pandas as pd
import pytest

import aggregate

BENCH = {"AIME": ["aime24", "aime25"], "GPQA": ["gpqa"]}


def put(root, size, config, task, seed, score, n):
    p = root / "eval" / size / config / task / f"seed{seed}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"score": score, "n_samples": n, "generation": {"temperature": 0.6}}))


@pytest.fixture
def results(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"n_rows": 1000}))
    # AIME per seed = pooled over 60 problems: (a24*30 + a25*30)/60
    per_seed = {
        "base":    {"aime24": [0, 10], "aime25": [10, 10], "gpqa": [40, 50]},
        "skyline": {"aime24": [60, 50], "aime25": [40, 50], "gpqa": [40, 50]},
        "full-29": {"aime24": [30, 20], "aime25": [20, 40], "gpqa": [50, 60]},
        "lora":    {"aime24": [10, 10], "aime25": [10, 10], "gpqa": [30, 30]},
    }
    for config, tasks in per_seed.items():
        for task, scores in tasks.items():
            for seed, s in enumerate(scores):
                put(tmp_path, "7B", config, task, seed, s, 198 if task == "gpqa" else 30)
    return tmp_path


def test_table_and_recovered(results):
    out = aggregate.run(results, ["7B"], BENCH)
    s = out["summary"].set_index(["configuration", "benchmark"])
    # base AIME: seeds (0+10)/2=5, (10+10)/2=10 -> mean 7.5, se = sd(5,10)/sqrt2 = 3.5355/1.4142 = 2.5
    assert s.loc[("base", "AIME"), "mean"] == pytest.approx(7.5)
    assert s.loc[("base", "AIME"), "stderr"] == pytest.approx(2.5)
    # skyline AIME: 50, 50 -> 50 ± 0
    assert s.loc[("skyline", "AIME"), "mean"] == pytest.approx(50.0)
    assert s.loc[("skyline", "AIME"), "stderr"] == pytest.approx(0.0)
    # full-29 AIME: 25, 30 -> 27.5; recovered = (27.5-7.5)/(50-7.5)*100 = 47.0588
    r = out["recovered"].set_index(["configuration", "benchmark"])
    assert r.loc[("full", "AIME"), "recovered_pct"] == pytest.approx(20 / 42.5 * 100)
    # lora AIME: 10 -> (10-7.5)/42.5*100
    assert r.loc[("lora", "AIME"), "recovered_pct"] == pytest.approx(2.5 / 42.5 * 100)
    assert r.loc[("lora", "AIME"), "train_examples"] == 1000
    # GPQA: skyline == base (45 == 45) -> NaN, never a crash, and a footnote
    assert math.isnan(r.loc[("full", "GPQA"), "recovered_pct"])
    md = (results / "table1.md").read_text()
    assert "undefined for 7B GPQA" in md
    assert "| 7B | Full finetune (29 examples) | 27.50 ± 2.50 | 55.00 ± 5.00 |" in md
    t1 = pd.read_csv(results / "table1.csv")
    assert list(t1["configuration"]) == ["base", "skyline", "lora", "full"]
    assert (results / "figures" / "recovered.png").stat().st_size > 10_000


def test_partial_seed_counts_only_when_all_tasks_done(results):
    (results / "eval" / "7B" / "base" / "aime25" / "seed1.json").unlink()
    out = aggregate.run(results, ["7B"], BENCH)
    s = out["summary"].set_index(["configuration", "benchmark"])
    assert s.loc[("base", "AIME"), "n_seeds"] == 1
    assert s.loc[("base", "AIME"), "mean"] == pytest.approx(5.0)
    assert math.isnan(s.loc[("base", "AIME"), "stderr"])


def test_paper_stderr_convention():
    """The paper's 1.5B full-29 AIME: one of 4 seeds solved 1 of 60 -> 0.42 ± 0.42."""
    scores = pd.DataFrame({"size": "1.5B", "configuration": "full", "train_examples": 29,
                           "benchmark": "AIME", "seed": range(4), "score": [100 / 60, 0, 0, 0]})
    row = aggregate.mean_se(scores).iloc[0]
    assert round(row["mean"], 2) == 0.42 and round(row["stderr"], 2) == 0.42


def test_only_selected_sizes(results):
    put(results, "32B", "base", "gpqa", 0, 50, 198)
    out = aggregate.run(results, ["7B"], BENCH)
    assert set(out["tidy"]["size"]) == {"7B"}
