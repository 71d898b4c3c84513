"""House rules of the code base, checked statically over every module of ``optisr/`` (parsed with ``ast``).

* No module imports a private name (``_name``) from another module. A private *module*
  (``optisr/pkg/_mod.py``) may be imported only from inside its own package.
* The module import graph has no cycles. Every import counts, function-local (lazy) ones too;
  ``from pkg import submodule`` is an edge to the submodule, ``from pkg import name`` to ``pkg``.
* No access ``obj._name`` to a private attribute that the accessing module does not define itself
  (attributes of ``self`` / ``cls`` are fine), apart from a short allow-list with reasons.
* ``argparse`` is imported only in ``optisr/cli/``.
* Imports follow the layers (:data:`LAYERS`): a module never imports a module of a higher layer,
  so the numerical core knows nothing of files, engines, training, benchmarks or the CLI.
* Every name in a module's ``__all__`` exists (defined there, or a submodule of the package).

Plus the public API: ``import optisr`` gives ``guided_upsample``, ``upscale`` and ``__version__``, and
the package is marked typed (``optisr/py.typed``, shipped as package data).

Each failure lists every violation as ``path:line: what``.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "optisr"

# The layers, lowest first: a module may import its own layer and the ones below, never above.
# Same-layer imports are fine (the cycle check still applies). The root package ``optisr`` is the
# public facade over everything and ``optisr.__main__`` runs the CLI: both stand above every layer.
LAYERS: list[tuple[str, ...]] = [
    ("optisr.errors", "optisr.version", "optisr.devices", "optisr.config", "optisr.rng"),  # foundations
    ("optisr.io",),  # files: rasters, images, atomic writes, model files (generic)
    ("optisr.ops",),  # downsampling operators, the pixel lattice
    ("optisr.solvers", "optisr.metrics", "optisr.degrade", "optisr.viz"),  # numerics on arrays/tensors
    ("optisr.data",),  # datasets and procedural scenes
    ("optisr.guided", "optisr.blind"),  # the two engines
    ("optisr.train",),  # training loops of both engines
    ("optisr.bench",),  # benchmark harnesses
    ("optisr.cli", "optisr.serve", "optisr.scaleout"),  # argparse and printing; the local web app; Dask tasks
]


# Private attributes that may be read on objects from elsewhere: (attribute, reason). Keep it short.
ALLOWED_PRIVATE_ATTRS: dict[str, str] = {
    "_SubParsersAction": "argparse's type of add_subparsers(); the only way to annotate it (cli/ only)",
    "_orig_mod": "torch.compile's OptimizedModule exposes the wrapped module only as _orig_mod",
}


@dataclass
class Module:
    name: str  # dotted, e.g. "optisr.ops.operators"; a package is named after its folder
    path: Path
    rel: str  # path relative to the repository, for messages
    is_package: bool
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass
class Import:
    importer: str
    line: int
    target: str  # the module the edge points to
    private_name: str | None = None  # a private non-module name imported from ``target``
    type_only: bool = False  # under ``if TYPE_CHECKING:``: not executed, not a runtime edge


@dataclass
class Codebase:
    modules: dict[str, Module] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def load(root: Path, package: str = "optisr") -> Codebase:
    """Parse every module of ``root/package`` and collect its imports of ``package``."""
    code = Codebase()
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        code.modules[name] = Module(name, path, path.relative_to(root).as_posix(), is_package, tree)
    for mod in code.modules.values():
        code.imports += _imports_of(mod, code.modules, package)
    return code


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` / ``if typing.TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for child in node.body:
                    inside.update(id(n) for n in ast.walk(child))
    return inside


def _imports_of(mod: Module, modules: dict[str, Module], package: str) -> list[Import]:
    type_only = _type_checking_nodes(mod.tree)
    found: list[Import] = []
    for node in ast.walk(mod.tree):
        guarded = id(node) in type_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    found.append(Import(mod.name, node.lineno, alias.name, type_only=guarded))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not (source == package or source.startswith(package + ".")):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    found.append(Import(mod.name, node.lineno, sub, type_only=guarded))
                else:
                    private = alias.name if _is_private(alias.name) else None
                    found.append(Import(mod.name, node.lineno, source, private, type_only=guarded))
    return found


# --------------------------------------------------------------------------------- the checks
# Each returns its violations as "path:line: what" lines (empty = clean).


def private_imports(code: Codebase) -> list[str]:
    bad = []
    for imp in code.imports:
        mod = code.modules[imp.importer]
        if imp.private_name is not None:
            bad.append(f"{mod.rel}:{imp.line}: imports private name {imp.private_name!r} from {imp.target}")
            continue
        # a private module (or anything inside a private package) only from inside its own package
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            if _is_private(part):
                owner = ".".join(parts[:i])
                if not (imp.importer == owner or imp.importer.startswith(owner + ".")):
                    bad.append(f"{mod.rel}:{imp.line}: imports private module {imp.target} from outside {owner}")
                break
    return bad


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan), each sorted; self-imports are not cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def import_cycles(code: Codebase) -> list[str]:
    edges: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for imp in code.imports:
        if imp.type_only or imp.target not in code.modules or imp.target == imp.importer:
            continue
        edges[imp.importer].add(imp.target)
        where[imp.importer, imp.target].add(imp.line)
    bad = []
    for comp in _strongly_connected(sorted(code.modules), edges):
        members = set(comp)
        lines = [
            f"{code.modules[a].rel}:{ln}: imports {b}"
            for a in comp
            for b in sorted(edges[a] & members)
            for ln in sorted(where[a, b])
        ]
        bad.append("cycle " + " <-> ".join(comp) + "\n    " + "\n    ".join(lines))
    return bad


def _names_bound(tree: ast.Module) -> set[str]:
    """Every name the module binds anywhere: defs, classes, assignments, attributes it stores, arguments,
    keyword names (``parser.set_defaults(_run=...)``) and import aliases."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            bound.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
    return bound


