"""The dependency runs one way: `bench` (the harness) imports `methods` (the library), never the
reverse, so the method library can be read, and used, without the harness; and within `bench`
each room imports only the rooms below it (docs/architecture.md's room table, in the same order)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS_DIR = ROOT / "methods"
ROOMS = [  # lowest first: a module may import its own room and the rooms before it
    {"bench.paths", "bench.rows", "bench.store", "bench.merge", "bench.speed_regression"},
    {"bench.data"}, {"bench.models"}, {"bench.quality"}, {"bench.plugins", "bench.config", "bench.listing"},
    {"bench.run"}, {"bench.report"}, {"bench.audit"}, {"bench.cli", "bench.commands", "bench.__main__", "bench"}]


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


def room_of(module: str) -> int:
    for parts in range(module.count(".") + 1, 0, -1):
        prefix = ".".join(module.split(".")[:parts])
        for level, room in enumerate(ROOMS):
            if prefix in room:
                return level
    raise AssertionError(f"{module} is in no room of ROOMS: add it (and to docs/architecture.md's table)")


BENCH_MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                       for p in (ROOT / "bench").rglob("*.py"))


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_a_bench_module_imports_only_its_room_and_the_rooms_below(module):
    imported = {n for n in imported_modules(module_path(module)) if n.startswith("bench.")}
    upward = sorted(n for n in imported
                    if room_of(n) > room_of(module))
    assert not upward, f"{module} (room {room_of(module)}) imports {upward} from rooms above it"


def module_path(module: str) -> Path:
    path = ROOT / (module.replace(".", "/") + ".py")
    return path if path.is_file() else ROOT / module.replace(".", "/") / "__init__.py"


def bench_imports(module: str) -> set[str]:
    """The bench modules `module` imports, at its top or inside a function."""
    found = set()
    for name in imported_modules(module_path(module)):
        parts = name.split(".")
        owners = [".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in BENCH_MODULES]
        if owners and owners[0] != module:
            found.add(owners[0])
    return found


def test_no_import_cycle_among_bench_modules():
    """Not even through a function-local import: a cycle is a room that cannot be read alone."""
    graph = {module: bench_imports(module) for module in BENCH_MODULES}
    state: dict[str, str] = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                raise AssertionError(" -> ".join(trail[trail.index(target):] + [target]))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in BENCH_MODULES:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_a_bench_module_holds_one_idea_in_at_most_400_lines(module):
    lines = len(module_path(module).read_text().splitlines())
    assert lines <= 400, f"{module} has {lines} lines: split it into rooms of one idea each"
