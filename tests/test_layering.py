"""The dependency runs one way: `bench` (the harness) imports `methods` (the library), never the
reverse, so the method library can be read, and used, without the harness."""
import ast
from pathlib import Path

import pytest

METHODS_DIR = Path(__file__).resolve().parents[1] / "methods"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(METHODS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_method_module_imports_the_harness(path):
    harness = sorted(n for n in imported_modules(path) if n == "bench" or n.startswith("bench."))
    assert not harness, f"{path.name} imports {harness}"
