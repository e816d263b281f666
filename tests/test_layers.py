"""The package's layers hold: no folder imports one above it or beside it, and no file or
folder imports itself round a loop. The order is docs/DESIGN.md's "Layers"."""

import ast
import collections
import os
import shutil

import thyroid

PACKAGE_DIR = os.path.dirname(os.path.abspath(thyroid.__file__))
ENTRY_POINTS = {f"thyroid.{name}" for name in (
    "train", "evaluate", "bottleneck", "build_tfrecords", "synth", "export", "adapt", "predict",
    "serve")} | {"thyroid.study.__main__", "thyroid.study.job", "thyroid.checkpoints.__main__"}
ENTRY = "entry points"
# Lowest first. A unit is a sub-package (folder) or a top-level module; ``thyroid`` is the
# package's own __init__. A unit may import any unit of a lower level, none of its own level
# (but itself) or above.
LAYERS = (
    ("thyroid", "compat", "flag_errors"),
    ("io_utils", "progress", "prefetch", "output_guard", "scopes", "checkpoint_paths",
     "markdown_text"),
    ("stats",),
    ("preprocessing",),
    ("datasets", "nets"),
    ("restore",),
    ("checkpoints",),
    ("training",),
    ("deploy",),
    ("study",),
    ("cli",),
    (ENTRY,),
)
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def module_name(path, package_dir=PACKAGE_DIR):
    relative = os.path.relpath(path, os.path.dirname(package_dir))[:-len(".py")]
    name = relative.replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def imported_modules(path, known=None):
    """The modules a file imports. ``from package import module`` counts as the module
    alone when ``known`` (the package's module names) holds it, not as the package too."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            # ``from thyroid import train`` imports the module thyroid.train
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            submodules = [name for name in names if known is not None and name in known]
            if len(submodules) < len(names):
                yield node.module
            yield from (submodules if known is not None else names)


def unit_of(module):
    if module in ENTRY_POINTS:
        return ENTRY
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph(package_dir=PACKAGE_DIR):
    """{module: set of package modules it imports} over every file of the package."""
    paths = {}
    for folder, _, files in os.walk(package_dir):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                paths[module_name(path, package_dir)] = path
    return {module: {name for name in imported_modules(path, paths)
                     if name in paths and name != module}
            for module, path in paths.items()}


def upward_imports(graph):
    offenders = []
    for module, targets in graph.items():
        for target in targets:
            source, goal = unit_of(module), unit_of(target)
            if source == goal:
                continue
            if source not in LEVEL or goal not in LEVEL:
                offenders.append(f"{module} -> {target}: {source} or {goal} has no layer")
            elif LEVEL[goal] >= LEVEL[source]:
                offenders.append(f"{module} ({source}) imports {target} ({goal})")
    return sorted(offenders)


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def folder_graph(graph):
    folders = collections.defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if unit_of(module) != unit_of(target):
                folders[unit_of(module)].add(unit_of(target))
    return folders


def test_every_entry_point_exists():
    for name in ENTRY_POINTS:
        path = os.path.join(os.path.dirname(PACKAGE_DIR), *name.split(".")) + ".py"
        assert os.path.exists(path), name


def test_every_folder_has_a_layer():
    units = {unit_of(module) for module in import_graph()}
    assert units <= set(LEVEL), sorted(units - set(LEVEL))


def test_no_import_runs_up_or_across_the_layers():
    assert upward_imports(import_graph()) == []


def test_no_file_or_folder_cycle():
    graph = import_graph()
    assert cycles(graph) == []
    assert cycles(folder_graph(graph)) == []


def test_stats_imports_nothing_of_thyroid_but_compat():
    graph = import_graph()
    for module, targets in graph.items():
        if unit_of(module) == "stats":
            assert {unit_of(t) for t in targets} <= {"stats", "compat"}, (module, targets)
            # TensorFlow (through compat) only where the metrics are graph ops.
            if module != "thyroid.stats.graph_metrics":
                assert "thyroid.compat" not in targets, module


def _planted(tmp_path, relative, text):
    copy = tmp_path / "thyroid"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / relative, "a", encoding="utf-8") as f:
        f.write(text)
    return import_graph(str(copy))


def test_a_planted_upward_import_fails(tmp_path):
    graph = _planted(tmp_path, "stats/metrics.py", "\nfrom thyroid.study import rows\n")
    assert any("thyroid.stats.metrics (stats) imports thyroid.study.rows" in offender
               for offender in upward_imports(graph))
    graph = _planted(tmp_path / "b", "datasets/shards.py", "\nfrom thyroid.nets import spec\n")
    assert any("(datasets) imports thyroid.nets.spec (nets)" in o for o in upward_imports(graph))


def test_a_planted_cycle_fails(tmp_path):
    graph = _planted(tmp_path, "study/rows.py", "\nfrom thyroid.study import plan\n")
    assert any("thyroid.study.rows" in c and "thyroid.study.plan" in c for c in cycles(graph))
    graph = _planted(tmp_path / "b", "training/model.py", "\nimport thyroid.deploy.export\n")
    assert ["deploy", "training"] in cycles(folder_graph(graph))
