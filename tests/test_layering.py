"""The layer order of ``ssl_vit`` (README, "Package map"), checked on the source: a module imports only from its
own layer or below, no two packages import each other, and imports sit at the top of the module except for
the heavy optional libraries named below."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssl_vit"

#: Bottom to top. A module belongs to the layer of its longest matching prefix ("ssl_vit" alone: the root
#: package's __init__: __version__, and the import of methods that registers every layer's config checks).
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("core", ("ssl_vit.errors", "ssl_vit.core")),
    ("config", ("ssl_vit.config",)),
    ("transforms", ("ssl_vit.transforms",)),
    ("data", ("ssl_vit.data",)),
    ("models", ("ssl_vit.models",)),
    ("methods", ("ssl_vit.methods",)),
    ("package root", ("ssl_vit",)),
    ("checkpoints", ("ssl_vit.checkpoints",)),
    ("evaluation", ("ssl_vit.evaluation",)),
    ("engine", ("ssl_vit.engine",)),
    ("diagnostics", ("ssl_vit.diagnostics",)),
    ("runs", ("ssl_vit.runs",)),
    ("adapt / search / sweep", ("ssl_vit.adapt", "ssl_vit.search", "ssl_vit.sweep")),
    ("cli", ("ssl_vit.cli", "ssl_vit.__main__")),
]

#: Function-local imports allowed anywhere (module prefixes): heavy or platform-specific libraries imported
#: where they are used, each with a comment on its line saying why.
LAZY_OK = ("matplotlib", "lightly", "torch.utils.tensorboard", "torch._dynamo", "PIL", "fcntl")
#: Files whose function-local imports are not checked yet.
LAZY_PENDING: Set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> Optional[Tuple[int, str]]:
    """(layer index, the prefix that placed it) for an ``ssl_vit`` module; None for other modules."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            hit = module == p if p == "ssl_vit" else module == p or module.startswith(p + ".")
            if hit and (best is None or len(p) > len(best[1])):
                best = (i, p)
    return best


def _imports(path: Path) -> Iterator[Tuple[int, str, bool, str]]:
    """(line, imported module, inside a function, source line) for every import of ``path``."""
    module, is_pkg = _module_name(path), path.name == "__init__.py"
    text = path.read_text()
    lines = text.splitlines()

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    yield child.lineno, a.name, in_func, lines[child.lineno - 1]
            elif isinstance(child, ast.ImportFrom):
                name = child.module or ""
                if child.level:
                    base = module.split(".")[: len(module.split(".")) - child.level + (1 if is_pkg else 0)]
                    name = ".".join(base + ([name] if name else []))
                yield child.lineno, name, in_func, lines[child.lineno - 1]
            yield from visit(child, f)

    yield from visit(ast.parse(text), False)


def _sources() -> List[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [str(p.relative_to(ROOT)) for p in _sources() if _unit(_module_name(p)) is None]
    assert not missing, f"modules in no layer of tests/test_layering.py LAYERS: {missing}"


def test_no_import_from_a_higher_layer():
    bad = []
    for path in _sources():
        src = _unit(_module_name(path))
        for line, target, _, _ in _imports(path):
            dst = _unit(target)
            if dst is not None and dst[0] > src[0]:
                bad.append(
                    f"{path.relative_to(ROOT)}:{line}: layer '{LAYERS[src[0]][0]}' imports {target} from the "
                    f"higher layer '{LAYERS[dst[0]][0]}'"
                )
    assert not bad, "upward imports (move the piece down, or register it from above):\n" + "\n".join(bad)


def test_no_two_packages_import_each_other():
    graph: Dict[str, Set[str]] = {}
    for path in _sources():
        src = _unit(_module_name(path))[1]
        for _, target, _, _ in _imports(path):
            dst = _unit(target)
            if dst is not None and dst[1] != src:
                graph.setdefault(src, set()).add(dst[1])
    cycles, state = [], {}

    def dfs(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                dfs(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    assert not cycles, "package import cycles:\n" + "\n".join(cycles)


def test_imports_are_at_module_top():
    bad = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        if rel in LAZY_PENDING:
            continue
        for line, target, in_func, text in _imports(path):
            if not in_func:
                continue
            lazy_ok = any(target == m or target.startswith(m + ".") for m in LAZY_OK)
            if not lazy_ok:
                bad.append(f"{rel}:{line}: function-local import of {target}; move it to the top of the module")
            elif "#" not in text:
                bad.append(f"{rel}:{line}: lazy import of {target} needs a comment saying why")
    assert not bad, "\n".join(bad)
