import pytest

from methods.errors import DiffbenchError
from methods.registry import Registry


def test_duplicate_name_raises():
    registry = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "a/b", "..", "a..b", "sp ace", "é"])
def test_invalid_names_are_refused(name):
    with pytest.raises(DiffbenchError, match="invalid"):
        Registry("thing").register(name, 1)


def test_decorator_registration_returns_the_object():
    registry = Registry("thing")

    @registry.register("f")
    def f():
        return 1

    assert registry.get("f") is f


def test_failed_lookup_lists_valid_names():
    registry = Registry("thing")
    registry.register("alpha", 1)
    registry.register("beta", 2)
    with pytest.raises(DiffbenchError, match=r"unknown thing 'gamma'; valid names: alpha, beta"):
        registry.get("gamma")
