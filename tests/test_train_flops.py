"""What a training step computes: the memory plan's recompute choice (none / some / all layers), train.py
applying it, and bench/train_flops.py's counts (ratio to the step without recomputation and padding)."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import ROOT, demo_config

sys.path.insert(0, str(ROOT / "bench"))


def grid():
    import yaml

    from elicit.checks.config import check

    return check(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def test_recompute_layers_none_some_all():
    from elicit.plan import memory_plan as mp

    cfg = grid()
    a = mp.load_arch(cfg, "7B")
    assert mp.planned_recompute(cfg, "7B", "full", 1000.0, seq=10038) == 0  # fits with every activation kept
    some = mp.planned_recompute(cfg, "7B", "full", 80.0, seq=10038)
    assert 0 < some < a.layers
    assert mp.planned_recompute(cfg, "7B", "full", 30.0, seq=10038) == a.layers  # does not fit even so: all
    assert mp.planned_recompute(cfg, "7B", "full", None, seq=10038) == a.layers  # no GPU memory known: all
    assert mp.planned_recompute({**cfg, "train": {**cfg["train"], "gradient_checkpointing": False}},
                                "7B", "full", 30.0) == 0
    # the plan with its recompute choice fits the headroom; one layer fewer would not
    parts = mp.train_parts(cfg, "7B", "full", seq=10038, gpu_mem_gb=80.0)
    assert mp.gib_of(parts) <= mp.RECOMPUTE_HEADROOM * 80
    fixed = sum(parts.values()) - parts["activations"]
    assert fixed + mp.activation_bytes(a, 10038, recompute=some - 1) > mp.RECOMPUTE_HEADROOM * 80 * mp.GIB
    # the ends are the former all-or-nothing figures
    assert mp.activation_bytes(a, 100, recompute=a.layers) == mp.activation_bytes(a, 100, checkpointing=True)
    assert mp.activation_bytes(a, 100, recompute=0) == mp.activation_bytes(a, 100, checkpointing=False)


def test_set_recompute_recomputes_exactly_those_layers():
    from transformers import AutoConfig, AutoModelForCausalLM

    from elicit.data.demo import architecture
    from elicit.train.engine import set_recompute

    fields = architecture(32, 3, 4)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields)).train()
    x = torch.randint(0, 1000, (1, 64))

    def step_flops(k):
        assert set_recompute(model, k) == 3
        counter = FlopCounterMode(display=False)
        with counter:
            model(input_ids=x, labels=x).loss.backward()
        return counter.get_total_flops()

    counts = [step_flops(k) for k in (0, 1, 2, 3, 0)]
    assert counts[0] == counts[4]  # back to none: nothing recomputed
    steps = [b - a for a, b in zip(counts, counts[1:4])]
    assert all(s > 0 for s in steps) and len(set(steps)) == 1, counts  # each layer recomputed costs one layer


def test_train_plans_its_recompute_from_the_gpu_memory(demo_model):
    """train.py's CPU path runs every branch: no GPU memory -> all; a budget -> the plan's fewest; no
    checkpointing -> none. The model's layers follow the choice, which the run records."""
    from train_flops import synthetic_run

    from elicit.plan import memory_plan as mp

    cfg = demo_config()
    lengths = [300, 200]
    runs = {gib: synthetic_run(cfg, "full", demo_model, lengths, gradient_checkpointing=True, gpu_mem_gib=gib)
            for gib in (0.0, 1000.0)}
    layers = runs[0.0].recompute["of"]
    assert runs[0.0].recompute["layers"] == layers and runs[0.0].recompute["why"] == "no GPU memory to plan with"
    assert runs[1000.0].recompute["layers"] == 0 and runs[1000.0].recompute["predicted_peak_gib"] > 0
    # a budget between: the plan's parts (its own job config), so that exactly one layer is recomputed
    job = mp.job_config(mp.Arch.from_config(json.loads((demo_model / "config.json").read_text())), 300, "full", "",
                        1, None, cfg["train"]["loss_chunk"])
    parts = mp.train_parts(job, "job", "full", seq=300)
    fixed = sum(parts.values()) - parts["activations"]
    gib = (fixed + mp.activation_bytes(mp.load_arch(job, "job"), 300, recompute=1)) / mp.RECOMPUTE_HEADROOM / mp.GIB
    one = synthetic_run(cfg, "full", demo_model, lengths, gradient_checkpointing=True, gpu_mem_gib=gib * 1.0001)
    assert one.recompute["layers"] == 1
    from transformers.modeling_layers import GradientCheckpointingLayer

    flags = [m.gradient_checkpointing for m in one.engine.module.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert flags == [True] + [False] * (layers - 1)
    off = synthetic_run(cfg, "full", demo_model, lengths, gradient_checkpointing=False, gpu_mem_gib=1.0)
    assert off.recompute["layers"] == 0


@pytest.mark.slow
def test_flop_bench_ratio_where_the_plan_needs_no_recompute(capsys):
    """python bench/train_flops.py --json: padding 0 everywhere; ratio <= 1.05 where nothing is recomputed
    (the 1.5B at 40 GiB: one length needs recomputation, one not), above 1 where layers are."""
    import train_flops

    # s1K-1.1's mean - sd and its longest: at 40 GiB the first fits with every activation kept, the second not
    assert train_flops.main(["--sizes", "1.5B", "--gpu-mem-gb", "40", "--json", "--lengths", "5507", "26969"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert {r["mode"] for r in rows} == {"full", "lora"} and any(r["size"].startswith("demo") for r in rows)
    assert all(r["padding"] == 0 for r in rows), rows
    free = [r for r in rows if r["recompute_planned"] == 0]
    assert free and all(r["ratio"] <= 1.05 for r in free), rows
    paid = [r for r in rows if r["recompute_planned"] > 0]
    assert paid and all(r["ratio"] > 1.0 for r in paid), rows


def test_cuda_only_kernels_and_fused_adamw_are_never_chosen_on_cpu(demo_model):
    """Liger's model kernels and the fused AdamW are CUDA choices: on CPU the step runs torch's, and
    liger is not even imported; asking for liger without CUDA is refused, named."""
    import types

    from train_flops import synthetic_run

    from elicit.train import engine as engines

    cpu = torch.device("cpu")
    assert engines.kernels_choice("auto", "qwen2", cpu) == ("torch", "no CUDA")
    assert engines.kernels_choice("torch", "qwen2", cpu) == ("torch", "requested")
    with pytest.raises(SystemExit, match="--kernels liger: no CUDA"):
        engines.kernels_choice("liger", "qwen2", cpu)
    with pytest.raises(SystemExit, match="--kernels must be one of"):
        engines.kernels_choice("triton", "qwen2", cpu)
    assert engines.adamw_impl([torch.nn.Parameter(torch.zeros(2))]) == {}
    assert engines.adamw_impl([types.SimpleNamespace(is_cuda=True)] * 2) == {"fused": True}
    run = synthetic_run(demo_config(), "full", demo_model, [64])
    assert run.kernels[0] == "torch" and not run.engine.opt.defaults.get("fused")
    assert "liger_kernel" not in sys.modules
