"""The package's shape: scripts over a package that never imports them, no import cycle, and scripts that load
no TensorFlow (nor matplotlib) before their input checks."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in ROOT.glob("*.py"))
MODULES = sorted(p.stem for p in (ROOT / "brainmri").glob("*.py") if p.stem != "__init__")


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The brainmri modules (relative or brainmri.x) and the other top-level modules that the file's import
    statements name, function-level imports too."""
    package, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
        if isinstance(node, ast.Import):
            package |= {n.split(".")[1] for n in names if n.startswith("brainmri.")}
            other |= {n.split(".")[0] for n in names if not n.startswith("brainmri")}
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("brainmri")):
            module = (node.module or "").removeprefix("brainmri").lstrip(".")
            package |= {module.split(".")[0]} if module else set(names)
        elif isinstance(node, ast.ImportFrom):
            other.add(node.module.split(".")[0])
    return package, other


def test_the_package_never_imports_a_script_and_no_script_imports_another():
    for module in MODULES:
        assert not _imports(ROOT / "brainmri" / f"{module}.py")[1] & set(SCRIPTS), module
    for script in SCRIPTS:
        assert not _imports(ROOT / f"{script}.py")[1] & (set(SCRIPTS) - {script}), script


def test_package_modules_import_each_other_without_a_cycle():
    graph = {m: _imports(ROOT / "brainmri" / f"{m}.py")[0] & set(MODULES) for m in MODULES}
    done, path = set(), []

    def visit(m):
        assert m not in path, " -> ".join(path[path.index(m):] + [m])
        if m in done:
            return
        path.append(m)
        for d in sorted(graph[m]):
            visit(d)
        path.pop()
        done.add(m)

    for m in MODULES:
        visit(m)


def test_scripts_load_no_tensorflow_or_matplotlib_when_imported():
    code = (f"import sys; import {', '.join(SCRIPTS)}; "
            "print(sorted({'tensorflow', 'keras', 'jax', 'torch', 'matplotlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
