"""What a run was planned on: every file of the user's data sources, by content.

The plan records it (``plan.json``'s ``sources``), and with ``--init_from`` the files this
study reads from the previous run (the checkpoint row 14 starts from and the manifest of the
images the overlap check compares). ``--resume`` compares the data with it
before anything in the run folder is touched and refuses, naming what changed, when a file was
added, removed or its bytes changed: the jobs already committed were built from the recorded
data, and rebuilding part of a finished run from other data would mix two datasets in one
report. A file only touched (new modification time, same bytes) resumes normally. The job
fingerprints read the recorded content hashes, never modification times.

Files are hashed once; a later comparison re-hashes only the files whose size or modification
time differ from the record, so resuming an unchanged run costs a directory walk.
"""

import csv
import dataclasses
import glob
import os

from thyroid.io_utils import file_sha256
from thyroid.study.source_names import EXTERNAL_PREFIX, PREVIOUS_RUN_SOURCE, is_previous_run


@dataclasses.dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the source (a folder) or the CSV's folder; the CSV itself by name
    size: int
    mtime_ns: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class DataChange:
    """Files added, removed and modified (by content) in one source since the plan."""
    source: str
    added: int
    removed: int
    modified: int

    def phrase(self):
        return (f"{self.source}: {self.added} file(s) added, {self.removed} removed, "
                f"{self.modified} modified")


def study_sources(study):
    """{source name: path} of the user's data the study reads (development and external)."""
    sources = {}
    if study.ddti_dir:
        sources["--ddti_dir"] = study.ddti_dir
    if study.local_dir:
        sources["--local_dir"] = study.local_dir
    if study.image_dir:
        sources["--image_dir"] = study.image_dir
    if study.csv:
        sources["--csv"] = study.csv
    for kind, path in study.external:
        sources[f"{EXTERNAL_PREFIX}{kind}={path}"] = path
    if study.init_from:
        sources[PREVIOUS_RUN_SOURCE] = study.init_from
    return sources


def _csv_listed_files(csv_path):
    """The CSV itself and every existing regular file its ``path`` column names (relative to
    the CSV's folder), as (name in the record, absolute path)."""
    base = os.path.dirname(os.path.abspath(csv_path))
    files = [(os.path.basename(csv_path), csv_path)]
    try:
        with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as f:
            for row in csv.DictReader(f):
                relative = (row.get("path") or "").strip()
                if relative and "\0" not in relative:
                    full = os.path.normpath(os.path.join(base, relative))
                    files.append((os.path.relpath(full, base), full))
    except (OSError, csv.Error):
        pass  # the reader names the problem; the record keeps what it could list
    return files


def _walk_files(folder):
    files = []
    for parent, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(parent, name)
            files.append((os.path.relpath(full, folder), full))
    return files


def _previous_run_files(run_dir):
    """The previous run's files this study reads: every file of the checkpoint its export
    converted and its shards' manifest; none when it is no longer a run row 14 can start
    from (the comparison then counts them removed)."""
    from thyroid.datasets.shards import MANIFEST_NAME
    from thyroid.study.previous_run import PreviousRunError, previous_run
    try:
        previous = previous_run(run_dir)
    except PreviousRunError:
        return []
    files = sorted(glob.glob(glob.escape(previous.checkpoint) + ".*"))
    files.append(os.path.join(previous.shards_dir, MANIFEST_NAME))
    return [(os.path.relpath(full, previous.run_dir), full) for full in files]


def _source_files(path, name=None):
    if is_previous_run(name):
        return _previous_run_files(path)
    if os.path.isdir(path):
        return _walk_files(path)
    if os.path.isfile(path):
        return _csv_listed_files(path) if path.lower().endswith(".csv") else \
            [(os.path.basename(path), path)]
    return []


def _entry(name, full, known):
    """The file's entry; its hash reused from ``known`` when size and mtime are unchanged."""
    try:
        stat = os.stat(full)
    except OSError:
        return None
    if not os.path.isfile(full):
        return None
    previous = known.get(name)
    if previous and previous.size == stat.st_size and previous.mtime_ns == stat.st_mtime_ns:
        return previous
    try:
        digest = file_sha256(full)
    except OSError:
        return None
    return FileEntry(name, stat.st_size, stat.st_mtime_ns, digest)


def record_source(path, known=None, source=None):
    """Sorted FileEntry of every regular file of one source (``source``: its name)."""
    known = {entry.path: entry for entry in known or ()}
    entries = {}
    for name, full in _source_files(path, source):
        entry = _entry(name, full, known)
        if entry is not None:
            entries[name] = entry
    return [entries[name] for name in sorted(entries)]


def record_sources(study, known=None):
    """{source name: [FileEntry, ...]} of the study's data now."""
    known = known or {}
    return {name: record_source(path, known.get(name), name) for name, path in
            study_sources(study).items()}


def compare(recorded, current):
    """[DataChange] for every source whose files differ by name or content."""
    changes = []
    for name in sorted(set(recorded) | set(current)):
        before = {e.path: e.sha256 for e in recorded.get(name, ())}
        after = {e.path: e.sha256 for e in current.get(name, ())}
        added = len(after.keys() - before.keys())
        removed = len(before.keys() - after.keys())
        modified = sum(before[p] != after[p] for p in before.keys() & after.keys())
        if added or removed or modified:
            changes.append(DataChange(name, added, removed, modified))
    return changes


def to_json(record):
    return {name: [dataclasses.asdict(e) for e in entries] for name, entries in record.items()}


def from_json(saved):
    """The record from plan.json; raises ValueError when it is not one."""
    if not isinstance(saved, dict):
        raise ValueError("its data record is not a mapping")
    try:
        return {str(name): [FileEntry(str(e["path"]), int(e["size"]), int(e["mtime_ns"]),
                                      str(e["sha256"])) for e in entries]
                for name, entries in saved.items()}
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"its data record cannot be read ({error})") from None


def content_listing(record, names):
    """[(source, path, sha256)] of the named sources: what the jobs' fingerprints hash."""
    return [(name, e.path, e.sha256) for name in names for e in record.get(name, ())]
