"""scripts/ensure_venv.sh installs the extras asked for once per setup.py: an install with more
extras covers a request for fewer. pip is a recorder here (the script's own logic is tested;
installing is pip's); the venv's python is this one."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "setup.py"), repo / "setup.py")
    shutil.copy(os.path.join(ROOT, "scripts", "ensure_venv.sh"), repo / "scripts")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    pip = bin_dir / "pip"
    pip.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../pip.log"\n')
    pip.chmod(0o755)
    return repo


def _ensure(repo, extras):
    """The pip install commands one ``source scripts/ensure_venv.sh EXTRAS`` ran."""
    log = repo / ".venv" / "pip.log"
    before = log.read_text().splitlines() if log.exists() else []
    done = subprocess.run(["bash", "-c", f"source scripts/ensure_venv.sh '{extras}'"],
                          cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    after = log.read_text().splitlines() if log.exists() else []
    return [line for line in after[len(before):] if "-e" in line.split()]


def test_an_install_covers_every_subset_of_its_extras(tmp_path):
    repo = _repo(tmp_path)
    assert _ensure(repo, "study,test") == [f"install --quiet -e {repo}[study,test]"]
    for covered in ("study,test", "test,study", "study", "test", ""):
        assert _ensure(repo, covered) == [], covered
    assert _ensure(repo, "study,gpu") == [f"install --quiet -e {repo}[study,gpu]"]
    assert _ensure(repo, "gpu") == []
    assert _ensure(repo, "dicom") == [f"install --quiet -e {repo}[dicom]"]
    with open(repo / "setup.py", "a") as f:
        f.write("# changed\n")
    assert _ensure(repo, "study") == [f"install --quiet -e {repo}[study]"]


def test_run_all_and_run_tests_ask_for_the_research_stack():
    with open(os.path.join(ROOT, "run_all.sh")) as f:
        assert "source scripts/ensure_venv.sh study " in f.read()
    with open(os.path.join(ROOT, "run_tests.sh")) as f:
        assert "source scripts/ensure_venv.sh study,test" in f.read()
