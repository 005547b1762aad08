"""The cost estimate against hand-computed GPU-hours."""
import copy
import re
import subprocess
import sys

import pytest
import yaml

from elicit.plan import cost
from elicit.plan.cost import estimate
from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_hand_computed():
    cfg = copy.deepcopy(PAPER)
    cfg["cost"] = {"mean_train_tokens": 1000, "problems": {t: 10 for t in cfg["eval"]["tasks"]},
                   "mean_new_tokens": {t: 360 for t in cfg["eval"]["tasks"]}}
    rates = {"train": {"7B": {"tokens_per_s": 1000}}, "eval": {"7B": {"tokens_per_s": 100}}}
    train, ev = estimate(cfg, ["7B"], rates)
    # 7 runs x (300 x 16 x 1000 + (300//10 + 1) x 72 x 1000 / 3) tokens / 1000 tok/s / 3600
    assert train["gpu_hours"] == pytest.approx(7 * (4_800_000 + 31 * 72_000 / 3) / 1000 / 3600)
    # 9 models x 4 seeds x 3 tasks x 10 problems x 360 tokens = 388,800 / 100 tok/s / 3600 = 1.08
    assert ev["gpu_hours"] == pytest.approx(1.08) and ev["cells"] == 9 * 3 * 4


def test_two_extra_training_seeds_at_the_two_smallest_subsets():
    """estimate_cost's price of train.seeds [0, 1, 2] on full-29 and full-58: 4 trainings and 4 models'
    cells per size; a config that asks for them counts them in its own estimate."""
    cfg = copy.deepcopy(PAPER)
    cfg["cost"] = {"mean_train_tokens": 1000, "problems": {t: 10 for t in cfg["eval"]["tasks"]},
                   "mean_new_tokens": {t: 360 for t in cfg["eval"]["tasks"]}}
    rates = {"train": {"7B": {"tokens_per_s": 1000}}, "eval": {"7B": {"tokens_per_s": 100}}}
    (row,) = cost.extra_seeds(cfg, ["7B"], rates)
    one = (4_800_000 + 31 * 72_000 / 3) / 1000 / 3600
    assert (row["subsets"], row["trainings"], row["eval_cells"]) == ("29 58", 4, 4 * 3 * 4)
    assert row["train_gpu_hours"] == pytest.approx(4 * one) and row["eval_gpu_hours"] == pytest.approx(4 * 1.08 / 9)
    assert row["share_pct"] == pytest.approx(100 * (4 * one + 0.48) / (7 * one + 1.08))
    cfg["train"]["seeds"] = [0, 1, 2]
    train, ev = estimate(cfg, ["7B"], rates)
    assert train["cells"] == 7 + 4 and train["gpu_hours"] == pytest.approx(11 * one)
    assert ev["cells"] == (9 + 4) * 3 * 4 and ev["gpu_hours"] == pytest.approx(1.08 + 0.48)


def test_cli_prints_the_extra_seeds(tmp_path):
    out = cli(tmp_path).split("extra training seeds:")[1]
    assert "two smallest subsets (29 58 examples" in out
    assert len(re.findall(r"^ +(?:1\.5B|7B|14B|32B) +4 +48 +\d+\.\d +\d+\.\d +\d+\.\d +\d+\.\d%$", out, re.M)) == 4
    assert re.search(r"^ +all +16 +192 ", out, re.M)


def cli(tmp_path, *args):
    return subprocess.run([sys.executable, str(ROOT / "workflow" / "scripts" / "estimate_cost.py"),
                           str(ROOT / "config" / "config.yaml"), *args],
                          capture_output=True, text=True, check=True, cwd=tmp_path).stdout


def test_cli_prints_total_and_the_memory_table(tmp_path):
    out = cli(tmp_path)
    assert "total" in out and "32B" in out
    memory = out.split("memory per GPU (predicted peak, GiB)")[1]
    assert re.search(r"^ +7B +\d+\.\d \[zero2 x8\] +\d+\.\d \[zero2 x8\] +\d+\.\d \[single x1\]$", memory, re.M)
    assert re.search(r"^ +32B +\d+\.\d \[zero3 x16\] .* \[dp x4\]$", memory, re.M)  # hf-cb: a replica per GPU


