"""The study's frozen pass against the TFLite interpreter (XNNPACK) on the same frozen layers.

    python -m bench.frozen_pass_tflite [--cases=240] [--repeats=3]

EfficientNet-Lite0 with the converted ImageNet weights, bottleneck at 224 px, on synthetic
shards (240 cases with 2 augmented copies, ~700 records, as bench.bottleneck_throughput).
Images per second, medians of interleaved repeats, of:

  graph:          the TensorFlow graph (``frozen_network.FrozenNetwork``, the frozen pass
                  before this bench), batch 16, images already resized in memory, after a
                  warm-up batch;
  interpreter:    ``tf.lite`` / LiteRT interpreter with XNNPACK on the same layers converted
                  from that graph's session (``frozen_tflite``), same images, batch 16 (what
                  the study now runs) and batch 1 (the interpreter as the deployment runs it);
  project:        ``features.load_or_compute`` on a fresh cache (reads the shards, decodes,
                  resizes, builds and converts the network, writes the cache), with the engine
                  the study picks on this machine and with the graph engine.

Agreement: max |interpreter - graph| / max |graph| over every image for the bottleneck, and
on 64 images for the frozen prefix (128 px) and pooled layers (224 px). Goal: the study's
frozen pass >= 0.8 of the interpreter's images per second.
"""

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

MODEL, SIZE, BATCH = "efficientnet_lite0", 224, 16


class InMemory:
    """One engine's network over in-memory images, built and warmed up once; ``invoke``:
    images per interpreter invoke instead of the study's (``frozen_tflite.INVOKE_BATCH``)."""

    def __init__(self, spec, images, checkpoint, engine, batch_size, outputs=None, invoke=0,
                 model_dir=None):
        from thyroid.training import features, frozen_network, frozen_tflite
        self.outputs = outputs or (frozen_network.BOTTLENECK,)
        self.network = features.open_network(spec, images.shape[1], self.outputs, checkpoint,
                                             batch_size=batch_size, engine=engine,
                                             model_dir=model_dir)
        if invoke:
            path = features.converted_model_path(model_dir, spec, images.shape[1], self.outputs,
                                                 checkpoint, 0, ())
            with open(path, "rb") as f:
                self.network = frozen_tflite.TFLiteNetwork(
                    f.read(), {o: frozen_network.output_name(o) for o in self.outputs}, invoke)
        self.images, self.batch_size = images, batch_size
        self.network.run_batch(images[:batch_size])  # warm-up

    def run(self):
        parts = [self.network.run_batch(self.images[i:i + self.batch_size])
                 for i in range(0, len(self.images), self.batch_size)]
        return {o: np.concatenate([p[o] for p in parts]) for o in self.outputs}

    def close(self):
        self.network.close()


def project(spec, shard_dir, checkpoint, engine):
    """Every split's bottleneck into a fresh cache, as ``python -m thyroid.bottleneck``."""
    from thyroid import io_utils
    from thyroid.datasets import shards
    from thyroid.training import features, frozen_network
    cache_dir = tempfile.mkdtemp(prefix="bench-cache-")
    io_utils._FILE_DIGESTS.clear()  # a fresh process hashes the shards too
    try:
        return [features.load_or_compute(spec, shard_dir, split, frozen_network.BOTTLENECK,
                                         checkpoint, SIZE, cache_dir, engine=engine)
                for split in shards.SPLITS]
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def relative_error(got, expected):
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def agreement(spec, images, checkpoint):
    """{what: relative error} of the interpreter against the graph for each cached output."""
    from thyroid.preprocessing.resize import resize_batch
    from thyroid.training import features, frozen_network
    errors = {}
    prefix_outputs = (frozen_network.FROZEN_PREFIX, frozen_network.BOTTLENECK)
    for what, outputs, size in (("frozen prefix 128", prefix_outputs, 128),
                                ("pooled layers 224", (frozen_network.POOLED_LAYERS,), SIZE)):
        batch = images[:64] if size == SIZE else resize_batch(list(images[:64]), size)
        values = {}
        for engine in (features.TF_ENGINE, features.TFLITE_ENGINE):
            runner = InMemory(spec, batch, checkpoint, engine, BATCH, outputs)
            values[engine] = runner.run()
            runner.close()
        for output in outputs:
            errors[f"{what}: {output}"] = relative_error(values[features.TFLITE_ENGINE][output],
                                                         values[features.TF_ENGINE][output])
    return errors


def timed_rounds(runners, repeats):
    """{name: seconds stats}, each round running every runner once, in turn."""
    runs = {name: [] for name in runners}
    load = [common.load_average()]
    for _ in range(repeats):
        for name, run in runners.items():
            runs[name].append(common.timed(run)[0])
        load.append(common.load_average())
    return {name: common.summarize(seconds) for name, seconds in runs.items()}, load


