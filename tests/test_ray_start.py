"""Joining a Ray cluster as docs/SCALING.md tells a user to: a head started with Ray's own
command line (``ray start --head``, on loopback, with token authentication), joined by
``python -m thyroid.study --executor=ray --ray_address=...``; and the one line a join that
cannot work ends with, in seconds (never Ray's minutes of retries). Also Ray started by the
study itself: loopback only, and no token file left in the home folder."""

import json
import os
import subprocess
import sys
import time

import pytest

from ray_head import (clean_env, descendants, free_port, is_loopback, listening_addresses,
                      start_head, stop_head)
from study_runs import (REPO, comparable_summary, read_predictions, same_summary_row,
                        study_command)

pytest.importorskip("ray", reason="the Ray tests need Ray (pip install -e .[test])")

# A join that cannot work must say so within this (the ask: about 30 s).
JOIN_SECONDS = 30
# Few rows, so that the study on the head ends in about a minute: a network trained from
# scratch (1) and frozen features (8).
ROWS = ("1", "8")


@pytest.fixture(scope="module")
def head():
    """One head for the module, 2 CPUs (one job of 2 threads at a time); stopped at the end by
    the ids of the processes it started."""
    started = start_head(num_cpus=2)
    yield started
    assert stop_head(started) == [], "Ray processes outlived the head's SIGTERM"


def study(output_dir, *flags, env, timeout=120, checkpoint_dir=None):
    """(finished ``python -m thyroid.study --quick`` process, seconds it took)."""
    start = time.monotonic()
    done = subprocess.run(study_command(output_dir, *flags, checkpoint_dir=checkpoint_dir),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - start


def assert_one_line_error(done, seconds, output_dir, *expected):
    """The study ended in seconds with one error line holding ``expected``, Ray's own
    warnings at most two lines, and no run folder."""
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("study: error: ")]
    assert done.returncode != 0 and errors == lines[-1:], done.stderr[-3000:]
    assert len(lines) <= 3, done.stderr[-3000:]  # no retry after retry
    assert seconds < JOIN_SECONDS, (seconds, lines[-1])
    for text in expected:
        assert text in lines[-1], lines[-1]
    assert not (output_dir / "run").exists()


def test_the_head_listens_on_loopback_only(head):
    listening = listening_addresses(list(descendants(head.process.pid)))
    assert head.port in set().union(*listening.values()), listening
    assert all(is_loopback(address) for address in listening), listening


def test_the_study_joins_a_head_started_with_ray_start(head, quick_study, tmp_path):
    """Same predictions and summary rows as the shared local run, for the rows it ran, with as
    many threads per job (2) as the local executor uses on a 2-core machine."""
    if os.cpu_count() != 2:
        pytest.skip("the local executor's default thread count equals 2 CPUs per job only "
                    "on a 2-core machine")
    _, local_dir = quick_study
    done, _ = study(tmp_path, "--executor=ray", f"--ray_address={head.address}",
                    "--cpus_per_job=2", f"--rows={','.join(ROWS)}", env=head.driver_env(),
                    timeout=600, checkpoint_dir=local_dir.parent / "checkpoints")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ray executor" in done.stderr
    ray_dir = tmp_path / "run"
    reference = [p for p in read_predictions(local_dir) if p["row_id"] in ROWS]
    joined = read_predictions(ray_dir)
    key = ("row_id", "repeat", "fold", "image", "label")
    assert [tuple(p[k] for k in key) for p in joined] == \
        [tuple(p[k] for k in key) for p in reference]
    assert all(abs(float(p["prob"]) - float(q["prob"])) <= 1e-6
               for p, q in zip(joined, reference))
    summary, local_summary = comparable_summary(ray_dir), comparable_summary(local_dir)
    assert {int(r) for r in ROWS} == set(summary)
    for row, values in summary.items():  # p_vs_best compares with the best row run
        assert same_summary_row(values, local_summary[row], ignore=("p_vs_best",)), row
    fit = json.loads(next((ray_dir / "jobs").glob("fit-8-*/result.json")).read_text())
    assert fit["worker"]["node"], fit  # it ran as a Ray task on the head's node


@pytest.mark.parametrize("settings, expected", [
    ({"RAY_AUTH_MODE": None}, ("authentication token", "RAY_AUTH_MODE is not 'token'",
                               "set RAY_AUTH_MODE=token")),
    ({"RAY_AUTH_TOKEN_PATH": None, "RAY_AUTH_TOKEN": "0" * 64},
     ("refused this process's authentication token", "ray get-auth-token")),
], ids=["no-token-sent", "wrong-token"])
def test_a_join_without_the_heads_token_says_so_in_one_line(head, tmp_path, settings, expected):
    done, seconds = study(tmp_path, "--executor=ray", f"--ray_address={head.address}",
                          env=head.driver_env(**settings))
    assert_one_line_error(done, seconds, tmp_path, f"--ray_address={head.address}: ", *expected)


