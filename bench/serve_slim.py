"""The serving install (``pip install .``) against the research install (``pip install
'.[study]'``): installed size, cold start to the first answer, peak memory and answers per
second of ``python -m thyroid.serve`` pinned to 2 cores, on the same export folder.

    python -m bench.serve_slim [--serving_python=PY] [--full_python=PY] [--export=DIR]
        [--requests=200] [--clients=4] [--cold_starts=3] [--cores=0,1] [--wheelhouse=DIR]
        [--publish]

Without ``--serving_python`` / ``--full_python`` each install is made here, in the work folder,
from a copy of this checkout (``make_venv``; after the first time pip's cache serves the
wheels). Without ``--export`` a tiny EfficientNet-Lite0 is fine-tuned and exported (float, with
its ``cam`` output) by this process, which needs the research install. Servers run from the
work folder with no PYTHONPATH, so each imports the ``thyroid`` its own install holds.
Installed size: the files under the interpreter's site-packages and the folders its ``.pth``
files add. Cold start: from starting the server process to the first answer of
``/api/predict``, the median of ``--cold_starts``. Throughput: ``--requests`` good scans from
``--clients`` concurrent clients to a server pinned to ``--cores``; peak memory is the server's
VmHWM after them. Every answer is checked against the serving install's.

Writes ``bench/results/serve_slim.json``; ``--publish`` also replaces its section of
``bench/RESULTS.md`` (measure on an otherwise idle machine).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common
from bench.serve_load import free_port, multipart, proc_status_kib

# What the copy of the checkout leaves out: version control, venvs and caches anywhere; the
# top level's build output, results and downloaded checkpoints (thyroid/checkpoints/ is code).
IGNORED_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info",
                                          ".pytest_cache")
IGNORED_AT_TOP = ("build", "dist", "results", "exp_cache", "checkpoints")
PIP_FLAGS = ("--quiet", "--retries", "1", "--timeout", "60")


class InstallError(RuntimeError):
    """pip could not make the install; ``output`` is what it said."""

    def __init__(self, message, output):
        super().__init__(message)
        self.output = output

    @property
    def offline(self):
        """Whether pip failed for want of a package index (no network, nothing cached)."""
        markers = ("Could not find a version", "NewConnectionError", "Network is unreachable",
                   "Temporary failure in name resolution", "No matching distribution")
        return any(marker in self.output for marker in markers)


def clean_env(**extra):
    """The environment without PYTHONPATH (a server imports its own install's thyroid)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return dict(env, **extra)


def copy_source(repo_dir, target):
    """A copy of the checkout to install from (the original is never built in)."""
    top = os.path.abspath(repo_dir)

    def ignored(folder, names):
        found = set(IGNORED_ANYWHERE(folder, names))
        if os.path.abspath(folder) == top:
            found |= set(IGNORED_AT_TOP) & set(names)
        return found
    shutil.copytree(repo_dir, target, ignore=ignored)
    return str(target)


def make_venv(target, source, extras="", wheelhouse=None, base_python=None):
    """A fresh venv at ``target`` with ``pip install source[extras]``; -> its python.
    ``wheelhouse``: install from that folder only (no index)."""
    base = base_python or getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(target)], check=True, env=clean_env())
    python = os.path.join(str(target), "bin", "python")
    index = ("--no-index", "--find-links", wheelhouse) if wheelhouse else ()
    done = subprocess.run([python, "-m", "pip", "install", *PIP_FLAGS, *index,
                           source + (f"[{extras}]" if extras else "")],
                          capture_output=True, text=True, env=clean_env(), cwd=str(target))
    if done.returncode != 0:
        raise InstallError(f"pip install {source}[{extras}] failed", done.stdout + done.stderr)
    return python


def installed_bytes(python):
    """Bytes of the files under ``python``'s site-packages and the folders its .pth add."""
    code = ("import json, site, sysconfig; paths = sysconfig.get_paths(); "
            "print(json.dumps(sorted({paths['purelib'], paths['platlib']})))")
    roots = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                      check=True, env=clean_env()).stdout)
    for root in list(roots):
        for name in os.listdir(root):
            if name.endswith(".pth"):
                with open(os.path.join(root, name)) as f:
                    roots += [line.strip() for line in f if os.path.isdir(line.strip())]
    seen, total = set(), 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                status = os.lstat(path)
                if status.st_ino not in seen:
                    seen.add(status.st_ino)
                    total += status.st_size
    return total


def importable(python, module):
    done = subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                          env=clean_env())
    return done.returncode == 0


def start_server(python, export_dir, port, work, cores=None):
    """``python -m thyroid.serve`` on loopback (pinned to ``cores``); -> the process."""
    def pin():
        if cores:
            os.sched_setaffinity(0, cores)
    log = open(os.path.join(work, f"server-{port}.log"), "w")
    return subprocess.Popen([python, "-m", "thyroid.serve", f"--model={export_dir}",
                             "--host=127.0.0.1", f"--port={port}"], cwd=work, env=clean_env(),
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)