def private_attribute_reads(code: Codebase, allowed: dict[str, str]) -> list[str]:
    bad = []
    for mod in code.modules.values():
        bound = _names_bound(mod.tree)
        for node in ast.walk(mod.tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in bound or node.attr in allowed:
                continue
            bad.append(f"{mod.rel}:{node.lineno}: reads private attribute {ast.unparse(node)}")
    return bad


def argparse_outside_cli(code: Codebase, cli: str = "optisr.cli") -> list[str]:
    bad = []
    for mod in code.modules.values():
        if mod.name == cli or mod.name.startswith(cli + "."):
            continue
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(n == "argparse" or n.startswith("argparse.") for n in names):
                bad.append(f"{mod.rel}:{node.lineno}: imports argparse outside {cli.replace('.', '/')}/")
    return bad


def layer_of(name: str, layers: list[tuple[str, ...]]) -> int | None:
    """Index of the layer that holds module ``name`` (longest matching prefix), or None."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), i)
    return None if best is None else best[1]


def upward_imports(code: Codebase, layers: list[tuple[str, ...]], above: tuple[str, ...]) -> list[str]:
    """Imports from a lower layer into a higher one; modules in ``above`` may import anything."""
    bad = []
    for imp in code.imports:
        if imp.type_only or imp.importer in above:
            continue
        src, dst = layer_of(imp.importer, layers), layer_of(imp.target, layers)
        if src is None:
            bad.append(f"{code.modules[imp.importer].rel}:{imp.line}: module {imp.importer} is in no layer")
        elif dst is not None and dst > src:
            bad.append(
                f"{code.modules[imp.importer].rel}:{imp.line}: {imp.importer} (layer {src}) imports {imp.target} "
                f"(layer {dst}, above it)"
            )
    return sorted(set(bad))


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (also under top-level ``if`` / ``try``), not inside defs or classes."""
    names: set[str] = set()
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, ast.alias):
                names.add(sub.asname or sub.name.split(".")[0])
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub is not node:
                names.add(sub.name)
    return names