def test_the_heads_client_port_is_named_as_not_a_head(head, tmp_path):
    address = f"127.0.0.1:{head.client_port}"
    done, seconds = study(tmp_path, "--executor=ray", f"--ray_address={address}",
                          env=head.driver_env())
    assert_one_line_error(done, seconds, tmp_path, "not a Ray head", "6379 by default")


# Rewrites the Ray version the head recorded for its cluster (Ray's own record, which a
# joining driver compares with its own version), printing the record as it was; or puts back
# the record given on stdin.
HEAD_VERSION = """
import json, sys
from ray._raylet import GcsClient
key, namespace = b"CLUSTER_METADATA", b"cluster"
client = GcsClient(address=sys.argv[1])
if sys.argv[2] == "restore":
    client.internal_kv_put(key, sys.stdin.read().encode(), True, namespace)
else:
    record = client.internal_kv_get(key, namespace)
    changed = dict(json.loads(record), ray_version=sys.argv[2])
    client.internal_kv_put(key, json.dumps(changed).encode(), True, namespace)
    print(record.decode())
"""


def test_a_head_of_another_ray_version_is_named_in_one_line(head, tmp_path):
    def head_version(value, stdin=None):
        done = subprocess.run([sys.executable, "-c", HEAD_VERSION, head.address, value],
                              env=head.driver_env(), input=stdin, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    record = head_version("0.0.1")
    try:
        done, seconds = study(tmp_path, "--executor=ray", f"--ray_address={head.address}",
                              env=head.driver_env())
    finally:
        head_version("restore", stdin=record)
    assert_one_line_error(done, seconds, tmp_path, "Ray reported a version mismatch",
                          "Ray: 0.0.1", "install the same Ray and Python on every node")


def closed_port_address():
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("case", ["unresolvable", "closed-port", "closed-port-env",
                                  "missing-token-file"])
def test_an_address_that_cannot_work_ends_in_one_line_within_seconds(tmp_path, case):
    env, flags = clean_env(), ["--executor=ray"]
    address = "nonexistent.invalid:6379" if case == "unresolvable" else closed_port_address()
    if case == "closed-port-env":
        env["RAY_ADDRESS"] = address
    else:
        flags.append(f"--ray_address={address}")
    if case == "missing-token-file":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(tmp_path / "no_token"))
    done, seconds = study(tmp_path, *flags, env=env, timeout=JOIN_SECONDS * 3)
    expected = {
        "unresolvable": ("--ray_address=nonexistent.invalid:6379: the host nonexistent.invalid "
                         "cannot be resolved",),
        "closed-port": (f"--ray_address={address}: nothing listens at {address} "
                        "(connection refused)", "ray start --head"),
        "closed-port-env": (f"RAY_ADDRESS={address}: nothing listens at {address}",),
        "missing-token-file": (f"RAY_AUTH_TOKEN_PATH={tmp_path / 'no_token'}: Ray's "
                               "authentication token file cannot be read",),
    }[case]
    assert_one_line_error(done, seconds, tmp_path, *expected)


@pytest.mark.parametrize("value", ["127.0.0.1:6379", ""])
def test_ray_address_without_the_ray_executor_is_refused(tmp_path, value):
    done, _ = study(tmp_path, f"--ray_address={value}", env=clean_env())
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == \
        [f"study: error: --ray_address={value}: needs --executor=ray"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["", "head", "head:port", "127.0.0.1:70000",
                                   "http://127.0.0.1:8265"])
def test_a_ray_address_that_is_not_host_port_is_refused(tmp_path, value):
    done, _ = study(tmp_path, "--executor=ray", f"--ray_address={value}", env=clean_env())
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"study: error: --ray_address={value}: expected HOST:PORT of the Ray head (the address "
        "`ray start --head` printed, e.g. 10.0.0.5:6379)"]
    assert not (tmp_path / "run").exists()


STARTED_HERE = """
import json, os, sys
sys.path.insert(0, {tests!r})
from ray_head import descendants, is_loopback, listening_addresses
from thyroid.study.ray_executor import RayExecutor, RayOptions
executor = RayExecutor(RayOptions())
executor.start()
try:
    listening = listening_addresses([os.getpid(), *descendants(os.getpid())])
    print(json.dumps({{str(address): is_loopback(address) for address in listening}}))
finally:
    executor.stop()
"""


def test_ray_started_here_listens_on_loopback_only_and_leaves_no_token_file(tmp_path):
    env = clean_env()
    env["HOME"] = str(tmp_path)
    code = STARTED_HERE.format(tests=os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    listening = json.loads(done.stdout.strip().splitlines()[-1])
    assert listening and all(listening.values()), listening
    assert not (tmp_path / ".ray").exists()  # its token lived in its processes only