def post_image(port, path, timeout=120):
    """-> (status, JSON answer) of one upload."""
    import http.client
    with open(path, "rb") as f:
        body, content_type = multipart({}, {"image": (os.path.basename(path), f.read())})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/api/predict", body=body,
                           headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def first_answer(python, export_dir, image, work, deadline_s=300):
    """Seconds from starting the server to its first answer of /api/predict, and that answer."""
    port = free_port()
    started = time.perf_counter()
    process = start_server(python, export_dir, port, work)
    try:
        while time.perf_counter() - started < deadline_s:
            if process.poll() is not None:
                raise RuntimeError(f"{python}: the server exited with {process.returncode}")
            try:
                status, answer = post_image(port, image)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return time.perf_counter() - started, answer
            raise RuntimeError(f"{python}: /api/predict answered {status}: {answer}")
        raise RuntimeError(f"{python}: no answer within {deadline_s} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def throughput(python, export_dir, images, work, args):
    """(answers per second, peak RSS MiB, {file: probability}) of a server on ``args.cores``."""
    port = free_port()
    process = start_server(python, export_dir, port, work, args.cores)
    try:
        first_answer_wait(port, images[0], process)
        plan = [images[k % len(images)] for k in range(args.requests)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(lambda path: (path, post_image(port, path)), plan))
        wall = time.perf_counter() - started
        peak = proc_status_kib(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.wait(timeout=30)
    good = [(path, answer) for path, (status, answer) in answers if status == 200]
    return len(good) / wall, peak / 1024, {path: answer["probability"] for path, answer in good}


def first_answer_wait(port, image, process, deadline_s=300):
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if post_image(port, image)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no answer within {deadline_s} s")


def measure(label, python, export_dir, images, work, args):
    seconds = [first_answer(python, export_dir, images[0], work)[0]
               for _ in range(args.cold_starts)]
    rate, peak_mib, answers = throughput(python, export_dir, images, work, args)
    return {"install": label, "python": python, "installed_mib": installed_bytes(python) / 2**20,
            "tensorflow_importable": importable(python, "tensorflow"),
            "cold_start_s": statistics.median(seconds), "cold_starts_s": seconds,
            "answers_per_s": rate, "peak_rss_mib": peak_mib, "answers": answers}


def markdown(results, args, max_diff):
    rows = [[r["install"], f"{r['installed_mib']:.0f}", "yes" if r["tensorflow_importable"]
             else "no", f"{r['cold_start_s']:.2f}", f"{r['peak_rss_mib']:.0f}",
             f"{r['answers_per_s']:.1f}"] for r in results]
    return "\n".join([
        f"`python -m thyroid.serve` on one float export; {args.requests} good scans from "
        f"{args.clients} clients to a server pinned to cores {args.cores}; cold start = median "
        f"of {args.cold_starts}. Largest |probability difference| between the installs' "
        f"answers: {max_diff:.2e}.", "",
        common.format_table(["install", "installed MiB", "TensorFlow importable",
                             "cold start s", "peak RSS MiB", "answers/s"], rows)])


def prepare(args, work):
    """(serving python, full python, export folder, scan files)."""
    source = None
    if not (args.serving_python and args.full_python):
        source = copy_source(common.REPO_DIR, os.path.join(work, "src"))
    serving = args.serving_python or make_venv(os.path.join(work, "serving"), source,
                                               wheelhouse=args.wheelhouse)
    full = args.full_python or make_venv(os.path.join(work, "full"), source, "study",
                                         wheelhouse=args.wheelhouse)
    export_dir = args.export
    if export_dir is None:
        from bench.serve_load import build_model
        export_dir = build_model(work, args.steps)  # writes work/synthetic too
    else:
        from thyroid.datasets import synthetic
        synthetic.generate(os.path.join(work, "synthetic"), num_cases=args.images, seed=0,
                           width=560, height=360, num_local_cases=0)
    return serving, full, export_dir, scan_files(work, args.images)


def scan_files(work, count):
    """The first ``count`` synthetic DDTI frames (JPEG) under ``work/synthetic``."""
    folder = os.path.join(work, "synthetic", "ddti")
    found = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jpg"))
    return found[:count]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serving_python", help="python of an existing serving install")
    parser.add_argument("--full_python", help="python of an existing research install")
    parser.add_argument("--export", help="export folder to serve (default: trained here)")
    parser.add_argument("--wheelhouse", help="install from this folder only (no index)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--cold_starts", type=int, default=3)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cores", type=lambda text: [int(c) for c in text.split(",")],
                        default=[0, 1])
    parser.add_argument("--publish", action="store_true",
                        help="also replace this benchmark's section of bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    common.quiet_tf()
    work = tempfile.mkdtemp(prefix="bench-serve-slim-")
    try:
        serving, full, export_dir, images = prepare(args, work)
        results = [measure("serving (pip install .)", serving, export_dir, images, work, args),
                   measure("research (pip install '.[study]')", full, export_dir, images,
                           work, args)]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    reference = results[0]["answers"]
    max_diff = max(abs(p - reference[path]) for path, p in results[1]["answers"].items())
    text = markdown(results, args, max_diff)
    print(text)
    payload = {"results": results, "max_abs_diff": max_diff, "args": vars(args)}
    if args.publish:
        common.write_results("serve_slim", payload, text)
    else:
        os.makedirs(common.RESULTS_DIR, exist_ok=True)
        path = os.path.join(common.RESULTS_DIR, "serve_slim.json")
        with open(path, "w") as f:
            json.dump(dict(payload, machine=common.machine()), f, indent=2, default=str)
        print(f"wrote {path} (not published: --publish replaces bench/RESULTS.md's section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
