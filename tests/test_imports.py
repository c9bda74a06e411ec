"""The import graph of the ``clue`` package has no cycle.

A cycle works only while every module on it imports the others lazily or late enough; one import
moved to the top of a file then fails with "partially initialized module". So shared helpers live in
modules below everything that uses them (clue.errors, clue.names), and this test reads every import
of a ``clue`` module, those inside functions included, and fails on a cycle, naming it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "clue"


def module_name(path, root=PACKAGE):
    """clue.tasks.real for .../clue/tasks/real.py, clue.tasks for .../clue/tasks/__init__.py."""
    parts = ["clue", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, modules, root=PACKAGE):
    """The ``clue`` modules that the file at ``path`` imports, anywhere in it (top level, inside
    functions, under ``if``); ``modules`` is the set of all module names of the package, used to
    tell ``from clue import io`` (a module) from ``from clue.config import suggest`` (a name)."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..tasks import y
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from clue.tasks import real` imports the module clue.tasks.real; any other name
            # comes from clue.tasks itself
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules and name != this)
    return found


def import_graph(root=PACKAGE):
    """{module: set of clue modules it imports} for every .py file under ``root``."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    return {name: imported_modules(path, set(files), root) for name, path in files.items()}


def find_cycle(graph):
    """One cycle of ``graph`` as a list of modules [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the current path, "done" once fully explored
    path = []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_reader_sees_every_kind_of_import(tmp_path):
    # a package of its own, so the check does not depend on what clue imports today
    root = tmp_path / "clue"
    (root / "sub").mkdir(parents=True)
    for name in ["__init__.py", "a.py", "b.py", "c.py", "d.py", "sub/__init__.py", "sub/e.py"]:
        (root / name).write_text("")
    (root / "a.py").write_text("import os\nfrom clue.b import helper\n")
    (root / "b.py").write_text("def f():\n    from clue import c\n    import clue.sub.e\n")
    (root / "sub" / "e.py").write_text("from .. import d\nfrom . import helper_name\n")
    (root / "c.py").write_text("import numpy\n")
    graph = import_graph(root)
    assert graph == {"clue": set(), "clue.a": {"clue.b"}, "clue.b": {"clue.c", "clue.sub.e"},
                     "clue.c": set(), "clue.d": set(), "clue.sub": set(),
                     "clue.sub.e": {"clue.d", "clue.sub"}}
    assert find_cycle(graph) is None
    # an import inside a function closes a cycle just as a top-level one does
    (root / "c.py").write_text("def g():\n    from clue.a import x\n")
    assert find_cycle(import_graph(root)) == ["clue.a", "clue.b", "clue.c", "clue.a"]


def test_clue_imports_have_no_cycle():
    graph = import_graph()
    # the reader found the package: these imports exist and must be seen
    assert "clue.errors" in graph["clue.config"]
    assert "clue.tasks.real" in graph["clue.tasks"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
