"""Chat formatting and label masks with the REAL Qwen2.5 chat template (resources/), and the demo's.

The tokenizer here is a small byte-level BPE built offline with Qwen2's pre-tokenizer rule,
Qwen's special tokens and the verbatim Qwen2.5-Instruct chat template: the rendered text is
what the real tokenizer renders; only the vocabulary is smaller.
"""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elicit.data import chat
from elicit.data.chat import IGNORE_INDEX, THINK_MARKER, assistant_text, chat_text, encode_rows, split_text, summarize, tokenize_example
from tests.conftest import ROOT
from tests.helpers import build_tokenizer

DATA = ROOT / "tests" / "data"
ROWS = json.loads((DATA / "s1k_rows.json").read_text())
TEMPLATE = (ROOT / "resources" / "qwen2_5_chat_template.jinja").read_text()
SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def qwen():
    return build_tokenizer([str(v) for r in ROWS for v in r.values()])


def test_the_one_template_file_is_what_chat_and_the_demo_tokenizer_use(qwen):
    assert chat.QWEN25_CHAT_TEMPLATE == TEMPLATE == qwen.chat_template
    assert chat.QWEN_DEFAULT_SYSTEM in TEMPLATE


def test_no_tools_render_is_byte_identical(qwen):
    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    assert qwen.apply_chat_template(msgs, tokenize=False) == (
        SYSTEM + "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n")
    assert qwen.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True) == (
        SYSTEM + "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n")
    own = [{"role": "system", "content": "Be brief."}] + msgs
    assert qwen.apply_chat_template(own, tokenize=False).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ?")


def test_tools_branch(qwen):
    tool = {"type": "function", "function": {"name": "add", "description": "add two ints",
                                             "parameters": {"type": "object", "properties": {}}}}
    msgs = [{"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 1}}}]},
            {"role": "tool", "content": "2"}]
    text = qwen.apply_chat_template(msgs, tools=[tool], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                           "assistant.\n\n# Tools\n\nYou may call one or more functions")
    assert '\n<tools>\n{"type": "function", "function": {"name": "add"' in text
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 1}}\n'
            '</tool_call><|im_end|>\n') in text
    assert text.endswith("<|im_start|>user\n<tool_response>\n2\n</tool_response><|im_end|>\n"
                         "<|im_start|>assistant\n")


@pytest.mark.parametrize("i", [0, 1])
def test_s1_text_is_s1k_tokenized_text_byte_for_byte(qwen, i):
    expected = (DATA / f"s1k_row{i}_s1_text.txt").read_text(encoding="utf-8")
    assert chat_text(qwen, ROWS[i], "s1").encode("utf-8") == expected.encode("utf-8")


def test_r1_text(qwen):
    assert chat_text(qwen, ROWS[1], "r1") == (DATA / "s1k_row1_r1_text.txt").read_text(encoding="utf-8")


def test_s1_answer_prefix_rule():
    row = dict(ROWS[0], deepseek_attempt=" 42 ")
    assert assistant_text(row, "s1").endswith("\n<|im_start|>answer\nAnswer:  42")
    row = dict(ROWS[0], deepseek_attempt="Final Answer: 42\n")
    assert assistant_text(row, "s1").endswith("\n<|im_start|>answer\nFinal Answer: 42")
    with pytest.raises(ValueError, match="unknown data.format 'chatml'"):
        assistant_text(row, "chatml")


@pytest.fixture(scope="module")
def demo_tok(tmp_path_factory):
    import make_demo

    corpus = tmp_path_factory.mktemp("corpus") / "rows.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    make_demo.main(["tokenizer", "--corpus", str(corpus), "--out", str(out)])
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(out)


@pytest.mark.parametrize("which", ["qwen", "demo_tok"])
@pytest.mark.parametrize("style", ["r1", "s1"])
@pytest.mark.parametrize("i", [0, 1])
def test_label_mask(request, which, style, i):
    tok = request.getfixturevalue(which)
    row = ROWS[i]
    ids, labels = tokenize_example(tok, row, style)
    assert len(ids) == len(labels)
    n_prompt = next(j for j, t in enumerate(labels) if t != IGNORE_INDEX)
    assert all(t == IGNORE_INDEX for t in labels[:n_prompt])
    assert labels[n_prompt:] == ids[n_prompt:]  # everything after the prompt is supervised
    prompt, completion = split_text(tok, row, style)
    assert prompt == SYSTEM + f"<|im_start|>user\n{row['question']}<|im_end|>\n<|im_start|>assistant\n"
    # masked part = the generation prompt; supervised = think marker ... <|im_end|>
    assert tok.decode(ids[:n_prompt]) == prompt
    supervised = tok.decode(ids[n_prompt:])
    assert supervised.startswith(THINK_MARKER[style] + "\n")
    assert supervised == assistant_text(row, style) + "<|im_end|>"
    assert ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    # same ids as tokenizing the rendered text at once (no boundary artefact), less the final "\n"
    full = chat_text(tok, row, style)
    assert full.endswith("<|im_end|>\n")
    assert ids == tok(full[:-1], add_special_tokens=False)["input_ids"]


