"""workflow/scripts/eval_cell.py and the demo lm-eval tasks, on a tiny offline Qwen2 model.

Real lm-eval, real HF generate: the only patching is wrappers around transformers'
GenerationMixin methods that record what reaches `generate` and call through.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from elicit.eval import cell, scoring
from tests.conftest import ROOT, eval_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # a dataclass (its typed config) looks its module up there
    spec.loader.exec_module(mod)
    return mod


evaluate = _load("wf_eval_cell", ROOT / "workflow" / "scripts" / "eval_cell.py")

TASKS = ROOT / "workflow" / "tasks" / "demo"
SECRET = "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123"


U = _load("demo_task_utils", TASKS / "utils.py")  # lm-eval loads it by path, as here


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_model(demo_model) -> Path:
    """The demo base model (random Qwen2, Qwen-like generation_config), built once."""
    gc = json.loads((demo_model / "generation_config.json").read_text())
    assert (gc["top_k"], gc["top_p"], gc["repetition_penalty"]) == (20, 0.8, 1.05)  # the trap is armed
    return demo_model


def _run(model, out, task, seed, *extra, limit=3, max_gen_toks=16, temperature=0.8):
    argv = [*eval_settings(), "--model", str(model), "--task", task, "--include-path", str(TASKS),
            "--seed", str(seed), "--max-gen-toks", str(max_gen_toks), "--temperature", str(temperature),
            "--limit", str(limit), "--device", "cpu", "--dtype", "float32", "--out", str(out), *extra]
    record = evaluate.main(argv)
    on_disk = json.loads(Path(out).read_text())
    samples = [json.loads(l) for l in cell.samples_path(out).read_text().splitlines()]
    assert record["score"] == on_disk["score"]
    return on_disk, samples


@pytest.fixture(scope="session")
def aime_runs(tiny_model, tmp_path_factory):
    """demo_aime with seed 1, seed 1 again, and seed 2, run from an unrelated CWD."""
    d = tmp_path_factory.mktemp("aime")
    cwd = os.getcwd()
    os.chdir(d)  # the task data must not depend on CWD
    os.environ["HF_TOKEN"] = SECRET
    try:
        return {name: _run(tiny_model, d / f"{name}.json", "demo_aime", seed)
                for name, seed in (("s1", 1), ("s1_again", 1), ("s2", 2))}
    finally:
        os.environ.pop("HF_TOKEN", None)
        os.chdir(cwd)


@pytest.fixture(scope="session")
def gpqa_run(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("gpqa")
    return (d / "g.json",) + _run(tiny_model, d / "g.json", "demo_gpqa", 3, limit=4)


class GenerateRecorder:
    """Wraps GenerationMixin.generate / _prepare_generation_config; calls the real ones."""

    def __init__(self, monkeypatch):
        from transformers.generation.utils import GenerationMixin

        self.calls, self.configs = [], []
        real_generate = GenerationMixin.generate
        real_prepare = GenerationMixin._prepare_generation_config

        def generate(model, *args, **kwargs):
            self.calls.append(dict(kwargs))
            return real_generate(model, *args, **kwargs)

        def prepare(model, generation_config, *args, **kwargs):
            cfg, model_kwargs = real_prepare(model, generation_config, *args, **kwargs)
            self.configs.append(cfg)
            return cfg, model_kwargs

        monkeypatch.setattr(GenerationMixin, "generate", generate)
        monkeypatch.setattr(GenerationMixin, "_prepare_generation_config", prepare)


# --------------------------------------------------------------------------- output format
def test_aime_output_json_and_samples(aime_runs, tiny_model):
    rec, samples = aime_runs["s1"]
    for key in ("task", "seed", "model", "adapter", "revision", "metrics", "score", "n_samples",
                "generation", "versions", "elapsed_s"):
        assert key in rec, key
    assert rec["task"] == "demo_aime" and rec["seed"] == 1
    assert rec["model"] == str(tiny_model) and rec["adapter"] is None and rec["revision"] is None
    assert "exact_match" in rec["metrics"] and 0.0 <= rec["metrics"]["exact_match"] <= 1.0
    assert 0.0 <= rec["score"] <= 100.0
    assert rec["score"] == pytest.approx(100 * rec["metrics"]["exact_match"])
    assert rec["n_samples"] == 3 == len(samples)
    assert set(rec["versions"]) >= {"lm-eval", "transformers", "torch", "peft", "deepspeed"}
    assert all(rec["versions"][k] for k in ("lm-eval", "transformers", "torch", "peft", "deepspeed"))
    assert rec["elapsed_s"] > 0
    assert rec["seeds"] == {"python": 0, "numpy": 1234, "torch": 1, "fewshot": 1234}
    ids = [json.loads(l)["id"] for l in (TASKS / "aime_demo.jsonl").read_text().splitlines()[:3]]
    answers = [json.loads(l)["answer"] for l in (TASKS / "aime_demo.jsonl").read_text().splitlines()[:3]]
    assert [s["id"] for s in samples] == ids
    assert [str(s["target"]) for s in samples] == answers
    for s in samples:
        assert isinstance(s["response"], str) and s["score"] in (0, 1)
        assert s["prompt"].startswith("<|im_start|>system") and s["prompt"].endswith("<|im_start|>assistant\n")
    # the per-doc scores are what lm-eval aggregated
    assert sum(s["score"] for s in samples) / 3 == pytest.approx(rec["metrics"]["exact_match"])


def test_gpqa_output(gpqa_run):
    out, rec, samples = gpqa_run
    assert rec["task"] == "demo_gpqa" and rec["n_samples"] == 4 == len(samples)
    assert 0.0 <= rec["score"] <= 100.0
    assert {s["target"] for s in samples} <= set("ABCD")
    assert cell.samples_path(out) == out.parent / "g.samples.jsonl"
    assert not list(out.parent.glob(".tmp-*"))  # atomic writes left nothing behind
    # max_gen_toks always passed: GPQA's YAML has none, lm-eval's HF default would be 256
    assert rec["generation"]["max_gen_toks"] == 16
    assert rec["generation"]["until"] == ["<|im_end|>"]  # the YAML's stop list survives the merge


def test_hf_token_never_written(aime_runs, tmp_path):
    for name in aime_runs:
        rec, samples = aime_runs[name]
        assert SECRET not in json.dumps(rec) and SECRET not in json.dumps(samples)


# --------------------------------------------------------------------------- seeds
def test_same_seed_reproduces_and_seeds_differ(aime_runs):
    r1 = [s["response"] for s in aime_runs["s1"][1]]
    r1b = [s["response"] for s in aime_runs["s1_again"][1]]
    r2 = [s["response"] for s in aime_runs["s2"][1]]
    assert r1 == r1b
    assert r1 != r2
    # only the sampling differs: prompts are identical across seeds
    assert [s["prompt"] for s in aime_runs["s1"][1]] == [s["prompt"] for s in aime_runs["s2"][1]]


SHUFFLE_UTILS = '''
import importlib.util, random
_spec = importlib.util.spec_from_file_location("_demo_utils_for_shuffle", {utils!r})
_demo = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(_demo)
load_jsonl = _demo.load_jsonl
process_results_gpqa = _demo.process_results_gpqa

def process_docs(ds):
    """Like upstream gpqa: shuffle the choices with Python's GLOBAL random."""
    def f(doc):
        choices = list(doc["choices"])
        correct = choices["ABCD".index(doc["answer"])]
        random.shuffle(choices)
        return {{"c1": choices[0], "c2": choices[1], "c3": choices[2], "c4": choices[3],
                "answer": "ABCD"[choices.index(correct)], "order": "|".join(choices)}}
    return ds.map(f)
