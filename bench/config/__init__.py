"""Suite configuration: TOML (tomllib) -> frozen dataclasses, validated before any work starts.

Every key is checked: an unknown key, a wrong type, an unknown method, recipe or dataset is a
DiffbenchError naming the key and the file.
"""
import tomllib
from pathlib import Path

from bench.config.parse import as_table, parse_suite
from bench.config.spec import SUITE_DIRS, CellSpec, ModelSpec, SuiteConfig
from bench.plugins import load_plugins
from methods.errors import DiffbenchError
from methods.registry import did_you_mean, typed_like, validate_name

__all__ = ["CellSpec", "ModelSpec", "SuiteConfig", "find_suite", "load_suite", "suite_names"]

def suite_names() -> list[str]:
    """The suites `diffbench run NAME` finds, from every suites folder."""
    return sorted({p.stem for d in SUITE_DIRS if d.is_dir() for p in d.glob("*.toml")})


def find_suite(spec: str) -> Path:
    """A path to a TOML file, or a suite name looked up in ./suites then the repository's."""
    path = Path(spec)
    if path.suffix == ".toml" or "/" in spec or "\\" in spec:
        if not path.is_file():
            raise DiffbenchError(f"suite file {spec!r} does not exist: check the path")
        return path
    validate_name(spec, "suite name")
    for directory in SUITE_DIRS:
        if (directory / f"{spec}.toml").is_file():
            return directory / f"{spec}.toml"
    known = suite_names()
    raise DiffbenchError(f"unknown suite {spec!r}{did_you_mean(spec, known)}; valid names: {', '.join(known) or '(none)'} "
                         "(or give a path to a .toml file)")


def load_suite(spec: str, inception_weights: str | None = None, plugins=()) -> SuiteConfig:
    """The validated suite; `inception_weights` (from the command line) overrides its key and
    `plugins` (from the command line, relative to the working directory) load before the
    suite's own, all before anything is validated."""
    path = find_suite(spec)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DiffbenchError(f"{where}: malformed TOML ({err}): fix the file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DiffbenchError(f"{where}: cannot read suite file ({err})") from None
    if inception_weights:
        data.setdefault("suite", {})["inception_weights"] = str(Path(inception_weights).resolve())
    load_suite_plugins(data, path, plugins)
    return parse_suite(data, path)


def load_suite_plugins(data: dict, path: Path, extra=()) -> None:
    written = as_table(data.get("suite", {}), "[suite]", str(path)).get("plugins", [])
    written = typed_like(written, (), f"{path}: [suite].plugins", str)
    load_plugins(extra)
    load_plugins(written, base=path.parent)