def test_s1_think_marker_is_control_token_plus_text(qwen):
    ids, labels = tokenize_example(qwen, ROWS[1], "s1")
    n_prompt = labels.index(next(t for t in labels if t != IGNORE_INDEX))
    assert ids[n_prompt] == qwen.convert_tokens_to_ids("<|im_start|>")


def test_encode_rows_length_policy(qwen):
    _, full = encode_rows(qwen, ROWS, "r1", 10**6)
    lens = [len(tokenize_example(qwen, r, "r1")[0]) for r in ROWS]
    assert full["tokens"] == summarize(lens) and full["too_long"] == 0 and full["kept"] == 2
    short, long_ = sorted(lens)
    cut = (short + long_) // 2  # only the longer row is over
    long_labels = tokenize_example(qwen, ROWS[lens.index(long_)], "r1")[1]
    assert cut > long_labels.count(IGNORE_INDEX)  # the cut leaves some of the answer
    ex, rep = encode_rows(qwen, ROWS, "r1", cut, "truncate", ids=[10, 11])
    assert (rep["too_long"], rep["truncated"], rep["dropped"], rep["kept"]) == (1, 1, 0, 2)
    assert rep["too_long_ids"] == [10 + lens.index(long_)]
    assert max(len(x) for x, _ in ex) == cut and all(len(x) == len(y) for x, y in ex)
    ex, rep = encode_rows(qwen, ROWS, "r1", cut, "drop")
    assert (rep["too_long"], rep["truncated"], rep["dropped"], rep["kept"]) == (1, 0, 1, 1)
    assert len(ex) == 1 and len(ex[0][0]) == short
    # truncating into the prompt would leave nothing to learn: dropped, and counted
    ex, rep = encode_rows(qwen, ROWS, "r1", 16, "truncate")
    assert rep["dropped"] == 2 and ex == []
    with pytest.raises(ValueError, match="on_too_long 'cut'"):
        encode_rows(qwen, ROWS, "r1", 16, "cut")


def test_summarize():
    assert summarize([]) == {"n": 0, "mean": 0.0, "sd": 0.0, "min": 0, "max": 0, "total": 0}
    s = summarize([1, 3])
    assert (s["mean"], s["sd"], s["max"], s["total"]) == (2.0, 1.0, 3, 4)


TEXT = st.text(alphabet=st.sampled_from(list("ab Z09 \n\t.,$\\{}()<>|/!?'\"-_:é—∑")), min_size=1, max_size=60).filter(
    lambda s: s.strip())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=TEXT, trace=TEXT, attempt=TEXT, style=st.sampled_from(["r1", "s1"]))
def test_label_mask_property(qwen, q, trace, attempt, style):
    row = dict(ROWS[0], question=q, deepseek_thinking_trajectory=trace, deepseek_attempt=attempt)
    ids, labels = tokenize_example(qwen, row, style)
    n_prompt = labels.count(IGNORE_INDEX)
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert qwen.decode(ids[n_prompt:]) == assistant_text(row, style) + "<|im_end|>"
    assert qwen.decode(ids[:n_prompt]).endswith("<|im_start|>assistant\n")
    assert ids == qwen(chat_text(qwen, row, style)[:-1], add_special_tokens=False)["input_ids"]


def test_a_configured_template_replaces_the_tokenizers_own(qwen, tmp_path):
    """models.<size>.chat_template (train.py --chat-template): the file renders the training text;
    '' keeps the tokenizer's own."""
    own = qwen.chat_template
    f = tmp_path / "plain.jinja"
    f.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    try:
        chat.use_template(qwen, "")
        assert qwen.chat_template == own and chat_text(qwen, ROWS[0]).startswith(SYSTEM)
        chat.use_template(qwen, str(f))
        text = chat_text(qwen, ROWS[0])
        assert text.startswith("<|im_start|>user\n") and SYSTEM not in text
        prompt, completion = split_text(qwen, ROWS[0])
        assert completion == assistant_text(ROWS[0]) + "<|im_end|>"
    finally:
        qwen.chat_template = own