'''
SHUFFLE_YAML = '''
task: shuffled_gpqa
custom_dataset: !function utils.load_jsonl
dataset_kwargs:
  data_file: {data}
process_docs: !function utils.process_docs
output_type: generate_until
test_split: test
doc_to_text: "{{{{Question}}}}\\n(A) {{{{c1}}}}\\n(B) {{{{c2}}}}\\n(C) {{{{c3}}}}\\n(D) {{{{c4}}}}\\nLet's think step by step:"
doc_to_target: "{{{{answer}}}}"
process_results: !function utils.process_results_gpqa
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: ["</s>"]
  do_sample: false
  temperature: 0.0
metadata:
  version: 0.0
'''


def test_choice_shuffle_is_fixed_across_seeds(tiny_model, tmp_path):
    """An upstream-GPQA-like task shuffling with global `random`: seeds change only sampling."""
    tdir = tmp_path / "shuffle_task"
    tdir.mkdir()
    (tdir / "utils.py").write_text(SHUFFLE_UTILS.format(utils=str(TASKS / "utils.py")))
    (tdir / "shuffled.yaml").write_text(SHUFFLE_YAML.format(data=str(TASKS / "gpqa_demo.jsonl")))
    runs = {}
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}.json"
        evaluate.main([*eval_settings(), "--model", str(tiny_model), "--task", "shuffled_gpqa", "--include-path", str(tdir),
                       "--seed", str(seed), "--max-gen-toks", "16", "--temperature", "1.0", "--limit", "8",
                       "--device", "cpu", "--dtype", "float32", "--out", str(out)])
        runs[seed] = [json.loads(l) for l in cell.samples_path(out).read_text().splitlines()]
    original = [json.loads(l) for l in (TASKS / "gpqa_demo.jsonl").read_text().splitlines()]
    shown = [s["prompt"] for s in runs[1]]
    # the shuffle really happened (so equal prompts below are not trivially equal) ...
    assert any(f"(A) {doc['choices'][0]}\n" not in p for doc, p in zip(original, shown))
    # ... and gave the same choice order and targets for both seeds
    assert shown == [s["prompt"] for s in runs[2]]
    assert [s["target"] for s in runs[1]] == [s["target"] for s in runs[2]]
    assert [s["response"] for s in runs[1]] != [s["response"] for s in runs[2]]


# --------------------------------------------------------------------------- generation settings
def test_checkpoint_generation_config_is_the_trap(tiny_model, monkeypatch):
    """Control: plain generate() on the tiny model inherits its Qwen-like sampling settings."""
    import torch
    from transformers import AutoModelForCausalLM

    rec = GenerateRecorder(monkeypatch)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=1)
    cfg = rec.configs[-1]
    assert (cfg.do_sample, cfg.top_k, cfg.top_p, cfg.repetition_penalty) == (True, 20, 0.8, 1.05)


def test_sampling_settings_reach_generate(tiny_model, tmp_path, monkeypatch):
    rec = GenerateRecorder(monkeypatch)
    out, _ = _run(tiny_model, tmp_path / "t.json", "demo_gpqa", 1, "--top-p", "0.9", "--top-k", "0",
                  "--repetition-penalty", "1.0", limit=2, max_gen_toks=16, temperature=0.7)
    assert len(rec.calls) == 2  # batch size 1, two docs
    for kw in rec.calls:
        # the YAML says do_sample: false; ours must win
        assert kw["do_sample"] is True
        assert kw["temperature"] == 0.7
        assert kw["top_p"] == 0.9 and kw["top_k"] == 0
        assert kw["repetition_penalty"] == 1.0 and kw["min_p"] is None
        # max_gen_toks reached generate as prompt length + 16
        assert kw["max_length"] - kw["input_ids"].shape[1] == 16
    for cfg in rec.configs:  # what HF generate actually used after merging the checkpoint's config
        assert cfg.do_sample is True and cfg.temperature == 0.7
        assert cfg.top_p == 0.9 and cfg.top_k == 0  # not the checkpoint's 0.8 / 20
        assert cfg.repetition_penalty == 1.0  # not 1.05
        assert cfg.min_p is None
    assert out["generation"]["do_sample"] is True and out["generation"]["top_k"] == 0


def test_greedy_overrides_checkpoint_do_sample(tiny_model, tmp_path, monkeypatch):
    rec = GenerateRecorder(monkeypatch)
    out, _ = _run(tiny_model, tmp_path / "g.json", "demo_aime", 1, limit=1, temperature=0)
    assert rec.calls and all(kw["do_sample"] is False for kw in rec.calls)
    assert all(cfg.do_sample is False for cfg in rec.configs)  # checkpoint says True
    assert out["generation"]["do_sample"] is False


@pytest.mark.parametrize("n,why", [(0, "at least 1"), (512, "no room for the prompt")])
def test_max_gen_toks_refused_before_any_model_is_loaded(tmp_path, n, why):
    """eval.max_gen_toks's rule (elicit/eval/stops.py), the one the plan applies: against --max-length too."""
    with pytest.raises(SystemExit) as e:  # eval_settings: --max-length 512
        evaluate.main([*eval_settings(), "--model", str(tmp_path / "no-model"), "--task", "demo_aime", "--seed", "0",
                       "--max-gen-toks", str(n), "--out", str(tmp_path / "seed0.json")])
    assert "--max-gen-toks" in str(e.value) and why in str(e.value), e.value


def test_generation_kwargs_unit():
    args = evaluate.build_parser().parse_args(
        [*eval_settings(), "--model", "m", "--task", "t", "--seed", "3", "--max-gen-toks", "100", "--out", "o.json",
         "--temperature", "0.6", "--top-p", "0.95", "--min-p", "0.05"])
    kw = cell.generation_kwargs(args)
    assert kw == {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "min_p": 0.05,
                  "repetition_penalty": 1.0, "max_gen_toks": 100}
    args.temperature = 0.0
    assert cell.generation_kwargs(args)["do_sample"] is False


def test_layouts_map_to_lm_eval_model_args():
    """--layout split: one process, the model split over the job's GPUs (lm-eval parallelize);
    tp: transformers tensor parallel (tp_plan auto, under torchrun); dp and single: plain device
    placement (dp's ranks share out the fixed batches themselves, lm_backend.py)."""
    import inspect

    from lm_eval.models.huggingface import HFLM

    args = evaluate.build_parser().parse_args(
        [*eval_settings(), "--model", "m", "--task", "t", "--seed", "0", "--max-gen-toks", "8", "--out", "o.json"])
    assert args.layout == "single" and "parallelize" not in cell.model_args(args, 4)
    args.layout = "split"
    assert cell.model_args(args, 4)["parallelize"] is True
    assert "parallelize" not in cell.model_args(args, 1)
    args.layout = "tp"
    assert cell.model_args(args, 4)["tp_plan"] == "auto"
    args.layout = "dp"
    assert not {"parallelize", "tp_plan"} & set(cell.model_args(args, 4))
    assert {"parallelize", "tp_plan"} <= set(inspect.signature(HFLM.__init__).parameters)  # lm-eval's names


def test_lm_eval_merge_keeps_yaml_do_sample_unless_overridden():
    """Why do_sample must be explicit: lm-eval dict-updates the YAML's generation_kwargs."""
    from lm_eval.models.utils import normalize_gen_kwargs

    yaml_kwargs = {"until": ["</s>"], "do_sample": False, "temperature": 0.0}
    naive = dict(yaml_kwargs)
    naive.update({"temperature": 0.6})
    assert normalize_gen_kwargs(naive)["do_sample"] is False  # silently greedy
    assert normalize_gen_kwargs(naive)["max_gen_toks"] == 256  # the default when none is given
    ours = dict(yaml_kwargs)
    ours.update({"do_sample": True, "temperature": 0.6, "max_gen_toks": 64})
    norm = normalize_gen_kwargs(ours)
    assert norm["do_sample"] is True and norm["temperature"] == 0.6 and norm["max_gen_toks"] == 64


# --------------------------------------------------------------------------- adapter, CLI, env
def test_adapter(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    rec, samples = _run(tiny_model, tmp_path / "a.json", "demo_aime", 1, "--adapter", str(tmp_path / "adapter"),
                        "--max-length", "512", "--revision", "main",
                        limit=1)
    assert rec["adapter"] == str(tmp_path / "adapter") and rec["revision"] == "main" and len(samples) == 1


def test_cli_subprocess(tiny_model, tmp_path):
    """The real command line, from an unrelated CWD; the token never reaches the logs."""
    import subprocess

    out = tmp_path / "cli" / "r.json"
    env = dict(os.environ, HF_TOKEN=SECRET)
    env.pop("HF_HUB_OFFLINE", None)  # the program must switch the hub off itself
    proc = subprocess.run(
        [sys.executable, str(ROOT / "workflow" / "scripts" / "eval_cell.py"), *eval_settings(), "--model", str(tiny_model),
         "--task", "demo_gpqa", "--include-path", str(TASKS), "--seed", "5", "--max-gen-toks", "8",
         "--limit", "1", "--device", "cpu", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    rec = json.loads(out.read_text())
    assert rec["task"] == "demo_gpqa" and rec["n_samples"] == 1 and rec["seed"] == 5
    assert "demo_gpqa seed=5" in proc.stdout


def test_cli_help_and_required_args(capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "eval_cell.py" in text and "--max-gen-toks" in text and "--include-path" in text
    with pytest.raises(SystemExit) as e:  # --max-gen-toks is required
        evaluate.main([*eval_settings(), "--model", "m", "--task", "t", "--seed", "1", "--out", "o.json"])
    assert e.value.code == 2


def test_offline_by_default(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    cell.set_offline(allow_hub=True)
    assert "HF_HUB_OFFLINE" not in os.environ
    cell.set_offline(allow_hub=False)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_primary_metric_choice():
    res = {"alias": "x", "exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": 0.01,
           "exact_match,flexible-extract": 0.3}
    assert cell.pick_primary(res, None) == "exact_match,flexible-extract"
    assert cell.pick_primary(res, "exact_match,strict-match") == "exact_match,strict-match"
    assert cell.pick_primary({"exact_match,none": 0.5, "exact_match_stderr,none": "N/A"}, None) == "exact_match,none"


# --------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("text,expected", [
    ("<think>\nmaybe \\boxed{12}\n</think>\n\nSo \\boxed{392}", 392),                # r1
    ("<think>\nI get \\boxed{392}\n</think>\n\nThe answer is \\boxed{12}", 12),      # only after </think>
    ("<think>a</think>b</think>final \\boxed{7}", 7),                               # last </think>
    ("<|im_start|>think\n\\boxed{5}\n<|im_start|>answer\nAnswer: \\boxed{392}", 392),  # s1, raw markers
    ("think\nfirst \\boxed{5}\nanswer\nAnswer: $\\boxed{392}$", 392),              # s1, decoded
    ("think\nonly thinking, cut off \\boxed{41}", 41),                              # no end: whole text
    ("\\boxed{1} then \\boxed{2} and finally \\boxed{392}", 392),                   # last box
    ("The answer is 392.", None),                                                    # no box
    ("\\boxed{\\frac{1}{2}}", None),                                                 # nested, not an int
    ("\\boxed{042}", 42),
    ("\\boxed{1,000}", 1000),
    ("\\boxed 7", 7),
    ("\\boxed{\\text{392}}", 392),
    ("\\boxed{12", None),                                                            # unbalanced
    ("<think>\n\\boxed{392}\n</think>\n\n", None),                                  # answer only in thinking
    ("", None),
])
def test_extract_aime(text, expected):
    assert U.extract_aime(text) == expected


def test_last_boxed_nested():
    assert scoring.last_boxed("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert scoring.last_boxed("\\boxed{a} \\boxed{\\sqrt{\\frac{3}{4}}}") == "\\sqrt{\\frac{3}{4}}"
    assert scoring.last_boxed("\\boxed{7} \\boxed{oops") == "7"
    assert scoring.last_boxed("nothing") is None


def test_score_aime():
    assert U.score_aime("\\boxed{392}", "392") == 1
    assert U.score_aime("\\boxed{392}", 392) == 1
    assert U.score_aime("\\boxed{391}", "392") == 0
    assert U.score_aime("392", "392") == 0  # must be boxed
    assert U.process_results_aime({"answer": "300"}, ["<think>x</think> \\boxed{300}"]) == {"exact_match": 1}
    assert U.process_results_aime({"Answer": 300}, ["\\boxed{300}"]) == {"exact_match": 1}  # aime24 column


@pytest.mark.parametrize("text,expected", [
    ("<think>\nMaybe (A)? No, (C).\n</think>\n\nThe answer is (B)", "B"),
    ("(A) looks wrong, (D) maybe, the answer is (C)", "C"),
    ("<think>\nthe answer is (A)\n</think>\n\nI am not sure.", None),
    ("think\n(A)?\nanswer\nAnswer: (D)", "D"),
    ("The answer is (E) or (a)", None),
    ("The answer is B", None),
])
def test_extract_gpqa(text, expected):
    assert U.extract_gpqa(text) == expected


def test_score_gpqa():
    assert U.score_gpqa("so (B)", "B") == 1
    assert U.score_gpqa("so (B)", "(B)") == 1  # upstream gpqa stores "(B)"
    assert U.score_gpqa("so (B) no (C)", "B") == 0
    assert U.process_results_gpqa({"answer": "D"}, ["<think>(A)</think>(D)"]) == {"exact_match": 1}


def test_loader_resolves_relative_to_yaml_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = U.load_jsonl(data_file="aime_demo.jsonl", config_source=str(TASKS / "demo_aime.yaml"), version=1.0)
    n_docs = len((TASKS / "aime_demo.jsonl").read_text().splitlines())
    assert len(ds["test"]) == n_docs and ds["test"][0]["id"] == "demo-aime-0"
    ds = U.load_jsonl(data_file="gpqa_demo.jsonl")  # no config_source: next to utils.py
    assert ds["test"][0]["answer"] in "ABCD"
