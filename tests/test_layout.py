"""The house's layout (issue 22): the top-level scripts sit on one library and never import each other, the library
never imports a script, and no library function takes the CLI's Namespace. Reference: the import statements and
function signatures as Python's own parser (ast) reads them from the files."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"train_sft", "train_grpo", "merge", "evaluate", "analyze", "experiment", "generate"}
LIBRARY = sorted(p for p in [*ROOT.glob("*.py"), *ROOT.glob("data/*.py"), *ROOT.glob("rewards/*.py"),
                             *ROOT.glob("kernels/*.py")] if p.stem not in SCRIPTS)


def imported(path: Path) -> set[str]:
    """The top-level modules `path` imports, anywhere in it (a function-local import counts)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_scripts_and_the_library_are_where_this_test_looks():
    assert all((ROOT / f"{script}.py").is_file() for script in SCRIPTS)
    assert {"files", "training", "benchmarks", "dist", "model", "cli"} <= {p.stem for p in LIBRARY}


def test_no_script_imports_another_and_the_library_imports_none():
    found = {f"{path.relative_to(ROOT)} imports {name}" for path in [ROOT / f"{s}.py" for s in SCRIPTS] + LIBRARY
             for name in imported(path) & SCRIPTS if name != path.stem}
    assert not found, sorted(found)


def test_no_library_function_takes_the_namespace():
    found = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(args)" for path in LIBRARY
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and any(a.arg == "args" for a in node.args.args + node.args.kwonlyargs)]
    assert not found, found