def test_cli_says_what_fits(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("site:\n  gpu_mem_gb: 80\n  partitions: {default: gpu}\n")
    assert len(re.findall(r"fits on 80 GiB$", cli(tmp_path, "--site", str(site)), re.M)) == 4
    small = cli(tmp_path, "--gpu-mem-gb", "24", "--sizes", "32B")
    assert re.search(r"^ +32B .* does not fit on 24 GiB: train full, train lora, eval$", small, re.M)
    assert "1.5B" not in small


def test_throughputs_come_from_the_benchmark_table(tmp_path):
    """Every number used is printed with its source: measured (the command) or an estimate."""
    out = cli(tmp_path)
    assert re.search(r"^ +7B +eval +2300 tokens/s  estimate \(", out, re.M)  # H100-80GB, hf-cb

    table = yaml.safe_load(cost.THROUGHPUT.read_text())
    table["gpus"]["H200-141GB"]["eval"]["hf-cb"]["7B"] = {"tokens_per_s": 5000, "measured": True,
                                                          "command": "bench/eval_throughput.py --x", "measured_on": "H200"}
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump(table))
    gpu, entry, rates = cost.throughputs(PAPER, "H200-141GB", f)
    assert rates["eval"]["7B"]["tokens_per_s"] == 5000 and entry["gpu_mem_gb"] == 141
    assert cost.source(rates["eval"]["7B"]) == "measured: bench/eval_throughput.py --x on H200"
    del table["gpus"]["H200-141GB"]["train"]["lora"]["32B"]
    f.write_text(yaml.safe_dump(table))
    with pytest.raises(SystemExit, match="H200-141GB.train.lora.32B"):
        cost.throughputs(PAPER, "H200-141GB", f)


def test_sequences_in_flight_per_size(tmp_path):
    out = cli(tmp_path, "--gpu-mem-gb", "80")
    flight = dict(re.findall(r"^ +([\d.]+B): (\d+) sequences in flight", out, re.M))
    assert set(flight) == {"1.5B", "7B", "14B", "32B"}
    # 80 GiB: 1.5B ~70 sequences of 29.5k tokens (KV cache and attention mask), 7B ~30 (issue 20), 1.5B's 2 AIME tasks x 2 seeds per job
    assert 60 <= int(flight["1.5B"]) <= 90 and 25 <= int(flight["7B"]) <= 40
    assert "1.5B: 69 sequences in flight" in out and "aime24+aime25 x seeds 0/1, aime24+aime25 x seeds 2/3" in out


def test_every_measured_throughput_names_its_command_and_machine():
    """A measured entry of resources/throughput.yaml says how and where: `on:` would be read by YAML
    as the key True (the printed source said 'on None')."""
    import yaml

    table = yaml.safe_load((ROOT / "resources" / "throughput.yaml").read_text())
    measured = [e for gpu in table["gpus"].values() for stage in ("train", "eval")
                for per in gpu[stage].values() for e in per.values() if e.get("measured")]
    assert measured  # the H200 1.5B training number
    for e in measured:
        where = e.get("measured_on") or (e.get("gpu") and e.get("versions"))
        assert isinstance(e.get("command"), str) and isinstance(where, str), e


def test_full_and_lora_train_at_their_own_measured_rates(tmp_path):
    """train: {full: {size: ...}, lora: {size: ...}}: the full finetunes plan at the full rate, the LoRA at
    its own; a measured entry prints its command, GPU, versions, MFU and peak memory."""
    table = yaml.safe_load(cost.THROUGHPUT.read_text())
    train = table["gpus"]["H100-80GB"]["train"]
    assert set(train) == {"full", "lora"}
    train["lora"]["7B"] = {"tokens_per_s": 2000, "mfu": 0.31, "peak_gib": 40.25, "measured": True,
                           "command": "bash bench/gpu_train_acceptance.sh", "gpu": "NVIDIA H100 80GB HBM3",
                           "versions": "torch 2.11.0"}
    train["full"]["7B"] = {**train["full"]["7B"], "tokens_per_s": 4000}
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump(table))
    _, _, rates = cost.throughputs(PAPER, "H100-80GB", f)
    assert cost.source(rates["train"]["lora"]["7B"]) == ("measured: bash bench/gpu_train_acceptance.sh on NVIDIA H100 "
                                                         "80GB HBM3, torch 2.11.0, MFU 31.0%, peak 40.2 GiB")
    assert cost.source(rates["train"]["full"]["7B"]).startswith("estimate (")
    cfg = copy.deepcopy(PAPER)
    cfg["cost"] = {**cfg["cost"], "mean_train_tokens": 1000}
    train_h = estimate(cfg, ["7B"], rates)[0]["gpu_hours"]
    per_run = 300 * 16 * 1000 + 31 * 72 * 1000 / 3  # tokens of one run, validation included
    assert train_h == pytest.approx((6 / 4000 + 1 / 2000) * per_run / 3600)
    # the former form (one entry per size) still plans both modes at that rate
    assert cost.train_rates({"7B": {"tokens_per_s": 5}}) == {"full": {"7B": {"tokens_per_s": 5}},
                                                             "lora": {"7B": {"tokens_per_s": 5}}}


def test_no_step_program_imports_another():
    """report.py took its plan tables from the step program estimate_cost (a sideways import);
    both now use elicit/plan/cost.py, and the layering says step programs import only the library."""
    import ast

    scripts = ROOT / "workflow" / "scripts"
    steps = {p.stem for p in scripts.glob("*.py")}
    for p in sorted(scripts.glob("*.py")):
        tree = ast.parse(p.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & (steps - {p.stem}), f"{p.name} imports the step program(s) {names & steps}"