def measure(args, work_dir):
    from bench.bottleneck_throughput import checkpoint_for
    from thyroid.datasets import shards
    from thyroid.nets import get_network
    from thyroid.preprocessing.resize import resize_batch
    from thyroid.training import features, frozen_network
    from thyroid.training.frozen_tflite import INVOKE_BATCH, interpreter_threads
    spec = get_network(MODEL)
    shard_dir = common.synthetic_shards(work_dir, num_cases=args.cases, augment_copies=2)
    checkpoint = checkpoint_for(MODEL, args.checkpoint_dir or os.path.join(work_dir, "checkpoints"))
    images = resize_batch([image for split in shards.SPLITS
                           for image in shards.load_split(shard_dir, split).images], SIZE)
    engine = features.frozen_engine(spec)
    models = os.path.join(work_dir, "models")  # one conversion for every interpreter runner
    study = f"interpreter, invokes of {INVOKE_BATCH} (the study's)"
    bare = {"graph b16": InMemory(spec, images, checkpoint, features.TF_ENGINE, BATCH),
            study: InMemory(spec, images, checkpoint, features.TFLITE_ENGINE, BATCH,
                            model_dir=models)}
    for invoke in (1, 16):
        bare[f"interpreter, invokes of {invoke}"] = InMemory(
            spec, images, checkpoint, features.TFLITE_ENGINE, BATCH, invoke=invoke,
            model_dir=models)
    values = {name: runner.run()[frozen_network.BOTTLENECK] for name, runner in bare.items()}
    runners = {name: runner.run for name, runner in bare.items()}
    runners[f"project ({engine})"] = lambda: project(spec, shard_dir, checkpoint, engine)
    runners["project (tf)"] = lambda: project(spec, shard_dir, checkpoint, features.TF_ENGINE)
    stats, load = timed_rounds(runners, args.repeats)
    for runner in bare.values():
        runner.close()
    errors = {f"bottleneck 224 ({name})": relative_error(values[name], values["graph b16"])
              for name in values if name.startswith("interpreter")}
    errors.update(agreement(spec, images, checkpoint))
    return {"images": len(images), "engine": engine, "study_runner": study, "seconds": stats, "load_average": load,
            "images_per_second": {n: len(images) / s["median"] for n, s in stats.items()},
            "spread": {n: common.spread(s) for n, s in stats.items()}, "relative_error": errors,
            "interpreter_threads": interpreter_threads()}


def markdown(result, repeats):
    ips = result["images_per_second"]
    best = max(rate for name, rate in ips.items() if name.startswith("interpreter"))
    engine, study = result["engine"], result["study_runner"]
    rows = [(name, rate, rate / best, result["spread"][name]) for name, rate in ips.items()]
    ratios = [
        ("frozen pass the study runs (forward) / interpreter's best", ips[study] / best),
        ("frozen pass before (graph b16) / interpreter's best", ips["graph b16"] / best),
        (f"project path end to end ({engine}) / interpreter's best", ips[f"project ({engine})"] / best),
        (f"project path end to end: {engine} / tf", ips[f"project ({engine})"] / ips["project (tf)"]),
    ]
    return "\n".join([
        f"EfficientNet-Lite0, converted ImageNet weights, bottleneck at {SIZE} px, "
        f"{result['images']} images (synthetic shards, 2 augmented copies); medians of "
        f"{repeats} interleaved repeats; interpreter threads {result['interpreter_threads']}; "
        f"engine the study picks here: {engine}.", "",
        common.format_table(["path", "images/s", "/ interpreter's best", "spread"], rows), "",
        common.format_table(["ratio", "value"], ratios), "",
        common.format_table(["output", "max |interpreter - graph| / max |graph|"],
                            sorted(result["relative_error"].items())), "",
        "Spread: (max - min) / median of the repeats. Bare paths (graph, interpreter) run on "
        "images already decoded and resized, after a warm-up batch; the project paths include "
        "reading the shards, decoding, resizing, building (and for the interpreter converting) "
        "the network, and writing the cache."])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint_dir", default=None, help="default: a temp dir")
    parser.add_argument("--no_write", action="store_true")
    args = parser.parse_args()
    common.quiet_tf()
    work_dir = tempfile.mkdtemp(prefix="bench-frozen-tflite-")
    try:
        result = measure(args, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = markdown(result, args.repeats)
    print(text)
    if not args.no_write:
        common.write_results("frozen_pass_tflite", result, text)


if __name__ == "__main__":
    main()
