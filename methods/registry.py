"""One small registry class (after lm-eval-harness): decorator registration, strict names; and
the checks every user-written name and number passes before it is used.

Every entry remembers where it came from (built-in, or the plugin that was loading when it was
registered), so listings can say so and a plugin's entries can carry its source hash.
"""
import contextlib
import contextvars
import dataclasses
import difflib
import math
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

from methods.errors import DiffbenchError

T = TypeVar("T")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
# A registered entry may carry a library prefix: "k-diffusion:dpmpp_2m", "diffusers:PNDMScheduler".
ENTRY_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*(:[A-Za-z0-9][A-Za-z0-9._-]*)?")


def did_you_mean(name: Any, valid) -> str:
    """" (did you mean 'x'?)" for the valid name closest to a mistyped one, else ""."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_name(name: str, what: str = "name") -> str:
    """Names become file names, so only `[a-z0-9][a-z0-9._-]*` is allowed (no '..', no '/')."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise DiffbenchError(
            f"invalid {what} {name!r}: use lowercase letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)")
    return name


def validate_entry_name(name: str, what: str) -> str:
    """A registry name: a file-safe name, optionally `library:Name` (never a file name)."""
    if not isinstance(name, str) or not ENTRY_PATTERN.fullmatch(name) or ".." in name:
        raise DiffbenchError(
            f"invalid {what} {name!r}: use lowercase letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit), optionally prefixed 'library:'")
    return name


def validate_number(value, what: str, low=None, high=None, integer: bool = False):
    """A finite number within [low, high] (None: unbounded), else a one-line DiffbenchError."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise DiffbenchError(f"{what} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise DiffbenchError(f"{what} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise DiffbenchError(f"{what} must be {bounds}, got {value!r}")
    return value


ITEM_NAMES = {str: "strings", int: "integers", float: "numbers"}


def typed_like(value, default, what: str, items: type | None = None):
    """`value` as the type of `default`, for values written in TOML (which has no tuples and
    writes 1 for 1.0): a list where a tuple is expected becomes a tuple (of `items` when given),
    an int where a float is expected becomes a float; any other mismatch is a one-line
    DiffbenchError. The one type rule of suite keys, model keys and hyper-parameters."""
    if isinstance(default, tuple):
        if not isinstance(value, list) or (items and not all(type(v) is items for v in value)):
            kind = f"a list of {ITEM_NAMES.get(items, items.__name__)}" if items else "a list"
            raise DiffbenchError(f"{what} must be {kind}, got {value!r}")
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise DiffbenchError(f"{what} must be {type(default).__name__}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a registered entry came from: "built-in", or a plugin ("file", "module" or
    "entry point") with its name and the sha256 of its source."""
    kind: str = "built-in"
    name: str = ""
    source_sha256: str = ""

    def __str__(self) -> str:
        return self.kind if not self.name else f"{self.kind} {self.name}"


BUILT_IN = Origin()


class NameTaken(ValueError):
    """A registration under a name that is already registered."""

_LOADING: contextvars.ContextVar[Origin] = contextvars.ContextVar("loading", default=BUILT_IN)


@contextlib.contextmanager
def registering_from(origin: Origin):
    """Entries registered inside this block come from `origin` (a plugin being loaded)."""
    token = _LOADING.set(origin)
    try:
        yield origin
    finally:
        _LOADING.reset(token)


class Registry(Generic[T]):
    """Named entries; `stamp(entry, origin)` may return an adjusted entry for one that comes
    from a plugin (methods carry the plugin's source hash in their version)."""

    def __init__(self, kind: str, stamp: Callable[[T, Origin], T] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origins: dict[str, Origin] = {}
        self._stamp = stamp

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """`@registry.register("name")` or `registry.register("name", entry)`."""
        validate_entry_name(name, f"{self.kind} name")

        def add(obj: T) -> T:
            if name in self._entries:
                raise NameTaken(f"{self.kind} {name!r} is already registered "
                                 f"({self._origins[name]})")
            origin = _LOADING.get()
            if self._stamp is not None and origin != BUILT_IN:
                obj = self._stamp(obj, origin)
            self._entries[name] = obj
            self._origins[name] = origin
            return obj

        return add(entry) if entry is not None else add

    def unregister(self, name: str) -> None:
        del self._entries[name]
        del self._origins[name]

    def origin(self, name: str) -> Origin:
        self.get(name)
        return self._origins[name]

    def names_from(self, origin: Origin) -> list[str]:
        return sorted(name for name, o in self._origins.items() if o == origin)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise DiffbenchError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)}; "
                                 f"valid names: {valid}") from None

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())
