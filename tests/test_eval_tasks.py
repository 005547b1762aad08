"""The paper's reasoning task variants (workflow/tasks/paper/): YAML and scoring.

The upstream datasets cannot be downloaded here, so this checks that lm-eval indexes and
parses the YAMLs (functions resolved), that they keep upstream's data and prompts, and
scores crafted reasoning outputs in R1 (<think>...</think>) and s1 (think/answer, with the
special tokens stripped by decoding) formats.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from elicit.eval import cell
from tests.conftest import ROOT, eval_settings

PAPER = ROOT / "workflow" / "tasks" / "paper"
VARIANTS = {"aime24_reasoning": "aime/aime24.yaml", "aime25_reasoning": "aime/aime25.yaml",
            "gpqa_diamond_cot_zeroshot_reasoning": "gpqa/cot_zeroshot/gpqa_diamond_cot_zeroshot.yaml"}


def _utils():
    spec = importlib.util.spec_from_file_location("paper_task_utils", PAPER / "utils.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


U = _utils()


def _upstream(rel: str) -> dict:
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.tasks.__file__).parent / rel, resolve_func=False, recursive=True)


def test_task_manager_indexes_variants():
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=[str(PAPER)], include_defaults=False)
    assert set(VARIANTS) <= set(tm.all_tasks)


@pytest.mark.parametrize("task,upstream", VARIANTS.items())
def test_yaml_keeps_upstream_data_and_prompt(task, upstream):
    from lm_eval.api.task import TaskConfig
    from lm_eval.tasks._yaml_loader import load_yaml

    ours = load_yaml(PAPER / f"{task}.yaml", resolve_func=True, recursive=True)
    up = _upstream(upstream)
    assert ours["task"] == task
    for key in ("dataset_path", "dataset_name", "test_split", "doc_to_text", "doc_to_target", "output_type",
                "num_fewshot"):
        assert ours.get(key) == up.get(key), key
    until = ours["generation_kwargs"]["until"]
    assert "Question:" not in until and "<|im_end|>" in until
    assert "max_gen_toks" not in ours["generation_kwargs"]  # eval_cell passes eval.max_gen_toks
    assert "filter_list" not in ours  # scored by process_results on the raw response
    assert callable(ours["process_results"])
    TaskConfig(**{k: v for k, v in ours.items()})  # lm-eval accepts the config
    if "gpqa" in task:
        assert callable(ours["process_docs"])


def test_gpqa_process_docs_is_upstream_shuffle():
    import random

    import datasets

    ds = datasets.Dataset.from_list([{"Question": "q", "Correct Answer": "right", "Incorrect Answer 1": "w1",
                                      "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3"}] * 4)
    random.seed(0)
    docs = list(U.process_docs_gpqa(ds))
    for d in docs:
        letter = d["answer"].strip("()")
        assert d["choice" + str("ABCD".index(letter) + 1)] == "right"
        assert U.process_results_gpqa(d, [f"<think>\n(A)? (B)?\n</think>\n\nThe answer is ({letter})"]) == \
            {"exact_match": 1}


R1_AIME = ("<think>\nLet me compute. Question: is it \\boxed{12}? No.\nSo 49*8 = 392.\n</think>\n\n"
           "The answer is $\\boxed{392}$.")
S1_AIME = ("think\nQuestion: what is (30+19)*8? First try \\boxed{390}... no, 392.\n"
           "answer\nAnswer: \\boxed{392}")
R1_GPQA = "<think>\nOption (A) is wrong, (C) maybe.\n</think>\n\nThe correct answer is (B)."
S1_GPQA = "think\n(A) no; (D) no; (C)?\nanswer\nAnswer: (B) carbon dioxide"


@pytest.mark.parametrize("text", [R1_AIME, S1_AIME])
def test_aime_reasoning_outputs(text):
    assert U.process_results_aime({"Answer": 392}, [text]) == {"exact_match": 1}   # aime24 columns
    assert U.process_results_aime({"answer": "392"}, [text]) == {"exact_match": 1}  # aime25 columns
    assert U.process_results_aime({"answer": "390"}, [text]) == {"exact_match": 0}  # boxed in thinking only


@pytest.mark.parametrize("text", [R1_GPQA, S1_GPQA])
def test_gpqa_reasoning_outputs(text):
    assert U.process_results_gpqa({"answer": "(B)"}, [text]) == {"exact_match": 1}
    assert U.process_results_gpqa({"answer": "(C)"}, [text]) == {"exact_match": 0}


def test_truncated_trace_scores_whole_text():
    # thinking cut off at max_gen_toks: no think end, the last box in the whole text counts
    assert U.extract_aime("<think>\n... so \\boxed{7} and then") == 7
    assert U.extract_gpqa("think\nmaybe (D), cut off") == "D"


LOCAL_UTILS = '''
import importlib.util
_spec = importlib.util.spec_from_file_location("_demo_utils_local", {utils!r})
_demo = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(_demo)
load_jsonl = _demo.load_jsonl
'''


def test_aime24_variant_end_to_end_on_local_rows(demo_model, tmp_path):
    """aime24_reasoning via `include:`, its hub dataset swapped for local rows of the same
    columns (Problem/Answer), through eval_cell with the tiny model: prompt is upstream's,
    the scoring is ours, no "Question:" stop."""
    import json

    import eval_cell

    base = demo_model  # the session's demo base model (conftest), read only
    tdir = tmp_path / "tasks"
    tdir.mkdir()
    (tdir / "rows.jsonl").write_text("".join(json.dumps({"ID": f"2024-I-{i}", "Problem": f"Find {i} + 1.",
                                                         "Answer": i + 1}) + "\n" for i in range(3)))
    (tdir / "utils.py").write_text(LOCAL_UTILS.format(utils=str(ROOT / "workflow" / "tasks" / "demo" / "utils.py")))
    (tdir / "local.yaml").write_text(
        f"include: {PAPER / 'aime24_reasoning.yaml'}\ntask: aime24_reasoning_local\n"
        "custom_dataset: !function utils.load_jsonl\ndataset_kwargs:\n  data_file: rows.jsonl\n  split: train\n"
        "dataset_path: null\n")  # process_results: the paper YAML's, resolved next to it
    out = tmp_path / "r.json"
    rec = eval_cell.main([*eval_settings(), "--model", str(base), "--task", "aime24_reasoning_local", "--include-path", str(tdir),
                          "--seed", "1", "--max-gen-toks", "8", "--limit", "3", "--device", "cpu",
                          "--dtype", "float32", "--max-length", "512", "--out", str(out)])
    samples = [json.loads(l) for l in cell.samples_path(out).read_text().splitlines()]
    assert rec["primary_metric"] == "exact_match,none" and rec["n_samples"] == 3
    assert "Question:" not in rec["generation"]["until"]
    assert "Question: Find 0 + 1.\nAnswer:" in samples[0]["prompt"]
    assert [str(s["target"]) for s in samples] == ["1", "2", "3"]


@pytest.mark.parametrize("tasks,include", [
    (["aime24", "gpqa_diamond_cot_zeroshot"], None),
    (["gpqa_diamond_cot_zeroshot_reasoning"], "workflow/tasks/paper"),
])
@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_fetch_tasks_names_the_gated_task_without_a_token(tasks, include, monkeypatch):
    """fetch_tasks (submit host) fails before any download when GPQA's token is missing,
    for upstream GPQA and for our reasoning variant alike; no token, no network needed."""
    import fetch_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(SystemExit) as e:
        fetch_hub.fetch_tasks(tasks, str(ROOT / include) if include else None)
    assert f"{tasks[-1]}: GPQA is gated" in str(e.value) and "HF_TOKEN" in str(e.value)


def test_fetch_tasks_loads_local_tasks_offline(monkeypatch):
    import fetch_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    got = fetch_hub.fetch_tasks(["demo_aime", "demo_gpqa"], str(ROOT / "workflow" / "tasks" / "demo"))
    assert got["tasks"] == ["demo_aime", "demo_gpqa"] and got["token_used"] is False
    # local JSONL: no hub dataset, hence no commit to pin; the documents are counted
    assert got["datasets"]["demo_aime"]["dataset"] is None and got["datasets"]["demo_aime"]["n_docs"] > 0
    assert got["versions"]["lm-eval"] == "0.4.13"
