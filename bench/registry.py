"""One small registry class (after lm-eval-harness): decorator registration, strict names; and
the checks every user-written name and number passes before it is used."""
import math
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.errors import DiffbenchError

T = TypeVar("T")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")


def validate_name(name: str, what: str = "name") -> str:
    """Names become file names, so only `[a-z0-9][a-z0-9._-]*` is allowed (no '..', no '/')."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise DiffbenchError(
            f"invalid {what} {name!r}: use lowercase letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)")
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


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """`@registry.register("name")` or `registry.register("name", entry)`."""
        validate_name(name, f"{self.kind} name")

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def unregister(self, name: str) -> None:
        del self._entries[name]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise DiffbenchError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def __contains__(self, name: Any) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())
