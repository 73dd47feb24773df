"""Plugins: Python files or modules that register methods, objectives, recipes, datasets,
extractors or metrics through the same public functions the built-ins use.

A suite names them (`[suite] plugins = ["my_pkg.samplers", "plugins/dpm.py"]`, files relative to
the suite file), the command line adds more (`--plugin`), and installed packages declare them in
the `diffbench.plugins` entry-point group (loaded whenever registries are consulted). Everything
a plugin registers remembers its origin and the sha256 of its source; a method's version carries
that hash, so editing a plugin re-runs its cells.

Loading is all or nothing: a plugin that fails to import, or registers a name already taken,
leaves no entry behind and is a one-line error (exit 2) naming it.
"""
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any

from methods.errors import DiffbenchError
from methods.registry import NameTaken, Origin, Registry, registering_from

ENTRY_POINT_GROUP = "diffbench.plugins"
_loaded: dict[tuple[str, str], Origin] = {}   # (kind, name) -> the origin loaded now


def registries() -> list[Registry]:
    """Every registry a plugin may add to."""
    from bench.data.datasets import DATASETS
    from bench.models.recipes import RECIPES
    from bench.quality.metrics import EXTRACTORS, METRICS
    from methods import METHODS, OBJECTIVES
    return [METHODS, OBJECTIVES, RECIPES, DATASETS, EXTRACTORS, METRICS]


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def resolve_spec(spec: str, base: Path | None = None) -> str:
    """A plugin file as an absolute path (relative ones are relative to `base`, the suite's
    folder, else the working directory); a module name as it is."""
    if not isinstance(spec, str) or not spec.strip():
        raise DiffbenchError(f"plugin {spec!r}: give a module name or a path to a .py file")
    if not is_file_spec(spec):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if not path.is_file():
        raise DiffbenchError(f"plugin file {spec!r} does not exist ({path}): check the path "
                             "(relative paths in a suite are relative to the suite file)")
    return str(path.resolve())


def source_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def module_sources(name: str) -> list[Path]:
    """The source files of an importable module: a package's every .py file, else its file."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"No module named {name!r}")
    if spec.submodule_search_locations:
        return [p for location in spec.submodule_search_locations for p in Path(location).rglob("*.py")]
    return [Path(spec.origin)]


def load_plugin(spec: str, base: Path | None = None, kind: str | None = None) -> Origin:
    """Load one plugin (a module name or a .py file) unless this exact source is loaded already;
    a changed source replaces what the older one registered."""
    resolved = resolve_spec(spec, base)
    kind = kind or ("file" if is_file_spec(spec) else "module")
    try:
        paths = [Path(resolved)] if kind == "file" else module_sources(resolved)
        origin = Origin(kind, resolved, source_sha256(paths))
    except (ImportError, OSError, ValueError) as err:
        raise DiffbenchError(f"plugin {spec!r} cannot be imported ({type(err).__name__}: {err}): "
                             "install it or fix the name") from None
    previous = _loaded.get((kind, resolved))
    if previous == origin:
        return origin
    if previous is not None:
        unload(previous)
    registries()   # the built-ins register first, as built-ins, not as part of the plugin
    with registering_from(origin):
        try:
            _execute(origin)
        except BaseException as err:
            unload(origin)
            raise plugin_error(f"plugin {spec!r}", err) from None
    _loaded[(kind, resolved)] = origin
    return origin


def plugin_error(what: str, err: BaseException) -> BaseException:
    """The one-line error for a plugin that failed while loading."""
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return err
    if isinstance(err, NameTaken):
        return DiffbenchError(f"{what}: {err}: rename it in the plugin")
    if isinstance(err, DiffbenchError):
        return DiffbenchError(f"{what}: {err}")
    first_line = (str(err).splitlines() or [""])[0]
    return DiffbenchError(f"{what} failed to import ({type(err).__name__}: {first_line}): fix it "
                          "or remove it")


def file_module_name(origin: Origin) -> str:
    return f"diffbench_plugin_{Path(origin.name).stem}_{origin.source_sha256[:12]}"


def _execute(origin: Origin) -> None:
    if origin.kind == "file":
        name = file_module_name(origin)
        module_spec = importlib.util.spec_from_file_location(name, origin.name)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module       # dataclasses and pickling look their module up here
        module_spec.loader.exec_module(module)
    elif origin.name in sys.modules:
        importlib.reload(sys.modules[origin.name])
    else:
        importlib.import_module(origin.name)


def unload(origin: Origin) -> None:
    """Remove everything `origin` registered."""
    for registry in registries():
        for name in registry.names_from(origin):
            registry.unregister(name)
    _loaded.pop((origin.kind, origin.name), None)
    if origin.kind == "file":
        sys.modules.pop(file_module_name(origin), None)


def load_entry_points() -> list[Origin]:
    """The plugins installed packages declare in the `diffbench.plugins` entry-point group;
    each names a module (or a module:function, called with no arguments)."""
    origins = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = load_plugin(entry.module, kind="entry point")
        if entry.attr and (origin, entry.attr) not in _called:
            with registering_from(origin):
                try:
                    entry.load()()
                except BaseException as err:
                    unload(origin)
                    raise plugin_error(f"plugin entry point {entry.name!r} ({entry.value})", err) from None
            _called.add((origin, entry.attr))
        origins.append(origin)
    return origins


def load_factory(spec: str, base: Path, where: str) -> tuple[Any, str]:
    """The factory function of "module:function" or "file.py:function", and its source's sha256."""
    module_name, _, function = spec.rpartition(":")
    if not module_name or not function:
        raise DiffbenchError(f"{where}: factory must be \"module:function\" or \"file.py:function\", "
                             f"got {spec!r}")
    if module_name.endswith(".py") or "/" in module_name:
        origin = load_plugin(module_name, base)
        module = sys.modules[file_module_name(origin)]
        source = origin.source_sha256
    else:
        try:
            module = importlib.import_module(module_name)
            source = source_sha256(module_sources(module_name))
        except Exception as err:
            raise DiffbenchError(f"{where}: factory module {module_name!r} cannot be imported "
                                 f"({type(err).__name__}: {err})") from None
    if not callable(getattr(module, function, None)):
        raise DiffbenchError(f"{where}: {module_name!r} has no function {function!r}")
    return getattr(module, function), source


_called: set[tuple[Origin, str]] = set()


def load_plugins(specs, base: Path | None = None) -> list[Origin]:
    """Entry-point plugins, then `specs` in order (files relative to `base`)."""
    return load_entry_points() + [load_plugin(spec, base) for spec in specs]


def loaded_sources() -> dict[str, str]:
    """{plugin: source sha256} of every plugin loaded in this process."""
    return {f"{origin.kind} {origin.name}": origin.source_sha256 for origin in _loaded.values()}
