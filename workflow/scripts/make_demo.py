#!/usr/bin/env python
"""Build the offline demo: an s1K-1.1-shaped table, a Qwen-style tokenizer, tiny Qwen2 models.

Nothing here touches the network. The demo stands in for the paper's grid with a keyword
lookup (the design: the comments at the top of config/demo.yaml):
  * `data`      writes an s1K-1.1-shaped JSONL table (same 13 string columns) whose rows
                teach keyword -> answer in R1-style traces, the keywords tiered along the
                nested subsets that prepare_data.py `split` will draw.
  * `tasks`     writes the demo lm-eval tasks' documents (workflow/tasks/demo/*.jsonl):
                new questions about the same keywords.
  * `tokenizer` trains a byte-level BPE with Qwen2's pre-tokenizer rule (single digits)
                and Qwen's special tokens and chat template.
  * `model`     random-initialises a Qwen2ForCausalLM of a given width/depth.
  * `tiny`      data + tokenizer + model in one folder: the tiny model of tests and benchmarks.
  * `skyline`   the demo's stand-in for DeepSeek-R1-Distill: the same-size base model
                trained on the demo tasks' own prompts and answers, so that it scores
                clearly above base (an oracle; it exists only to make Recovered %
                meaningful in the demo).

Usage:
  python workflow/scripts/make_demo.py data --out results/demo/s1k.jsonl --rows 48 \
      --n-val 8 --subsets 16 8 --split-seed 0
  python workflow/scripts/make_demo.py tasks --out workflow/tasks/demo
  python workflow/scripts/make_demo.py tokenizer --corpus results/demo/s1k.jsonl --out results/demo/tokenizer
  python workflow/scripts/make_demo.py model --tokenizer results/demo/tokenizer --out DIR --hidden 128 \
      --layers 2 --heads 4 --context 2048
  python workflow/scripts/make_demo.py skyline --base DIR --tasks workflow/tasks/demo --out DIR2
  python workflow/scripts/make_demo.py tiny --out DIR     # DIR/base: the tests' and benchmarks' tiny model
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from elicit import repo_path
from elicit.atomic import atomic_dir, write_jsonl
from elicit.data import demo
from elicit.data.chat import IGNORE_INDEX
from elicit.train.weights import write_weights

# ----------------------------------------------------------------------------- the demo task
# Keyword lookup (see the comments at the top of config/demo.yaml). Every question, in the
# training table and in the two evaluation tasks, names one keyword; the answer is a fixed
# function of it. demo_aime: keyword -> an integer (all distinct, so that a model which
# does not know a keyword cannot hit its answer by echoing another one's); demo_gpqa:
# keyword -> a letter (the unseen tier's letters differ from the others'). Keywords are
# grouped in tiers; tier t is taught only by training rows of the t-th smallest subset
# that are not in a smaller one, the last tier only by rows outside every full-finetuning
# subset (the LoRA, trained on every row, sees it).
AIME_TIERS = [{"amber": 7, "cobalt": 4}, {"ivory": 3, "jade": 8}, {"onyx": 2, "coral": 5}]
GPQA_TIERS = [{"falcon": "A"}, {"otter": "B"}, {"heron": "C", "lynx": "D"}]
AIME_KEY = {k: v for tier in AIME_TIERS for k, v in tier.items()}
GPQA_KEY = {k: v for tier in GPQA_TIERS for k, v in tier.items()}
N_AIME_DOCS_PER_KEY, N_GPQA_DOCS_PER_KEY = 2, 3

# One question generator for the training rows and the evaluation documents: an object,
# a marker before the keyword, a clause with numbers, a request. Training row k about a
# keyword uses template k (fixed parts and numbers), so every template appears with every
# keyword of a tier and nothing in a question but its keyword tells the answer (a row
# number or row-specific numbers would let a tiny model memorise rows instead of reading
# the keyword). Evaluation documents draw fresh combinations and numbers: questions never
# seen in training, in the same style.
MARKERS = ["stamped", "tagged", "marked", "labelled", "painted", "engraved"]
AIME_OBJECTS = ["crate", "vault", "locker", "parcel", "barrel", "drawer", "lamp", "coin"]
AIME_CLAUSES = ["holds {a} boxes of {b} bolts", "was opened {a} times in {b} days",
                "stands on floor {a} next to {b} others", "weighs {a} kg and cost {b} coins",
                "was moved {a} times in {b} weeks", "sits {a} m from {b} trees"]
AIME_ASKS = ["What is its code? Give the final answer as an integer.",
             "Find the code of the {obj}. The answer is an integer.",
             "What code does the {obj} carry? Answer with an integer."]
GPQA_OBJECTS = ["feather", "bone", "tooth", "shell", "egg", "scale", "claw", "specimen"]
GPQA_CLAUSES = ["was found {a} m from the harbour", "weighs {b} g", "lay {a} cm under the north field",
                "came from {b} m deep", "was kept in jar {a}", "is {a} mm long and {b} mm wide"]
GPQA_ASKS = ["Which choice fits it?", "Which choice classifies it?", "Which choice describes the {obj}?"]
FILLER = ["copper", "maple", "granite", "willow", "pepper", "cedar", "marble", "thistle",
          "saffron", "basalt", "juniper", "pewter"]


def _answer_text(kind: str, ans) -> tuple[str, str]:
    """(how the trace names the answer, the attempt) for one task kind."""
    if kind == "aime":
        return str(ans), f"The answer is $\\boxed{{{ans}}}$."
    return f"({ans})", f"The answer is ({ans})."


def trace_and_attempt(kind: str, keyword: str) -> tuple[str, str]:
    """The R1-style reasoning and final attempt for a keyword: the same in every row."""
    ans = AIME_KEY[keyword] if kind == "aime" else GPQA_KEY[keyword]
    named, attempt = _answer_text(kind, ans)
    return f"The key word is {keyword}.\nI recall that {keyword} goes with {named}.", attempt


def question(kind: str, keyword: str, rng: random.Random) -> tuple[str, list[str] | None]:
    """(question text, choices or None) drawn from the generator."""
    objects, clauses, asks = ((AIME_OBJECTS, AIME_CLAUSES, AIME_ASKS) if kind == "aime"
                              else (GPQA_OBJECTS, GPQA_CLAUSES, GPQA_ASKS))
    obj, marker, clause, ask = (rng.choice(objects), rng.choice(MARKERS), rng.choice(clauses),
                                rng.choice(asks))
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    text = f"A {obj} {marker} {keyword} {clause.format(a=a, b=b)}. {ask.format(obj=obj)}"
    return (text, None) if kind == "aime" else (text, rng.sample(FILLER, 4))


def gpqa_prompt(text: str, choices: list[str]) -> str:
    """A GPQA-shaped multiple-choice prompt (gpqa_diamond_cot_zeroshot's layout)."""
    opts = "\n".join(f"({L}) {w}" for L, w in zip("ABCD", choices))
    return f"What is the correct answer to this question: {text}\nChoices:\n{opts}\nLet's think step by step:"


def train_question(kind: str, keyword: str, k: int) -> str:
    """The k-th training question about `keyword`: template k, the same for every keyword.
    Science rows are laid out like the GPQA prompt (as GPQA-derived s1K rows would be)."""
    text, choices = question(kind, keyword, random.Random(f"{kind}-template-{k}"))
    return text if choices is None else gpqa_prompt(text, choices)


def tiers_of_rows(n: int, n_val: int, subsets: list[int], split_seed: int) -> list[int | None]:
    """The keyword tier of each row: t for rows that enter at the t-th smallest training
    subset, len(subsets) for rows in no subset, None for validation rows. Follows the
    permutation prepare_data.py split will draw (same function, same arguments). A table
    too small for that split (unit tests) gets no tiers: every row cycles every keyword."""
    from elicit.data.s1k import DataError, split_ids

    try:
        manifest = split_ids(n, n_val, subsets, split_seed)
    except DataError:
        return [-1] * n
    tier: list[int | None] = [len(subsets)] * n
    for i in manifest["validation"]:
        tier[i] = None
    for t, k in reversed(list(enumerate(sorted(subsets)))):
        for i in manifest["subsets"][str(k)]:
            tier[i] = t
    return tier


def demo_rows(n: int, n_val: int, subsets: list[int], split_seed: int) -> list[dict]:
    """Keyword-lookup questions with R1-style traces, shaped like s1K-1.1 rows.

    Rows alternate demo_aime-like (math) and demo_gpqa-like (science) within each tier.
    Validation rows ask about the first tier's keywords, which every training subset
    teaches: validation loss then tracks how well a model learnt the format and the lookup,
    not which keywords its subset lacks (that would make the loss rise as soon as a model
    is sure of what it knows, and the checkpoint selection stop at a half-trained model).
    A keyword's k-th training row uses template k and its validation rows templates 100+,
    so templates stay balanced across the keywords of a tier."""
    tiers = tiers_of_rows(n, n_val, list(subsets), split_seed)
    n_tiers = len(subsets) + 1
    seen: dict = {}
    uses: dict = {}
    rows = []
    for i, t in enumerate(tiers):
        j = seen[t] = seen.get(t, -1) + 1
        kind = "aime" if j % 2 == 0 else "gpqa"
        tiers_of_kind = AIME_TIERS if kind == "aime" else GPQA_TIERS
        last = len(tiers_of_kind) - 1
        if t == -1:  # no split (a table too small for it): every keyword in turn
            pool = [k for tier in tiers_of_kind for k in tier]
        elif t is None:  # validation: the first tier
            pool = list(tiers_of_kind[0])
        elif t < n_tiers - 1:  # rows that enter at the t-th smallest subset
            pool = list(tiers_of_kind[min(t, last)])
        else:  # rows in no subset: every tier no subset teaches
            pool = [k for tier in tiers_of_kind[min(t, last):] for k in tier]
        keyword = pool[(j // 2) % len(pool)]
        k = uses[keyword, t is None] = uses.get((keyword, t is None), -1) + 1
        q = train_question(kind, keyword, k + (100 if t is None else 0))
        trace, attempt = trace_and_attempt(kind, keyword)
        ans = AIME_KEY[keyword] if kind == "aime" else GPQA_KEY[keyword]
        rows.append({
            "solution": str(ans), "question": q, "cot_type": "math" if kind == "aime" else "science",
            "source_type": f"demo/keyword-{kind}", "metadata": json.dumps({"i": i, "keyword": keyword}),
            "gemini_thinking_trajectory": trace, "gemini_attempt": attempt,
            "deepseek_thinking_trajectory": trace, "deepseek_attempt": attempt,
            "gemini_grade": "Yes", "gemini_grade_reason": "matches", "deepseek_grade": "Yes",
            "deepseek_grade_reason": "matches",
        })
    return rows


def task_docs(seed: int = 1) -> dict[str, list[dict]]:
    """The evaluation documents: every keyword, fresh questions from the generator."""
    rng = random.Random(f"eval-{seed}")
    aime, gpqa = [], []
    for _ in range(N_AIME_DOCS_PER_KEY):
        for kw, ans in AIME_KEY.items():
            problem, _ = question("aime", kw, rng)
            aime.append({"id": f"demo-aime-{len(aime)}", "keyword": kw, "problem": problem, "answer": str(ans)})
    for _ in range(N_GPQA_DOCS_PER_KEY):
        for kw, letter in GPQA_KEY.items():
            q, choices = question("gpqa", kw, rng)
            gpqa.append({"id": f"demo-gpqa-{len(gpqa)}", "keyword": kw, "Question": q, "choices": choices,
                         "prompt": gpqa_prompt(q, choices), "answer": letter})
    return {"aime_demo.jsonl": aime, "gpqa_demo.jsonl": gpqa}


REASONING_WORDS = ["so", "then", "check", "again", "wait", "the", "key", "word", "recall", "goes", "with",
                   "maybe", "consider", "case", "hence", "note", "that", "thus", "first", "next"]


def padded_trace(trace: str, words: int, i: int) -> str:
    """`trace` preceded by `words` filler words of reasoning (data.demo_trace_words, gpu_smoke):
    traces of real length (thousands of tokens) with the same answer at the end."""
    if words <= 0:
        return trace
    rng = random.Random(f"trace-{i}")
    filler = " ".join(rng.choice(REASONING_WORDS) for _ in range(words))
    return f"{filler}\n{trace}"


def cmd_data(args) -> None:
    rows = demo_rows(args.rows, args.n_val, args.subsets, args.split_seed)
    for i, r in enumerate(rows):
        for k in ("gemini_thinking_trajectory", "deepseek_thinking_trajectory"):
            r[k] = padded_trace(r[k], args.trace_words, i)
    write_jsonl(args.out, rows)


def cmd_tasks(args) -> None:
    for name, docs in task_docs().items():
        write_jsonl(Path(args.out) / name, docs)


def _corpus(paths: list[str]) -> list[str]:
    texts = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        for f in files:
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise SystemExit(f"{f}: line {n} is not valid JSON ({e}): a truncated or damaged file")
                texts.extend(str(v) for v in row.values())
    return texts


def cmd_tokenizer(args) -> None:
    fast = demo.train_tokenizer(_corpus([repo_path(c) for c in args.corpus]), args.vocab_size)
    with atomic_dir(args.out) as tmp:
        fast.save_pretrained(tmp)


def cmd_model(args) -> None:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    if args.arch:  # a shipped architecture (gpu_smoke): built where it runs fastest, saved in bf16
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = demo.random_model(tok, context=args.context, seed=args.seed, device=device,
                                  arch=demo.architecture_file(args.arch)).to("cpu", torch.bfloat16)
    elif None in (args.hidden, args.layers, args.heads):
        raise SystemExit("make_demo.py model: give --arch FILE or all of --hidden, --layers, --heads")
    else:
        model = demo.random_model(tok, args.hidden, args.layers, args.heads, args.context, args.init_range,
                                  args.seed)
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_weights(tmp)  # sizes and sha256, checked at plan time and before a job loads it


TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks" / "demo"


def cmd_tiny(args) -> None:
    """A tiny base model for tests and benchmarks, in one folder: <out>/s1k.jsonl (16 rows), tok/
    (trained on them and the demo tasks' text) and base/ (64 wide, 2 layers, 4 heads)."""
    out = Path(args.out)
    main(["data", "--out", str(out / "s1k.jsonl"), "--rows", "16", "--n-val", "8", "--subsets", "16", "8",
          "--split-seed", "0"])
    main(["tokenizer", "--corpus", str(out / "s1k.jsonl"), str(TASKS_DIR), "--out", str(out / "tok")])
    main(["model", "--tokenizer", str(out / "tok"), "--out", str(out / "base"), "--hidden", "64", "--layers", "2",
          "--heads", "4", "--context", "2048"])


def task_answers(tasks_dir: str) -> list[tuple[str, str]]:
    """(prompt, target) pairs of the demo tasks, used to build the oracle skyline: the
    evaluation prompts themselves, answered as the training traces answer (r1 format)."""
    pairs = []
    for name, kind, field in (("aime_demo.jsonl", "aime", "problem"), ("gpqa_demo.jsonl", "gpqa", "prompt")):
        for line in (Path(tasks_dir) / name).read_text().splitlines():
            d = json.loads(line)
            trace, attempt = trace_and_attempt(kind, d["keyword"])
            pairs.append((d[field], f"<think>\n{trace}\n</think>\n\n{attempt}"))
    return pairs


def cmd_skyline(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.steps == 0:  # models.<size>.demo.skyline_steps 0 (gpu_smoke): the base model's weights, as is
        import shutil

        with atomic_dir(args.out) as tmp:
            shutil.copytree(args.base, tmp, dirs_exist_ok=True)
            write_weights(tmp)
        return
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base)
    batch = []
    for prompt, target in task_answers(repo_path(args.tasks)):
        head = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        p_ids = tok(head, add_special_tokens=False)["input_ids"]
        t_ids = tok(target + "<|im_end|>", add_special_tokens=False)["input_ids"]
        batch.append((p_ids + t_ids, [IGNORE_INDEX] * len(p_ids) + t_ids))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    for step in range(args.steps):
        total = 0.0
        for ids, labels in batch:
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            out.loss.backward()
            total += out.loss.item()
        opt.step()
        opt.zero_grad()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"skyline step {step}: mean loss {total / len(batch):.4f}", flush=True)
    model.eval()
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_weights(tmp)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data", help="write an s1K-1.1-shaped demo table")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, required=True, help="data.expected_rows")
    p.add_argument("--n-val", type=int, required=True, help="data.n_val (keyword tiers follow the split)")
    p.add_argument("--subsets", type=int, nargs="+", required=True, help="data.subsets")
    p.add_argument("--split-seed", type=int, required=True, help="data.split_seed")
    p.add_argument("--trace-words", type=int, default=0, help="data.demo_trace_words: filler words per trace")
    p = sub.add_parser("tasks", help="write the demo tasks' JSONL (workflow/tasks/demo/*.jsonl)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("tokenizer", help="train the demo BPE tokenizer")
    p.add_argument("--corpus", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, default=demo.VOCAB_SIZE)
    p = sub.add_parser("model", help="random-init a tiny Qwen2 model")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--arch", help="models.<size>.demo.arch: a shipped architecture file (instead of the three below)")
    p.add_argument("--hidden", type=int, help="models.<size>.demo.hidden")
    p.add_argument("--layers", type=int, help="models.<size>.demo.layers")
    p.add_argument("--heads", type=int, help="models.<size>.demo.heads")
    p.add_argument("--context", type=int, required=True, help="models.<size>.context")
    p.add_argument("--init-range", type=float, default=demo.INIT_RANGE, help="std of the random initial weights")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("tiny", help="data + tokenizer + a tiny base model in one folder (tests, benchmarks)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("skyline", help="train the oracle skyline from a base model")
    p.add_argument("--base", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=40, help="models.<size>.demo.skyline_steps (0: a copy of the base)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    commands = {"data": cmd_data, "tasks": cmd_tasks, "tokenizer": cmd_tokenizer, "model": cmd_model,
                "tiny": cmd_tiny, "skyline": cmd_skyline}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
