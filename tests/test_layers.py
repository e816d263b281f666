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
