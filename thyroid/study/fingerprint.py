"""A job's fingerprint: what its result depends on, hashed. A resumed study skips a job whose
committed result carries the fingerprint the job would have now.

It covers the job itself, the study's settings (all but where the run goes), the version of
``thyroid``, the fingerprints of the job's inputs, and for the jobs that read the user's
folders a listing of those folders (names, sizes, modification times: cheap, and any edit
changes it)."""

import dataclasses
import hashlib
import json
import os

import thyroid
from thyroid.study import kinds
from thyroid.study.results import read_result

# Settings that say where the run goes, not what it computes.
PLACE_SETTINGS = ("output_dir", "run_name")
# Settings added after runs were already planned, left out while at their default: a run
# planned before they existed keeps its jobs' fingerprints (and resumes without redoing them).
LATER_SETTINGS = {"crop_variants": ()}


def folder_listing(path):
    """Sorted (relative path, size, mtime) of every file below ``path`` (or of the file)."""
    if not path:
        return []
    if os.path.isfile(path):
        stat = os.stat(path)
        return [(os.path.basename(path), stat.st_size, stat.st_mtime_ns)]
    listing = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            listing.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return listing


def _source_listing(plan, job):
    """A listing of each of the user's folders the job's kind reads, or None."""
    sources = kinds.get(job.kind).sources
    if sources is None:
        return None
    return {name: folder_listing(path) for name, path in sources(plan.study).items()}


def job_fingerprint(plan, job):
    settings = {k: v for k, v in plan.study.to_json().items() if k not in PLACE_SETTINGS
                and not (k in LATER_SETTINGS and tuple(v) == LATER_SETTINGS[k])}
    inputs = {}
    for job_id in job.inputs:
        result = read_result(plan.run_dir, job_id)
        inputs[job_id] = result.fingerprint if result else None
    parts = {"job": dataclasses.asdict(job), "study": settings, "inputs": inputs,
             "version": thyroid.__version__, "sources": _source_listing(plan, job)}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
