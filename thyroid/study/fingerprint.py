"""A job's fingerprint: what its result depends on, hashed. A resumed study skips a job whose
committed result carries the fingerprint the job would have now.

It covers the job itself, the study's settings (all but where the run goes), the version of
``thyroid``, the fingerprints and statuses of the job's inputs, and for the jobs that read the
user's folders the content hashes of their files as the plan recorded them
(``study.data_record``: a resumed run whose data changed is refused before any job runs, and a
file only touched keeps its hash)."""

import dataclasses
import hashlib
import json

import thyroid
from thyroid.study import data_record, kinds
from thyroid.study.results import read_result

# Settings that say where the run goes, not what it computes.
PLACE_SETTINGS = ("output_dir", "run_name")
# Settings added after runs were already planned, left out while at their default: a run
# planned before they existed keeps its jobs' fingerprints (and resumes without redoing them).
LATER_SETTINGS = {"crop_variants": (), "augment": "standard", "tta": False}


def _at_default(name, value):
    default = LATER_SETTINGS[name]
    return tuple(value) == default if isinstance(default, tuple) else value == default


def _source_listing(plan, job):
    """The recorded content of the user's sources the job's kind reads, or None."""
    reads = kinds.get(job.kind).sources
    if reads is None:
        return None
    record = plan.sources or {}
    listing = data_record.content_listing(record, [name for name in record if reads(name)])
    # None when it reads none of this study's sources (the shards job without --init_from),
    # so runs planned before that job read one keep their fingerprints.
    return listing or None


def job_fingerprint(plan, job):
    settings = {k: v for k, v in plan.study.to_json().items() if k not in PLACE_SETTINGS
                and not (k in LATER_SETTINGS and _at_default(k, v))}
    inputs = {}
    for job_id in job.inputs:
        # The input's status too: an input that failed and then ran ok keeps its fingerprint,
        # but the jobs after it (the summaries) must not count as done on what it left before.
        result = read_result(plan.run_dir, job_id)
        inputs[job_id] = [result.fingerprint, result.status] if result else None
    parts = {"job": dataclasses.asdict(job), "study": settings, "inputs": inputs,
             "version": thyroid.__version__, "sources": _source_listing(plan, job)}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
