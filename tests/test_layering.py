"""The package's layers, read from its source: what may import what.

- `mjasync.bulk` and the CLI are built on the public API alone, as a user's code would
  be: they import `mjasync`, `mjasync.bulk`, `mjasync.simulator` and `mjasync.testing`
  by their public names (besides their own modules) and touch no private attribute of
  what those return. What they need, users need too. (ruff's SLF001 checks the
  attributes as well, for these two packages only: see pyproject.toml.)
- The simulator imports nothing from the client side: it is a server.
- No module imports, directly or through others, a module that imports it back.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import mjasync

ROOT = Path(mjasync.__file__).parent
PUBLIC_PACKAGES = ("mjasync", "mjasync.bulk", "mjasync.simulator", "mjasync.testing")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from runtime_nodes(node)


def imports(name: str, path: Path | None = None) -> Iterator[tuple[int, str, str | None]]:
    """``(line, module, imported name or None)`` for every run-time import in *name*."""
    path = path or MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, base, alias.name


def is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split(".")[1:])


def own(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def public_api_violations(package: str, modules: dict[str, Path] = MODULES) -> list[str]:
    """Imports in *package* that reach past the public API of another part of mjasync."""
    found: list[str] = []
    for name in (m for m in modules if own(m, package)):
        for line, module, imported in imports(name, modules[name]):
            if not own(module, "mjasync") or own(module, package):
                continue
            where = f"{name}:{line}"
            if is_private(module) or module not in PUBLIC_PACKAGES:
                found.append(f"{where} imports the private module {module}")
            elif imported is not None and imported.startswith("_") and imported != "__version__":
                found.append(f"{where} imports the private name {module}.{imported}")
            elif imported is not None and f"{module}.{imported}" in MODULES:
                found.append(f"{where} imports the module {module}.{imported}")
    return found


def private_attribute_violations(package: str, modules: dict[str, Path] = MODULES) -> list[str]:
    """``obj._name`` (or ``getattr(obj, "_name")``) on anything but self, cls or the
    package's own objects: a private attribute of a `Client`, a task, a transport."""
    files = [modules[m] for m in modules if own(m, package)]
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}
    # The package's own private names: its functions, classes and attributes.
    defined: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
    clients = {name for name in dir(mjasync.Client) if name.startswith("_")}
    clients |= set(vars(mjasync.Client("http://mj.test", "k")))
    found: list[str] = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            attr: str | None = None
            if isinstance(node, ast.Attribute):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
                    continue
                attr = node.attr
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "hasattr", "setattr"}
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                attr = node.args[1].value
            if attr is None or not attr.startswith("_") or attr.startswith("__"):
                continue
            if attr not in defined or attr in clients:
                found.append(f"{path.name}:{node.lineno} reads .{attr}")
    return found


@pytest.mark.parametrize("package", ["mjasync.bulk", "mjasync.cli"])
def test_bulk_and_the_cli_import_only_public_names(package: str) -> None:
    """What bulk and the CLI import from the rest of mjasync, a user could import too."""
    assert any(own(m, package) for m in MODULES), f"no module {package}"
    assert public_api_violations(package) == []


@pytest.mark.parametrize("package", ["mjasync.bulk", "mjasync.cli"])
def test_bulk_and_the_cli_read_no_private_attribute(package: str) -> None:
    """No ``client._request``, ``client._where`` or ``getattr(client, "_x", ...)``."""
    assert private_attribute_violations(package) == []


def test_the_checks_catch_a_private_reach_in(tmp_path: Path) -> None:
    """The two checks above do find what they look for (on a copy of a bulk module)."""
    source = MODULES["mjasync.bulk._reach"].read_text(encoding="utf-8")
    bad = (
        source
        + "\nfrom .._errors import MJError\nfrom mjasync import _client\n"
        + "\n\ndef peek(client: object) -> object:\n"
        + '    return client._request, getattr(client, "_max_image_bytes", 0)\n'
    )
    probe = tmp_path / "_probe.py"
    probe.write_text(bad, encoding="utf-8")
    modules = {**MODULES, "mjasync.bulk._probe": probe}
    imports_found = public_api_violations("mjasync.bulk", modules)
    attributes_found = private_attribute_violations("mjasync.bulk", modules)
    assert [v.split(" ", 1)[1] for v in imports_found] == [
        "imports the private module mjasync._errors",
        "imports the private name mjasync._client",
    ]
    assert [v.rsplit(" ", 1)[1] for v in attributes_found] == [
        "._request",
        "._max_image_bytes",
    ]


def test_the_simulator_imports_nothing_from_the_client_side() -> None:
    """The simulator is a server: it imports no mjasync module outside mjasync.simulator."""
    found = [
        f"{name}:{line} imports {module}"
        for name in MODULES
        if own(name, "mjasync.simulator")
        for line, module, _ in imports(name)
        if own(module, "mjasync") and not own(module, "mjasync.simulator")
    ]
    assert found == []


def import_graph() -> dict[str, set[str]]:
    """Module -> the mjasync modules it imports at run time (lazy imports included)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for _, module, imported in imports(name):
            if imported is not None and f"{module}.{imported}" in MODULES:
                graph[name].add(f"{module}.{imported}")
            elif module in MODULES and module != name:
                graph[name].add(module)
    return graph


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of *graph* closes, as the path around it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


def test_no_import_cycle() -> None:
    """No module imports one that imports it back, however indirectly."""
    graph = import_graph()
    assert graph["mjasync.bulk._reach"] >= {"mjasync"}
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles_in(graph) == []
