"""The web app under load and abuse: status counts, latency, peak memory, exact answers.

    python -m bench.serve_load [--requests=300] [--clients=8]

Fine-tunes a tiny EfficientNet-Lite0 (random init, 64x64, a few steps) on synthetic shards,
exports it (float), starts ``python -m thyroid.serve`` on it in a subprocess with a token and
the default limits, and sends a seeded mix of requests from N concurrent clients: good JPEG and
PNG scans, large good images just under the 16-Mpx limit, malformed uploads (truncated, random
bytes, text, empty, GIF, missing field, too many form parts, over 10 and 30 MB) and PNGs whose header
declares a huge image in a few hundred bytes. Records the status counts, the 5xx (must be 0),
p50/p95 latency of good answers, the server's peak RSS (VmHWM; must stay under 2 GB) and
whether every good answer equals ``python -m thyroid.predict``'s probability for that file.
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib

import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

TOKEN = "bench-" + uuid.uuid4().hex
RSS_LIMIT_KIB = 2 * 1024 * 1024
LARGE_SIDE = 3990  # 15.9 Mpx: the largest square under the default 16-Mpx limit
# Share of each kind in the request mix (the rest are good scans).
MIX = {"large_good": 0.03, "malformed": 0.32, "huge_header": 0.15}


# ----------------------------------------------------------------------------- model

def build_model(work, steps):
    """Synthetic shards -> tiny fine-tuned efficientnet_lite0 -> float export folder."""
    from thyroid.deploy.export import export_model
    from thyroid.training.run import train
    from thyroid.training.run_config import RunConfig
    shard_dir = common.synthetic_shards(work, num_cases=30)
    train_dir = os.path.join(work, "train")
    train(RunConfig(model="efficientnet_lite0", mode="finetune", dataset_dir=shard_dir,
                    checkpoint_dir=os.path.join(work, "no_checkpoints"),
                    allow_random_init=True, image_size=64, batch_size=16,
                    max_number_of_steps=steps, log_every_n_steps=1000,
                    save_interval_steps=1000, eval_every_n_steps=1000), train_dir)
    return export_model(train_dir, os.path.join(work, "export")).output_dir


# ----------------------------------------------------------------------------- payloads

def declared_png(width, height):
    """A valid PNG header declaring width x height, with a few bytes of data."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


def good_files(work, count):
    """Synthetic DDTI JPEGs, every other one re-saved as PNG, and two large PNG scans."""
    ddti_dir = os.path.join(work, "synthetic", "ddti")
    jpegs = sorted(os.path.join(ddti_dir, n) for n in os.listdir(ddti_dir) if n.endswith(".jpg"))
    out_dir = os.path.join(work, "good")
    os.makedirs(out_dir)
    good = []
    for index, path in enumerate(jpegs[:count]):
        if index % 2:
            target = os.path.join(out_dir, f"scan{index}.png")
            Image.open(path).convert("RGB").save(target)
        else:
            target = shutil.copy(path, os.path.join(out_dir, f"scan{index}.jpg"))
        good.append(target)
    large = []
    for index, path in enumerate(jpegs[-2:]):
        target = os.path.join(out_dir, f"large{index}.png")
        Image.open(path).convert("RGB").resize((LARGE_SIDE, LARGE_SIDE)).save(target)
        large.append(target)
    return good, large


