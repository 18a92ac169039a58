"""The grading package's layout: read with ast, never imported.

Three rules keep the package a set of rooms a newcomer can enter one at a time:

- no import circle between its modules (imports inside functions count: they are circles
  all the same, only later);
- no module uses another module's private name (``_name``): what crosses a module's border is
  public in the module that owns it. A private *module* (``_patches.py``) is private to its
  package and may be imported anywhere inside that package;
- the modules that run by source inside a sandbox (``python -I -c``, where ``lossutils`` is not
  importable) import only the standard library, and numpy where documented, at import time.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lossutils" / "grading"

#: Modules loaded by source into sandboxed processes, and what they may import at import time.
BY_SOURCE = {
    "lossutils/grading/verify/_runner.py": {"numpy"},
    "lossutils/grading/sandbox/_zygote.py": set(),
    "lossutils/checks/_given.py": {"numpy"},
    "lossutils/checks/_plain.py": {"numpy"},
    "lossutils/checks/_calling.py": {"numpy"},
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _modules(folder: Path = PACKAGE, root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(folder.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            found |= {id(n) for n in ast.walk(node)}
    return found


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _imports(name: str, path: Path, known: set[str]):
    """``(imported module, imported name or None, node)`` for every import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, _is_package(path), node.level, node.module)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in known:  # `from . import module`
                    yield full, None, node
                else:
                    yield source, alias.name, node


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(name, path, known):
            # importing a.b.c imports a and a.b first: only the modules of this package count
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses(modules: dict[str, Path]) -> list[str]:
    """``module: what`` for each private name of another module that ``module`` uses."""
    known = set(modules)
    found = []
    for name, path in modules.items():
        aliases = {}  # local name -> the module it stands for
        for target, imported, node in _imports(name, path, known):
            parts = target.split(".")
            for i, part in enumerate(parts):
                # a private module is private to its package: any module inside may import it
                package = ".".join(parts[:i])
                if _private(part) and not (name == package or name.startswith(package + ".")):
                    found.append(f"{name}: imports the private module {target}")
            if imported is not None and _private(imported):
                found.append(f"{name}: imports {target}.{imported}")
            for alias in node.names:
                if isinstance(node, ast.Import):
                    local = alias.asname or alias.name.split(".")[0]
                    aliases[local] = alias.name if alias.asname else local
                elif imported is None and target.endswith("." + alias.name):
                    aliases[alias.asname or alias.name] = target
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            base = _dotted(node.value)
            head, _, rest = (base or "").partition(".")
            owner = ".".join(filter(None, [aliases.get(head), rest]))
            if head in aliases and owner in known and owner != name:
                found.append(f"{name}: uses {owner}.{node.attr}")
    return sorted(set(found))


def test_the_grading_package_has_no_import_circle():
    graph = _graph(_modules())
    assert len(graph) > 20  # the package was found and read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_grading_module_uses_another_modules_private_names():
    assert _private_uses(_modules()) == []


def test_the_checks_finders_see_a_circle_and_a_private_import(tmp_path):
    """The two checks above can fail: on a small package that breaks both rules."""
    package = tmp_path / "lossutils" / "grading"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "run.py").write_text("def f():\n    from .dask import _helper\n")
    (package / "dask.py").write_text("from . import run\n\ndef _helper():\n    pass\n")
    (package / "other.py").write_text("from . import dask\n\nx = dask._helper\n")
    modules = _modules(package, tmp_path)
    assert _cycle(_graph(modules)) in (
        ["lossutils.grading.dask", "lossutils.grading.run", "lossutils.grading.dask"],
        ["lossutils.grading.run", "lossutils.grading.dask", "lossutils.grading.run"],
    )
    assert _private_uses(modules) == [
        "lossutils.grading.other: uses lossutils.grading.dask._helper",
        "lossutils.grading.run: imports lossutils.grading.dask._helper",
    ]


@pytest.mark.parametrize("relative", sorted(BY_SOURCE))
def test_modules_run_by_source_import_only_the_standard_library_at_import(relative):
    path = ROOT / relative
    allowed = BY_SOURCE[relative] | set(sys.stdlib_module_names) | {"__future__"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = []
    for node in tree.body:  # module level only: functions may import lazily
        if isinstance(node, ast.Import):
            top += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.append(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            # relative imports only between the by-source modules of one folder
            target = path.parent / f"{node.module}.py"
            assert str(target.relative_to(ROOT)) in BY_SOURCE, ast.dump(node)
    assert top, "found no import at all: the check would prove nothing"
    assert set(top) <= allowed, sorted(set(top) - allowed)


def _third_party_private_uses(modules: dict[str, Path]) -> list[str]:
    """``module: what`` for each private name of another installed package (not the standard
    library) that ``module`` imports or reads from a module it imported."""
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}  # local name -> third-party module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for alias in node.names:
                    full = f"{module}.{alias.name}" if module else alias.name
                    top = full.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("lossutils", "__future__"):
                        continue
                    if _private(alias.name):
                        found.append(f"{name}: imports {full}")
                    local = alias.asname or (alias.name if module else top)
                    aliases[local] = full if (alias.asname or module) else top
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                head = (_dotted(node.value) or "").split(".")[0]
                if head in aliases:
                    found.append(f"{name}: uses {_dotted(node.value)}.{node.attr} "
                                 f"({aliases[head]})")
    return sorted(set(found))


def test_only_the_patches_module_touches_other_packages_private_names():
    """What can be seen without running the code: private names of another package imported,
    or read from one of its modules. (Private methods of an object it returned cannot be seen
    this way; the patches module's rule is that they stay there too.)"""
    modules = {name: path for name, path in _modules().items()
               if name != "lossutils.grading._patches"}
    assert _third_party_private_uses(modules) == []
    patches = {"lossutils.grading._patches": PACKAGE / "_patches.py"}
    assert "lossutils.grading._patches: uses font_manager._get_font (matplotlib.font_manager)" \
        in _third_party_private_uses(patches)  # the check sees the ones that are there
