"""The library's layering (ARCHITECTURE.md): no module of elicit/ imports a step program, and the
stage packages import one another one way only (no cycle between packages, none between modules)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
PKG = SCRIPTS / "elicit"
STEPS = {p.stem for p in SCRIPTS.glob("*.py")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SCRIPTS).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, cli: bool = True) -> set[str]:
    """Every module an elicit file imports (top level or inside functions), absolute names; cli=False
    leaves out a module's `main` (its `python -m` entry point sits above every layer)."""
    out = set()
    tree = ast.parse(path.read_text())
    if not cli:
        tree.body = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name == "main")]
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
            out |= {f"{n.module}.{a.name}" for a in n.names}
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in imports(p, cli=False) if i in files and i != m} for m, p in files.items()}


ORDER = ["core", "data", "train", "plan", "eval", "report", "checks"]  # each imports only those before it


def package(m: str) -> str:
    parts = m.split(".")
    return parts[1] if len(parts) > 1 and (PKG / parts[1]).is_dir() else "core"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                found.append(path[path.index(m):] + [m] if m in path else [n, m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])
    return found


def test_no_library_module_imports_a_step_program():
    for p in sorted(PKG.rglob("*.py")):
        bad = {i.split(".")[0] for i in imports(p)} & STEPS
        assert not bad, f"{p.relative_to(ROOT)} imports the step program(s) {bad}"


def test_stage_packages_import_one_way():
    g = graph()
    packages: dict[str, set[str]] = {}
    for m, deps in g.items():
        packages.setdefault(package(m), set()).update(package(d) for d in deps if package(d) != package(m))
    assert set(packages) >= {"core", "data", "train", "eval", "report", "plan"}, packages
    assert not cycles(packages), f"stage packages import each other both ways: {cycles(packages)}"
    upward = {(a, b) for a, deps in packages.items() for b in deps if ORDER.index(b) > ORDER.index(a)}
    assert not upward, f"imports against the layer order {ORDER}: {upward}"
    assert not cycles(g), f"module import cycles: {cycles(g)}"


def test_a_cycle_would_be_seen():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert not cycles({"a": {"b"}, "b": {"c"}, "c": set()})


def modules_handed_over(path: Path) -> list[str]:
    """Calls in `path` that pass a module object (`sys.modules[...]`) as an argument."""
    return [ast.unparse(n) for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
            for a in [*n.args, *(k.value for k in n.keywords)]
            if isinstance(a, ast.Subscript) and ast.unparse(a.value) == "sys.modules"]


def test_no_module_object_is_handed_to_the_library():
    """The layering above sees imports only: a step program handing its own module to a library function (as
    eval_cell.py did to eval_pool.run_cells, issue 32) would let the library call it unseen."""
    for p in sorted([*SCRIPTS.glob("*.py"), *PKG.rglob("*.py")]):
        assert not modules_handed_over(p), f"{p.relative_to(ROOT)}: {modules_handed_over(p)}"
    g = graph()
    assert "elicit.eval.cell" in g["elicit.eval.eval_pool"]  # the pool's cells: an edge the test sees


def architecture_modules() -> dict[str, set[str]]:
    """ARCHITECTURE.md's module table: {package folder ('' = core): the modules it names}."""
    out, folder = {}, None
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or cells[0] == "package":
            continue
        if cells[0]:
            named = re.findall(r"`elicit/([a-z_]*)/?`", cells[0])
            folder = named[0] if named else None
        if folder is not None:
            out.setdefault(folder, set()).update(re.findall(r"`([a-z_0-9]+)`", cells[1]))
    return out


def test_architecture_names_every_module_of_the_tree():
    """ARCHITECTURE.md's table lists each library module in its own folder, and names none that is gone."""
    table = architecture_modules()
    tree = {}
    for p in PKG.rglob("*.py"):
        if p.stem != "__init__":
            tree.setdefault(p.parent.relative_to(PKG).as_posix().replace(".", ""), set()).add(p.stem)
    assert table == tree, {f: (tree.get(f, set()) ^ table.get(f, set())) for f in set(tree) | set(table)}
