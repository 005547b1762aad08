"""The per-GPU memory plan: architectures, DeepSpeed's estimators, the paper grid's verdicts,
the plan-time check in a dry-run, evaluation layouts and the planner against measurement."""
import copy
import json
import re
import subprocess

import pytest
import yaml

from elicit.checks.config import check
from elicit.plan import memory_plan as mp
from elicit.plan import zero_estimates
from tests.conftest import ROOT

PAPER = check(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))  # the schema fills the defaults
DEMO = check(yaml.safe_load((ROOT / "config" / "demo.yaml").read_text()))
# Parameter counts as published on the model cards (Qwen2.5: "Number of Parameters"; the
# R1 distills: the hub's safetensors size). Qwen2.5-32B's card rounds to 32.5B while its
# weights hold 32.76B, hence the 1% tolerance.
PUBLISHED = {"Qwen/Qwen2.5-1.5B-Instruct": 1.54e9, "Qwen/Qwen2.5-7B-Instruct": 7.62e9,
             "Qwen/Qwen2.5-14B-Instruct": 14.7e9, "Qwen/Qwen2.5-32B-Instruct": 32.5e9,
             "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": 1.78e9, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": 7.62e9,
             "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": 14.8e9, "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": 32.8e9,
             # Qwen3 model cards' "Number of Parameters"
             "Qwen/Qwen3-4B": 4.0e9, "Qwen/Qwen3-8B": 8.2e9, "Qwen/Qwen3-14B": 14.8e9, "Qwen/Qwen3-32B": 32.8e9}
MODEL_FILES = sorted((ROOT / "resources" / "models").glob("*.json"))
ARCH_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "vocab_size", "tie_word_embeddings", "max_position_embeddings", "torch_dtype")


@pytest.fixture
def cache(tmp_path):
    zero_estimates._MEMO.clear()
    yield tmp_path / "zero_estimates.json"
    zero_estimates._MEMO.clear()


def test_every_paper_model_has_an_architecture_file():
    for m in PAPER["models"].values():
        for role in ("base", "skyline"):
            assert mp.arch_file(m[role]).is_file(), m[role]
    assert {mp.arch_file(h).name for h in PUBLISHED} == {p.name for p in (ROOT / "resources" / "models").glob("*.json")}


