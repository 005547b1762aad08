"""The chat template's thinking switch (Qwen3's enable_thinking) as a labelled choice: eval.enable_thinking
(null: no flag, the paper's command lines unchanged), the Qwen3 config's non-thinking variant, and the
switch reaching the chat template that renders the prompts."""
from pathlib import Path

import yaml

from elicit import steps, variants
from elicit.checks.config import check
from elicit.eval import cell

ROOT = Path(__file__).resolve().parents[1]
SWITCH = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n"
          "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def qwen3():
    return check(yaml.safe_load((ROOT / "config" / "qwen3.yaml").read_text()))


def test_default_adds_no_flag_and_the_variant_switches_thinking_off():
    cfg = qwen3()
    assert cfg["eval"]["enable_thinking"] is None
    assert "--enable-thinking" not in steps.argv(steps.eval_args(cfg, "4B", ["aime24"], [0]))
    flags = steps.argv(steps.eval_args(variants.apply(cfg, "no-think"), "4B", ["aime24"], [0]))
    assert flags[flags.index("--enable-thinking") + 1] == "false"
    paper = check(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    assert paper["eval"]["enable_thinking"] is None and not paper.get("variants")


def test_the_switch_reaches_the_chat_template(demo_model, tmp_path):
    import eval_cell
    from tests.conftest import eval_settings

    rendered = {}
    for flag in ([], ["--enable-thinking", "false"]):
        args = cell.cells(eval_cell.build_parser().parse_args(
            [*eval_settings(), "--model", str(demo_model), "--task", "t", "--seed", "0", "--max-gen-toks", "8",
             "--out", str(tmp_path / "o.json"), *flag]))[0]
        margs = cell.model_args(args)
        assert margs.get("chat_template_args") == ({"enable_thinking": False} if flag else None)
        lm = cell.make_lm(args, "cpu")
        lm.tokenizer.chat_template = SWITCH
        rendered[bool(flag)] = lm.apply_chat_template([{"role": "user", "content": "7 + 5?"}])
    assert rendered[True] == rendered[False] + "<think>\n\n</think>\n\n"
