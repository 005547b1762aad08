"""A training run's folder layout is stated once, in elicit/grid.py: no other step program or module
spells its names (metrics.jsonl, checkpoints/, step-<N>, data.json) as string literals,
so a change of the layout cannot leave a reader (integrity, aggregate, select_checkpoint) behind."""
import ast

from tests.conftest import ROOT

SCRIPTS = ROOT / "workflow" / "scripts"
NAMES = ("metrics.jsonl", "checkpoints", "data.json")  # (work, resume: words used otherwise too)


def _literals(path):
    """String constants of a module's code (docstrings and f-string text aside: prose may name files)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    fstr = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs | fstr]


def test_only_grid_spells_the_run_layout():
    spelled = [f"{p.relative_to(SCRIPTS)}:{line}: {text!r}"
               for p in sorted(SCRIPTS.glob("**/*.py")) if p.name != "grid.py"
               for line, text in _literals(p)
               if text.strip("/") in NAMES or "step-*" in text or text.endswith(("/metrics.jsonl", "/checkpoints"))]
    assert spelled == []