def meta_model(fields: dict):
    """transformers' own model of an architecture file, on the meta device (no memory), bf16."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {k: v for k, v in fields.items() if not k.startswith("_") and k not in ("model_type", "torch_dtype")}
    config = AutoConfig.for_model(fields["model_type"], **kwargs)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_parameter_counts_on_the_meta_device(path):
    fields = json.loads(path.read_text())
    assert mp.arch_file(fields["_hub_id"]) == path and set(ARCH_KEYS) <= set(fields)
    model = meta_model(fields)
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    arch = mp.Arch.from_config(fields)
    assert arch.params() == total and arch.largest_layer_params() == largest
    assert total == pytest.approx(PUBLISHED[fields["_hub_id"]], rel=0.01)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_kv_bytes_per_token_from_the_configs_heads_and_head_dim(path):
    """The plan and the hf-cb backend (one function, elicit/plan/arch.py) read head_dim from the config:
    Qwen3-32B has 64 heads of 128 in a hidden size of 5120 (not 80)."""
    from elicit.eval.lm_backend_cb import kv_bytes_per_token

    c = json.loads(path.read_text())
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    expected = c["num_key_value_heads"] * head_dim * c["num_hidden_layers"] * 2 * 2  # K and V, bf16
    assert mp.Arch.from_config(c).kv_bytes_per_token(2) == expected
    assert kv_bytes_per_token(meta_model(c)) == expected


def test_an_unknown_architecture_is_named_and_the_arch_key_supplies_it(cache):
    cfg = copy.deepcopy(PAPER)
    cfg["models"]["7B"]["base"] = "someone/Unknown-7B"
    with pytest.raises(mp.PlanError, match=r"models\.7B\.base: no architecture for 'someone/Unknown-7B': "
                                           r"add resources/models/someone--Unknown-7B\.json"):
        mp.check(cfg, 80, cache)
    cfg["models"]["7B"]["arch"] = {"base": "resources/models/Qwen--Qwen2.5-7B-Instruct.json"}
    assert mp.load_arch(cfg, "7B") == mp.load_arch(PAPER, "7B") and mp.check(cfg, 80, cache) == []


def test_lora_trainable_count_matches_peft():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = mp.Arch(hidden=64, inter=160, layers=2, heads=4, kv_heads=2, vocab=300, tied=False)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=300))
    assert sum(p.numel() for p in model.parameters()) == arch.params()
    lora = PAPER["lora"]
    peft = get_peft_model(model, LoraConfig(r=3, lora_alpha=16, target_modules=lora["targets"], task_type="CAUSAL_LM"))
    assert sum(p.numel() for p in peft.parameters() if p.requires_grad) == arch.lora_params(3, lora["targets"])


def test_plan_time_estimates_equal_deepspeeds_own(cache, monkeypatch):
    """Every ZeRO input of the paper grid (and of the suggested alternatives): what the plan
    reads through its cache equals DeepSpeed's estimator called here directly."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    reqs = [mp.zero_request(PAPER, size, mode, stage)[0] for size, mode in mp._jobs(PAPER)
            for stage in ("config", "zero2", "zero3", "zero3_offload")]
    planned = zero_estimates.estimates(reqs, cache)
    for r, got in zip(reqs, planned):
        n, g, k = r["total_params"], r["gpus"], r["nodes"]
        if r["stage"] == "zero2":
            want = estimate_zero2_model_states_mem_needs(n, num_gpus_per_node=g, num_nodes=k, cpu_offload=False)[1]
        else:
            off = r["stage"] == "zero3_offload"
            want = estimate_zero3_model_states_mem_needs(n, r["largest_layer_params"], num_gpus_per_node=g,
                                                         num_nodes=k, cpu_offload=off, cpu_offload_params=off)[1]
        assert got == int(want), r
    assert {r["stage"] for r in reqs} == {"zero2", "zero3", "zero3_offload"}
    # a second process reads the cache file: no deepspeed, no subprocess
    zero_estimates._MEMO.clear()
    monkeypatch.setattr(zero_estimates.subprocess, "run", lambda *a, **k: pytest.fail("cache miss"))
    assert zero_estimates.estimates(reqs, cache) == planned
    assert json.loads(cache.read_text())["deepspeed"] == zero_estimates.deepspeed_version()


def test_lora_states_are_the_trainable_set_plus_the_frozen_bf16_base():
    base = mp.load_arch(PAPER, "7B").params()
    req, frozen = mp.zero_request(PAPER, "7B", "lora")  # zero2 x 8: the frozen base replicated
    assert req["total_params"] == mp.load_arch(PAPER, "7B").lora_params(1, PAPER["lora"]["targets"]) < 3e6
    assert frozen == 2 * base
    req, frozen = mp.zero_request(PAPER, "32B", "lora")  # zero3 x 16: partitioned
    assert frozen == 2 * mp.load_arch(PAPER, "32B").params() // 16
    assert mp.zero_request(PAPER, "7B", "full", stage=None) == (None, 20 * base)  # DDP: 16 B/param + buckets


def test_paper_grid_fits_80_gib(cache):
    assert mp.check(PAPER, 80, cache) == []
    rows = {r["size"]: r for r in mp.table(PAPER, 80, cache)}
    assert all(0 < mp.gib_of(rows[s][k]) <= 80 for s in rows for k in ("train full", "train lora", "eval"))


