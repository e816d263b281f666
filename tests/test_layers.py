"""Library modules never import an entry-point module (python -m thyroid.<command>)."""

import ast
import os

import thyroid

PACKAGE_DIR = os.path.dirname(os.path.abspath(thyroid.__file__))
ENTRY_POINTS = {f"thyroid.{name}" for name in (
    "train", "evaluate", "bottleneck", "build_tfrecords", "synth", "study", "export", "predict",
    "serve")} | {"thyroid.checkpoints.__main__"}


def module_name(path):
    relative = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-len(".py")]
    name = relative.replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def imported_modules(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            # ``from thyroid import train`` imports the module thyroid.train
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def library_modules():
    for folder, _, files in os.walk(PACKAGE_DIR):
        for file in sorted(files):
            path = os.path.join(folder, file)
            if file.endswith(".py") and module_name(path) not in ENTRY_POINTS:
                yield path


def test_every_entry_point_exists():
    for name in ENTRY_POINTS:
        path = os.path.join(os.path.dirname(PACKAGE_DIR), *name.split(".")) + ".py"
        assert os.path.exists(path), name


def test_no_library_module_imports_an_entry_point():
    offenders = [f"{module_name(path)} imports {imported}"
                 for path in library_modules() for imported in imported_modules(path)
                 if imported in ENTRY_POINTS]
    assert not offenders, offenders


def test_the_walk_sees_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from thyroid import train\nimport thyroid.serve as s\n")
    assert {"thyroid.train", "thyroid.serve"} <= set(imported_modules(str(bad)))


def module_imports(path, known):
    """Modules of ``known`` that the file at ``path`` imports, at any level (a function-level
    import closes a cycle as surely as a top-level one). ``from package import name`` is an
    edge to the submodule when ``name`` is one, else to the package."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return found & set(known)


def find_cycles(graph):
    """Every cycle of ``{node: set of nodes}``, each as a list starting at its smallest node."""
    cycles = set()

    def visit(node, path):
        for target in sorted(graph.get(node, ())):
            if target in path:
                cycle = path[path.index(target):]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            else:
                visit(target, path + [target])

    for node in sorted(graph):
        visit(node, [node])
    return sorted(list(cycle) for cycle in cycles)


def test_find_cycles_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_dataset_files():
    folder = os.path.join(PACKAGE_DIR, "datasets")
    paths = {module_name(os.path.join(folder, name)): os.path.join(folder, name)
             for name in sorted(os.listdir(folder)) if name.endswith(".py")}
    graph = {name: module_imports(path, paths) - {name} for name, path in paths.items()}
    assert find_cycles(graph) == []
