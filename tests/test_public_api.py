"""The public surface: __all__, docstrings, exception module names, and the py.typed marker."""

from __future__ import annotations

import ast
import inspect
import itertools
from importlib import resources
from pathlib import Path

import pytest

import mjasync


def test_all_matches_the_public_names() -> None:
    """__all__ lists exactly the public names mjasync defines (submodules aside)."""
    public = {
        name
        for name, value in vars(mjasync).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }

    assert set(mjasync.__all__) == public | {"__version__"}


def test_all_has_no_duplicates() -> None:
    """Each name appears once in __all__."""
    assert len(mjasync.__all__) == len(set(mjasync.__all__))


def attribute_docstrings() -> dict[str, str]:
    """Module-level ``Name = ...`` assignments followed by a string, across mjasync's modules."""
    docs: dict[str, str] = {}
    for path in Path(mjasync.__file__).parent.glob("*.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for node, following in itertools.pairwise(body):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                for target in targets:
                    if isinstance(target, ast.Name):
                        docs[target.id] = following.value.value
    return docs


@pytest.mark.parametrize("name", [n for n in mjasync.__all__ if n != "__version__"])
def test_every_export_has_a_docstring(name: str) -> None:
    """Every exported class and function has its own docstring; aliases an attribute docstring."""
    value = getattr(mjasync, name)

    if isinstance(value, type) or inspect.isfunction(value):
        assert value.__doc__, f"mjasync.{name} has no docstring"
        assert value.__doc__.strip(), f"mjasync.{name} has an empty docstring"
    else:
        # Type aliases (unions, Literal) carry their typing class's docstring, not their
        # own: look for the attribute docstring under the assignment instead.
        assert attribute_docstrings().get(name, "").strip(), f"mjasync.{name} is undocumented"


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in mjasync.__all__
        if isinstance(getattr(mjasync, n), type) and issubclass(getattr(mjasync, n), BaseException)
    ],
)
def test_exceptions_live_in_mjasync(name: str) -> None:
    """Exceptions report __module__ == "mjasync", so tracebacks show the public path."""
    assert getattr(mjasync, name).__module__ == "mjasync"


def test_version_is_a_string() -> None:
    """__version__ is a PEP 440 string."""
    assert isinstance(mjasync.__version__, str)
    assert mjasync.__version__[0].isdigit()


def test_py_typed_is_shipped() -> None:
    """The package carries py.typed, so type checkers use its annotations."""
    assert resources.files("mjasync").joinpath("py.typed").is_file()


def test_py_typed_is_in_the_wheel_config() -> None:
    """The wheel includes the whole mjasync package directory, py.typed included."""
    import tomllib

    pyproject = Path(mjasync.__file__).parent.parent / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))

    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["mjasync"]


def test_the_notification_bus_is_public() -> None:
    """The bus names (#12) are exported, and Client documents its notify_bus= parameter."""
    from mjasync import _bus, _redis_bus

    for name in ("NotificationBus", "LocalBus", "LocalHub", "BusStats"):
        assert getattr(mjasync, name) is getattr(_bus, name)
    assert mjasync.RedisBus is _redis_bus.RedisBus
    assert "notify_bus" in inspect.signature(mjasync.Client).parameters
    assert mjasync.Client.__doc__ is not None
    assert "notify_bus:" in mjasync.Client.__doc__
    assert "MJ_NOTIFY_TOKEN" in mjasync.Client.__doc__