def declared_all(tree: ast.Module) -> tuple[int, list[str]] | None:
    """``(line, names)`` of the module's ``__all__`` (a literal list or tuple), or None."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "__all__" and value is not None:
            return node.lineno, list(ast.literal_eval(value))
    return None


def broken_all(code: Codebase) -> list[str]:
    bad = []
    for mod in code.modules.values():
        declared = declared_all(mod.tree)
        if declared is None:
            continue
        line, names = declared
        defined = _top_level_names(mod.tree)
        for name in names:
            if name not in defined and not (mod.is_package and f"{mod.name}.{name}" in code.modules):
                bad.append(f"{mod.rel}:{line}: __all__ names {name!r}, which the module does not define")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            bad.append(f"{mod.rel}:{line}: __all__ lists {dupes} more than once")
    return bad


# --------------------------------------------------------------------------------- the checks on optisr


@pytest.fixture(scope="module")
def code() -> Codebase:
    return load(REPO)


def _fail_on(title: str, violations: list[str]) -> None:
    if violations:
        pytest.fail(f"{title} ({len(violations)}):\n  " + "\n  ".join(violations), pytrace=False)


def test_the_scan_sees_the_package(code):
    # Guards the checks below against passing vacuously on a wrong path.
    assert {"optisr", "optisr.errors", "optisr.ops.operators", "optisr.cli.main"} <= set(code.modules)
    assert any(i.importer == "optisr.cli.main" for i in code.imports)


def test_no_private_imports_across_modules(code):
    _fail_on("private names imported from another module", private_imports(code))


def test_no_import_cycles(code):
    _fail_on("import cycles (function-local imports included)", import_cycles(code))


def test_no_private_attribute_reads_on_objects_from_elsewhere(code):
    _fail_on("private attributes of objects defined elsewhere", private_attribute_reads(code, ALLOWED_PRIVATE_ATTRS))


def test_allow_list_entries_are_used(code):
    # An entry that nothing needs any more must go (keeps the list short and honest).
    used = {
        node.attr
        for mod in code.modules.values()
        for node in ast.walk(mod.tree)
        if isinstance(node, ast.Attribute) and node.attr in ALLOWED_PRIVATE_ATTRS
    }
    _fail_on("unused entries in ALLOWED_PRIVATE_ATTRS", sorted(set(ALLOWED_PRIVATE_ATTRS) - used))


def test_argparse_only_in_the_cli(code):
    _fail_on("argparse outside optisr/cli/", argparse_outside_cli(code))


def test_imports_follow_the_layers(code):
    _fail_on("imports against the layering", upward_imports(code, LAYERS, above=("optisr", "optisr.__main__")))


def test_every_name_in_all_exists(code):
    _fail_on("broken __all__ entries", broken_all(code))


def test_public_packages_declare_all(code):
    need = ["optisr", "optisr.ops", "optisr.solvers", "optisr.io", "optisr.metrics", "optisr.viz"]
    need += ["optisr.blind", "optisr.degrade"]
    _fail_on(
        "packages without __all__", [code.modules[n].rel for n in need if declared_all(code.modules[n].tree) is None]
    )


# --------------------------------------------------------------------------------- the checks themselves


def _toy(tmp_path: Path, files: dict[str, str]) -> Codebase:
    for rel, text in files.items():
        path = tmp_path / "toy" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load(tmp_path, "toy")


def test_the_checks_find_each_kind_of_violation(tmp_path):
    code = _toy(
        tmp_path,
        {
            "__init__.py": '__all__ = ["a", "missing", "a"]\n',
            "a.py": "import argparse\nfrom toy.b import _helper, public\nfrom toy.sub import _impl\n",
            "b.py": "def public():\n    from toy import a\n\ndef _helper(op):\n    return op._secret, op._mine\n"
            "class K:\n    def f(self):\n        self._mine = 1\n        return self._other\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.d import X\n",
            "d.py": "from toy.c import TYPE_CHECKING\n",
            "sub/__init__.py": "from toy.sub import _impl\n",
            "sub/_impl.py": "from . import _impl2\n",
            "sub/_impl2.py": "",
            "cli/__init__.py": "import argparse\nP = argparse._SubParsersAction\n",
        },
    )
    assert private_imports(code) == [
        "toy/a.py:2: imports private name '_helper' from toy.b",
        "toy/a.py:3: imports private module toy.sub._impl from outside toy.sub",
    ]
    # a <-> b through b's function-local import; c -> d is type-only, so d -> c closes no cycle
    assert import_cycles(code) == [
        "cycle toy.a <-> toy.b\n    toy/a.py:2: imports toy.b\n    toy/b.py:2: imports toy.a",
    ]
    assert private_attribute_reads(code, {"_SubParsersAction": "argparse"}) == [
        "toy/b.py:5: reads private attribute op._secret"
    ]
    assert private_attribute_reads(code, {}) == [
        "toy/b.py:5: reads private attribute op._secret",
        "toy/cli/__init__.py:2: reads private attribute argparse._SubParsersAction",
    ]
    assert argparse_outside_cli(code, "toy.cli") == ["toy/a.py:1: imports argparse outside toy/cli/"]
    layers = [("toy.sub", "toy.c", "toy.d"), ("toy.b",), ("toy.a", "toy.cli")]
    assert upward_imports(code, layers, above=("toy",)) == [
        "toy/b.py:2: toy.b (layer 1) imports toy.a (layer 2, above it)",  # c -> d is type-only: not counted
    ]
    assert layer_of("toy.sub._impl", layers) == 0 and layer_of("toy.zzz", layers) is None
    assert broken_all(code) == [
        "toy/__init__.py:1: __all__ names 'missing', which the module does not define",
        "toy/__init__.py:1: __all__ lists ['a'] more than once",
    ]


# --------------------------------------------------------------------------------- the public API


def test_import_optisr_exposes_the_public_api():
    import optisr
    from optisr.blind.api import upscale
    from optisr.guided.api import guided_upsample
    from optisr.version import __version__

    assert set(optisr.__all__) == {"guided_upsample", "upscale", "__version__"}
    assert optisr.guided_upsample is guided_upsample and callable(guided_upsample)
    assert optisr.upscale is upscale and callable(upscale)
    assert optisr.__version__ == __version__
    project_version = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert project_version is not None and optisr.__version__ == project_version.group(1)


def test_package_is_marked_typed():
    import optisr

    assert (Path(optisr.__file__).parent / "py.typed").is_file()
    # shipped in wheels too: listed as package data of "optisr"
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"(?ms)^\[tool\.setuptools\.package-data\]\s*$(.*?)(^\[|\Z)", text)
    assert section is not None
    optisr_data = re.search(r"(?m)^optisr\s*=\s*\[(.*?)\]", section.group(1))
    assert optisr_data is not None and '"py.typed"' in optisr_data.group(1)