def test_paper_grid_does_not_fit_24_gib_and_says_what_to_change(cache):
    problems = mp.check(PAPER, 24, cache)
    pattern = re.compile(r"^models\.(1\.5B|7B|14B|32B): (train full|train lora|eval) needs (\d+\.\d) GiB per GPU "
                         r"\(.*\) > 24 GiB available: (.+)$")
    found = {}
    for msg in problems:
        m = pattern.match(msg)
        assert m, msg
        assert float(m[3]) > 24
        fixes = m[4]
        if m[2] == "eval":
            assert "eval.batch_size" in fixes and f"models.{m[1]}.eval.gpus" in fixes
        else:
            assert f"models.{m[1]}.train.gpus/nodes" in fixes and "zero3_offload" in fixes
        found.setdefault(m[1], set()).add(m[2])
    # eval.batch_size auto (hf-cb): one 7B sequence fits 24 GiB, the continuous batcher holds what fits
    assert found["32B"] == {"train full", "train lora", "eval"} and found["7B"] == {"train full", "train lora"}
    lockstep = {**PAPER, "eval": {**PAPER["eval"], "batch_size": 8, "backend": "hf-resumable"}}
    assert any(m.startswith("models.7B: eval needs") for m in mp.check(lockstep, 24, cache))


def test_demo_jobs_on_cpu_are_not_checked(cache):
    assert mp.check(DEMO, 1, cache) == []
    d = DEMO["models"]["tiny-a"]["demo"]  # make_demo.py model: MLP 4 x hidden, heads // 2 KV heads, tied
    assert mp.load_arch(DEMO, "tiny-a") == mp.Arch(d["hidden"], 4 * d["hidden"], d["layers"], d["heads"],
                                                    d["heads"] // 2, mp.DEMO_VOCAB, True)


def _site(tmp_path, gib):
    site = tmp_path / f"site{gib}.yaml"
    site.write_text(yaml.safe_dump({"site": {"gpu_mem_gb": gib, "partitions": {"default": "gpu"}}}))
    return f"site={site}"


def _dry_run(tmp_path, *config):
    return subprocess.run(["snakemake", "-n", "--quiet", "rules", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(ROOT / "config" / "config.yaml"), *config],
                          capture_output=True, text=True)


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_dry_run_refuses_a_grid_that_cannot_fit(tmp_path):
    out = _dry_run(tmp_path, "--config", _site(tmp_path, 24))
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "memory plan: jobs that cannot fit 24 GiB per GPU" in text
    assert re.search(r"models\.32B: train full needs \d+\.\d GiB per GPU .* > 24 GiB available: ", text)
    assert re.search(r"models\.32B: eval needs \d+\.\d GiB per GPU \(layout dp.* eval\.backend: hf-resumable", text)
    assert "Job stats" not in out.stdout
    assert (tmp_path / ".snakemake" / "memory_plan" / "zero_estimates.json").is_file()  # the workdir's cache
    ok = _dry_run(tmp_path, "--config", _site(tmp_path, 80))  # the cache written above is reused
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "total" in ok.stdout.split("Job stats:")[-1] and "memory plan" not in ok.stderr
    unchecked = _dry_run(tmp_path)
    assert unchecked.returncode == 0 and "memory plan not checked: no gpu_mem_gb" in unchecked.stderr


def test_eval_layouts(cache):
    assert {s: mp.eval_layout(PAPER, s, 80) for s in PAPER["sizes"]} == \
        {"1.5B": "single", "7B": "single", "14B": "dp", "32B": "dp"}  # hf-cb: a replica per GPU
    PAPER_LOCKSTEP = {**PAPER, "eval": {**PAPER["eval"], "backend": "hf-resumable", "batch_size": 8}}
    assert {s: mp.eval_layout(PAPER_LOCKSTEP, s, 80) for s in PAPER["sizes"]} == \
        {"1.5B": "single", "7B": "single", "14B": "tp", "32B": "tp"}  # 14B dp: 76.7 GiB, > 90 % of 80
    assert mp.eval_layout(PAPER_LOCKSTEP, "14B", 96) == "dp"  # a replica with 10 % to spare: one per GPU
    assert mp.eval_layout(PAPER_LOCKSTEP, "14B", 40) == "tp"  # a replica no longer fits, tp does
    assert {s: mp.eval_layout(PAPER_LOCKSTEP, s, None) for s in ("14B", "32B")} == {"14B": "tp", "32B": "tp"}
    cfg = copy.deepcopy(PAPER_LOCKSTEP)
    cfg["models"]["7B"]["eval"].update(gpus=3)  # 28 heads, 4 KV heads: tp over 3 GPUs cannot divide
    assert mp.eval_layout(cfg, "7B", None) == "split" and mp.eval_layout(cfg, "7B", 80) == "dp"
    cfg["models"]["7B"]["eval"]["layout"] = "tp"
    assert mp.eval_layout(cfg, "7B", 80) == "tp"
    assert any("models.7B.eval.layout: tp needs the attention and KV heads divisible by 3" in m
               for m in mp.check(cfg, 80, cache))


def test_eval_layout_arithmetic():
    a = mp.load_arch(PAPER, "32B")
    one, tp, split = (mp.eval_parts(a, 8, 512, 29000, 4, lay) for lay in ("single", "tp", "split"))
    assert one["kv cache"] == 8 * 29512 * 2 * 64 * 8 * 128 * 2 and tp["kv cache"] == one["kv cache"] // 4
    assert tp["weights"] == one["weights"] // 4 and split["kv cache"] == one["kv cache"] // 4
    assert one["weights"] // 4 < split["weights"] < one["weights"] // 2  # a quarter of the layers + one embedding
    assert mp.eval_parts(a, 8, 512, 29000, 4, "dp") == one


def test_prompt_is_capped_by_the_context():
    cfg = copy.deepcopy(PAPER)
    assert mp.prompt_tokens(cfg, "7B") == 2560  # gpqa_diamond_cot_zeroshot's planning number
    cfg["cost"]["max_prompt_tokens"]["aime24"] = 10**6
    assert mp.prompt_tokens(cfg, "7B") == 32768 - 29000
    del cfg["cost"]["max_prompt_tokens"]
    assert mp.prompt_tokens(cfg, "7B") == 32768 - 29000


def test_chunked_loss_is_what_makes_long_sequences_fit():
    a = mp.load_arch(PAPER, "7B")
    chunked, whole = mp.loss_chunked_bytes(a, 512), mp.loss_materialised_bytes(a, 32768)
    assert chunked < 1.1 * 2**30 and whole > 60 * 2**30


@pytest.mark.parametrize("point", ["train-mat-512", "train-chunk-1024", "act-gc-2048", "eval-p32-g256"])
@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_planner_against_measurement(point):
    """bench/memory_check.py: peak RSS of one step on this CPU within the stated tolerance."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_check", ROOT / "bench" / "memory_check.py")
    memory_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory_check)

    got, want = memory_check.measure(point, timeout=120), memory_check.predict(memory_check.POINTS[point])
    lo, hi = memory_check.TOLERANCE
    assert lo <= got / want <= hi, (point, got, want)


def test_deepspeed_buckets_never_exceed_the_trainable_parameters():
    """On an H200 (bench/gpu_acceptance.sh, gpu_smoke) a rank-1 LoRA of the 1.5B architecture under
    ZeRO-2 peaked at 4.49 GiB; the plan said 8.19, 3.35 of it bf16 buckets of 2e8 elements for ~1M
    trainable parameters. A bucket holds at most the trainable set; a full finetune keeps its buckets."""
    lora = mp.ds_buffer_bytes("zero2", trainable=1_000_000)
    assert lora == int(2 * 2 * 1_000_000 * 4.5)
    assert mp.ds_buffer_bytes("zero2", trainable=1_543_714_304) == mp.ds_buffer_bytes("zero2")
    cfg = check(yaml.safe_load((ROOT / "config" / "gpu_smoke.yaml").read_text()))
    assert mp.train_parts(cfg, "smoke-1.5B", "lora", cache=None)["deepspeed buckets"] < 2**25


def test_gpu_smoke_model_is_the_shipped_architecture():
    """gpu_smoke's random model is planned from its architecture file (real vocabulary, 1.5B)."""
    cfg = check(yaml.safe_load((ROOT / "config" / "gpu_smoke.yaml").read_text()))
    a = mp.load_arch(cfg, "smoke-1.5B")
    assert (a.vocab, a.hidden, a.layers) == (151936, 1536, 28)
    assert a.params() == 1_543_714_304