def malformed_payloads(sample):
    """name -> (fields, files) of a multipart upload that must be refused with a 4xx."""
    with open(sample, "rb") as f:
        data = f.read()
    rng = np.random.RandomState(5)
    gif = os.path.join(os.path.dirname(sample), "scan.gif")
    Image.open(sample).convert("RGB").save(gif)
    with open(gif, "rb") as f:
        gif_data = f.read()
    return {
        "truncated": ({}, {"image": ("t.png", data[:len(data) // 3])}),
        "random_bytes": ({}, {"image": ("r.png", rng.bytes(20000))}),
        "text": ({}, {"image": ("notes.txt", b"not an image at all")}),
        "empty": ({}, {"image": ("e.png", b"")}),
        "gif": ({}, {"image": ("g.png", gif_data)}),
        "missing_field": ({}, {"file": ("m.png", data)}),
        "too_many_parts": ({f"x{i}": "y" for i in range(30)}, {"image": ("p.png", data)}),
        "over_10mb": ({}, {"image": ("big.png", rng.bytes(10 * 1024 * 1024 + 4096))}),
        "over_30mb": ({}, {"image": ("bigger.png", rng.bytes(30 * 1024 * 1024))}),
    }


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def schedule(count, good, large, malformed, seed):
    """A seeded list of (kind, name, fields, files)."""
    rng = random.Random(seed)
    huge = {f"{w}x{h}": declared_png(w, h) for w, h in ((20000, 20000), (8000, 8000),
                                                         (5000, 4000))}
    plan = []
    for _ in range(count):
        draw = rng.random()
        if draw < MIX["large_good"]:
            path = rng.choice(large)
            plan.append(("large_good", path, {}, {"image": (os.path.basename(path), path)}))
        elif draw < MIX["large_good"] + MIX["malformed"]:
            name = rng.choice(sorted(malformed))
            plan.append(("malformed", name) + malformed[name])
        elif draw < MIX["large_good"] + MIX["malformed"] + MIX["huge_header"]:
            name = rng.choice(sorted(huge))
            plan.append(("huge_header", name, {}, {"image": (name + ".png", huge[name])}))
        else:
            path = rng.choice(good)
            plan.append(("good", path, {}, {"image": (os.path.basename(path), path)}))
    return plan


# ----------------------------------------------------------------------------- server

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, port, log):
    env = dict(os.environ, THYROID_AUTH_TOKEN=TOKEN, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-m", "thyroid.serve", f"--model={model_dir}",
                                f"--port={port}"], cwd=common.REPO_DIR, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log.name}")
        try:
            if request(port, "GET", "/api/health")[0] == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not answer within 180 s")


def request(port, method, path, body=None, content_type=None):
    """-> (status, parsed JSON or None, seconds, headers)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    return response.status, payload, seconds, dict(response.getheaders())


def proc_status_kib(pid, field):
    """``field`` (VmHWM: peak RSS, VmRSS: current) of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def send(port, item):
    kind, name, fields, files = item
    loaded = {k: (fname, open(v, "rb").read() if kind in ("good", "large_good") else v)
              for k, (fname, v) in files.items()}
    body, content_type = multipart(fields, loaded)
    try:
        status, payload, seconds, headers = request(port, "POST", "/api/predict", body,
                                                    content_type)
    except (OSError, http.client.HTTPException) as error:
        # The server may close an over-limit upload before reading it all.
        return {"kind": kind, "name": name, "status": f"closed ({type(error).__name__})",
                "seconds": None, "error": str(error)}
    return {"kind": kind, "name": name, "status": status, "seconds": seconds,
            "probability": (payload or {}).get("probability"),
            "error": (payload or {}).get("error"), "server": headers.get("Server"),
            "frame_options": headers.get("X-Frame-Options")}


# ----------------------------------------------------------------------------- report

def reference_probabilities(model_dir, paths):
    """P(malignant) of each file from ``python -m thyroid.predict --json``."""
    result = subprocess.run([sys.executable, "-m", "thyroid.predict", f"--model={model_dir}",
                             "--json", *paths], cwd=common.REPO_DIR, capture_output=True,
                            text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return {row["file"]: row["probability"] for row in json.loads(result.stdout)["results"]}


def percentile(values, q):
    return float(np.percentile(values, q)) if values else None


def summarize(results, reference, peak_kib, wall):
    counts = collections.Counter((r["kind"], str(r["status"])) for r in results)
    answered = [r for r in results if r["kind"] in ("good", "large_good") and r["status"] == 200]
    diffs = [abs(r["probability"] - reference[r["name"]]) for r in answered]
    latency = {kind: [r["seconds"] for r in answered if r["kind"] == kind]
               for kind in ("good", "large_good")}
    return {
        "requests": len(results), "wall_s": wall,
        "status_counts": {f"{k} {s}": n for (k, s), n in sorted(counts.items())},
        "errors_by_case": dict(collections.Counter(
            f"{r['kind']}:{r['name']} -> {r['status']} {(r.get('error') or '')[:90]}"
            for r in results
            if r["kind"] in ("malformed", "huge_header"))),
        "5xx": sum(1 for r in results if str(r["status"]).startswith("5")),
        "good_not_200": sum(1 for r in results if r["kind"] in ("good", "large_good")
                            and r["status"] != 200),
        "latency_good_s": {"p50": percentile(latency["good"], 50),
                           "p95": percentile(latency["good"], 95), "n": len(latency["good"])},
        "latency_large_s": {"p50": percentile(latency["large_good"], 50),
                            "p95": percentile(latency["large_good"], 95),
                            "n": len(latency["large_good"])},
        "peak_rss_mib": peak_kib / 1024 if peak_kib else None,
        "answers_checked": len(diffs), "max_abs_diff_vs_predict": max(diffs) if diffs else None,
        "server_headers": sorted({f"{r.get('server')} / {r.get('frame_options')}"
                                  for r in results if r.get("server")}),
    }


def cpu_description():
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name", "?").strip(),
            "avx512": any(f.startswith("avx512") for f in flags),
            "amx": any(f.startswith("amx") for f in flags), "cpus": fields.get("CPU(s)", "?").strip()}


def markdown(summary, args, cpu):
    checks = [("5xx answers", summary["5xx"], "0", summary["5xx"] == 0),
              ("good images not answered 200", summary["good_not_200"], "0",
               summary["good_not_200"] == 0),
              ("peak server RSS (MiB, VmHWM)", summary["peak_rss_mib"], "< 2048",
               summary["peak_rss_mib"] is not None and summary["peak_rss_mib"] < 2048),
              ("good answers equal to thyroid.predict (max abs diff)",
               summary["max_abs_diff_vs_predict"], "<= 1e-6",
               summary["max_abs_diff_vs_predict"] is not None
               and summary["max_abs_diff_vs_predict"] <= 1e-6)]
    lat = [("good scans", summary["latency_good_s"]), ("large (15.9 Mpx) PNGs",
                                                        summary["latency_large_s"])]
    lines = [f"`lscpu`: {cpu['model']}, {cpu['cpus']} CPUs, AVX-512 "
             f"{'yes' if cpu['avx512'] else 'no'}, AMX {'yes' if cpu['amx'] else 'no'}. "
             f"{summary['requests']} requests from {args.clients} concurrent clients in "
             f"{summary['wall_s']:.1f} s; server: `python -m thyroid.serve` defaults (2 workers, "
             "queue 16, 16 Mpx, 10 MB) with a token; float TFLite EfficientNet-Lite0 at 64x64 "
             "with Grad-CAM.", "",
             common.format_table(["measure", "value", "target", "met"],
                                 [list(c) for c in checks]), "",
             common.format_table(["answers", "n", "p50 s", "p95 s"],
                                 [[name, v["n"], v["p50"], v["p95"]] for name, v in lat]), "",
             common.format_table(["kind and status", "count"],
                                 sorted(summary["status_counts"].items())), "",
             common.format_table(["refused case -> status and message", "count"],
                                 sorted(summary["errors_by_case"].items())), "",
             f"Headers seen (Server / X-Frame-Options): {', '.join(summary['server_headers'])}.",
             "", "Notes: `closed` is waitress refusing a body over the upload limit + 1 MB from "
             "its Content-Length and closing the connection while the client is still sending "
             "(no 5xx, nothing buffered). The server holds "
             f"{summary['idle_rss_mib']:.0f} MiB before the first request (the model draws its "
             "own Grad-CAM: no TensorFlow unless ai-edge-litert is missing and tf.lite stands "
             "in); images over 4 Mpx are decoded one at a time, which bounds "
             "the peak. Large-image latency includes the wait for that slot, PNG decoding and "
             "the scan-field search on the full 16 Mpx (not broken down here)."]
    return "\n".join(lines), all(c[3] for c in checks)


def run(args, work):
    log = open(os.path.join(work, "server.log"), "w+")
    model_dir = build_model(work, args.steps)
    good, large = good_files(work, 12)
    plan = schedule(args.requests, good, large, malformed_payloads(good[0]), args.seed)
    reference = reference_probabilities(model_dir, good + large)
    port = free_port()
    process = start_server(model_dir, port, log)
    try:
        idle_kib = proc_status_kib(process.pid, "VmRSS")
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda item: send(port, item), plan))
        wall = time.perf_counter() - started
        assert request(port, "GET", "/api/health")[0] == 200, "server stopped answering"
        peak = proc_status_kib(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    return dict(summarize(results, reference, peak, wall), idle_rss_mib=idle_kib / 1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    common.quiet_tf()
    work = tempfile.mkdtemp(prefix="bench-serve-")
    try:
        summary = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    cpu = cpu_description()
    text, met = markdown(summary, args, cpu)
    print(text)
    common.write_results("serve_load", dict(summary, cpu=cpu, args=vars(args)), text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
