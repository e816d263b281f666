"""Bottleneck throughput: the project's cache path against the bare forward pass and Keras.

    python -m bench.bottleneck_throughput [--models=vgg_16,inception_v3,efficientnet_lite0]

For each network, images per second of
  project: ``thyroid.training.features.load_or_compute`` on a fresh cache dir (read shards, JPEG
           decode, resize, graph build, preprocessing + forward, writing the .npz);
  (a) bare: the same graph and session class (``frozen_network.FrozenNetwork``), same batch
           size, fed images already resized in memory, after one warm-up batch (graph
           build, restore and session start not timed);
  (b) keras: ``tf_keras.applications`` model of the same architecture (include_top=False,
           pooling='avg', weights=None) ``predict`` on the same tensors (float32), after a
           warm-up call. For EfficientNet-Lite0 the closest Keras has is EfficientNetB0,
           which adds squeeze-excite and swish (more work per image than Lite0).
The project path is also broken into its stages (one extra timed pass) to show where
time goes. Targets: project >= 0.9 x bare and >= keras.
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

# synthetic cases per network (train split ~0.7 image per case, x3 with 2 augmented copies),
# chosen so each measurement takes ~10-60 s on 2 cores
# About the real DDTI study's size (238 labelled cases -> ~640 images with 2 augmented copies
# of the training split), so that fixed costs weigh as much as they do in practice.
# VGG-16 costs ~15 GFLOP per 224 px image (Inception-v3 ~6, Lite0 ~0.4): 60 cases keep its three
# interleaved measurements within a few minutes on 2 cores; the fixed costs then weigh more.
DEFAULT_CASES = {"vgg_16": 60, "inception_v3": 120, "efficientnet_lite0": 240}
AUGMENT_COPIES = 2
KERAS = {"vgg_16": "VGG16", "inception_v3": "InceptionV3", "efficientnet_lite0": "EfficientNetB0"}


def checkpoint_for(model, checkpoint_dir):
    """The official (or converted) checkpoint when present; else seeded random weights saved
    under the same variable names, so that the timed path restores a checkpoint as a real
    user's run does (random weights in the graph would skip the restore and time their
    initialisers instead)."""
    from thyroid.checkpoints.locate import default_checkpoint_path
    from thyroid.nets import get_network
    spec = get_network(model)
    path, exists = default_checkpoint_path(spec, checkpoint_dir)
    if exists:
        return path
    if model == "efficientnet_lite0":
        try:
            from thyroid.checkpoints.convert import convert
            return convert(model, checkpoint_dir)
        except FileNotFoundError as error:
            print(f"no EfficientNet-Lite0 weights ({error}); seeded random weights")
    return save_random_weights(spec, os.path.join(checkpoint_dir, model + "-random", "model.ckpt"))


def save_random_weights(spec, path):
    """Seeded random values for every variable of ``spec``'s feature graph, saved at ``path``."""
    from thyroid.compat import tf, tf1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        size = spec.default_image_size
        spec.features(tf1.placeholder(tf.float32, [None, size, size, 3]), is_training=False)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return tf1.train.Saver().save(sess, path, write_meta_graph=False)


def project_path(spec, shard_dir, checkpoint, size, batch_size):
    """What ``python -m thyroid.bottleneck`` does: every split into a fresh cache."""
    from thyroid import io_utils
    from thyroid.datasets import shards
    from thyroid.training.features import load_or_compute
    from thyroid.training.frozen_network import BOTTLENECK
    cache_dir = tempfile.mkdtemp(prefix="bench-cache-")
    io_utils._FILE_DIGESTS.clear()  # a fresh process would hash the shards too
    try:
        def dump_all_splits():
            return [load_or_compute(spec, shard_dir, split, BOTTLENECK, checkpoint, size, cache_dir,
                                    batch_size=batch_size) for split in shards.SPLITS]
        seconds, results = common.timed(dump_all_splits)
        assert not results[0].reused and all(r.reused for r in results[1:])
        return seconds, np.concatenate([r.values for r in results])
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def project_stages(spec, shard_dir, checkpoint, size, batch_size):
    """Seconds per stage of the same work load_or_compute does, done one by one."""
    from thyroid.training import features, frozen_network
    from thyroid.datasets import shards
    from thyroid import io_utils
    from thyroid.preprocessing.resize import resize_batch
    io_utils._FILE_DIGESTS.clear()
    stages = {}
    stages["fingerprint"], _ = common.timed(
        lambda: [features.cache_key(spec.name, frozen_network.BOTTLENECK, checkpoint, shard_dir,
                                    split, size)
                 for split in shards.SPLITS])
    stages["read+decode shards"], data = common.timed(
        lambda: [image for split in shards.SPLITS for image in shards.load_split(shard_dir, split).images])
    stages["resize"], images = common.timed(resize_batch, data, size)
    stages["graph+session+forward"], values = common.timed(
        features.compute_activations, spec, images, frozen_network.BOTTLENECK, checkpoint,
        batch_size)
    path = os.path.join(tempfile.mkdtemp(prefix="bench-npz-"), "x.npz")
    stages["write npz"], _ = common.timed(lambda: np.savez(open(path, "wb"), values=values))
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    return stages, images


class BareForward:
    """The project's own frozen graph (``frozen_network.FrozenNetwork``), kept open; ``run()``
    feeds in-memory images: the forward pass alone, nothing decoded, built or restored."""

    def __init__(self, spec, images, checkpoint, batch_size):
        from thyroid.training.frozen_network import BOTTLENECK, FrozenNetwork
        self.network = FrozenNetwork(spec, images.shape[1], (BOTTLENECK,), checkpoint)
        self.images, self.batch_size = images, batch_size
        self.network.run_batch(images[:batch_size])  # warm-up

    def run(self):
        for start in range(0, len(self.images), self.batch_size):
            self.network.run_batch(self.images[start:start + self.batch_size])

    def close(self):
        self.network.close()


class KerasPredict:
    """Keras ``predict`` in a child process (a Keras model is invalidated when slim graphs are
    built in the same process afterwards); ``run()`` asks the child for one timed pass over the
    images, so its runs interleave with the parent's."""

    CHILD = """
import sys, time, numpy as np, tf_keras, tensorflow as tf
name, path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
images = np.load(path)
net = getattr(tf_keras.applications, name)(include_top=False, pooling="avg", weights=None,
                                         input_shape=images.shape[1:])
x = tf.constant(images.astype(np.float32))
net.predict(x[:batch], batch_size=batch, verbose=0)  # warm-up / trace
print("ready", flush=True)
for line in sys.stdin:
    started = time.perf_counter()
    net.predict(x, batch_size=batch, verbose=0)
    print(time.perf_counter() - started, flush=True)
"""

    def __init__(self, model, images, batch_size):
        import subprocess
        self.dir = tempfile.mkdtemp(prefix="bench-keras-")
        path = os.path.join(self.dir, "images.npy")
        np.save(path, images)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen([sys.executable, "-c", self.CHILD, KERAS[model], path, str(batch_size)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16, help="the project's FEATURE_BATCH_SIZE")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the case counts")
    parser.add_argument("--fresh", action="store_true", help="drop models of earlier invocations")
    parser.add_argument("--checkpoint_dir", default=None, help="default: a temp dir")
    parser.add_argument("--isa", choices=("default", "AVX2"), default="default",
                        help="AVX2: cap oneDNN at AVX2 (ONEDNN_MAX_CPU_ISA) for this run and its "
                             "Keras child; results go to a separate section")
    args = parser.parse_args()
    if args.isa == "AVX2":  # must be set before TensorFlow loads oneDNN
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    name = "bottleneck_throughput" + ("_avx2" if args.isa == "AVX2" else "")
    common.quiet_tf()
    from thyroid.nets import get_network

    work_dir = tempfile.mkdtemp(prefix="bench-bottleneck-")
    checkpoint_dir = args.checkpoint_dir or os.path.join(work_dir, "checkpoints")
    results, table = {}, []
    try:
        for model in args.models.split(","):
            spec = get_network(model)
            size = spec.default_image_size
            cases = int(DEFAULT_CASES[model] * args.scale)
            shard_dir = common.synthetic_shards(os.path.join(work_dir, model), num_cases=cases,
                                                 augment_copies=AUGMENT_COPIES)
            checkpoint = checkpoint_for(model, checkpoint_dir)
            load = [common.load_average()]
            stages, images = project_stages(spec, shard_dir, checkpoint, size, args.batch_size)
            bare_runner = BareForward(spec, images, checkpoint, args.batch_size)
            keras_runner = KerasPredict(model, images, args.batch_size)
            runs = {"project": [], "bare": [], "keras": []}
            for _ in range(args.repeats):  # interleaved, so a change of load hits all three alike
                seconds, values = project_path(spec, shard_dir, checkpoint, size, args.batch_size)
                runs["project"].append(seconds)
                runs["bare"].append(common.timed(bare_runner.run)[0])
                runs["keras"].append(keras_runner.run())
                load.append(common.load_average())
            bare_runner.close()
            keras_runner.close()
            project, bare, keras = (common.summarize(runs[k]) for k in ("project", "bare", "keras"))
            count = len(values)
            load.append(common.load_average())
            ips = {name: count / stats["median"] for name, stats in
                   (("project", project), ("bare", bare), ("keras", keras))}
            results[model] = {
                "images": count, "image_size": size, "batch_size": args.batch_size,
                "weights": checkpoint or "random", "features": list(values.shape[1:]),
                "keras_model": KERAS[model], "seconds": {"project": project, "bare": bare, "keras": keras},
                "images_per_second": ips, "project_stages_seconds": stages,
                "ratio_project_to_bare": ips["project"] / ips["bare"],
                "ratio_project_to_keras": ips["project"] / ips["keras"],
                "load_average_1min": load,
                "spread": {k: common.spread(v) for k, v in
                           (("project", project), ("bare", bare), ("keras", keras))},
            }
            r = results[model]
            table.append((model, count, size, ips["project"], ips["bare"], ips["keras"],
                          r["ratio_project_to_bare"], r["ratio_project_to_keras"],
                          r["ratio_project_to_bare"] >= 0.9, r["ratio_project_to_keras"] >= 1.0))
            print(common.format_table(["stage", "seconds"], sorted(stages.items(), key=lambda kv: -kv[1])))
            print(common.format_table(
                ["model", "images", "size", "project img/s", "bare img/s", "keras img/s",
                 "project/bare", "project/keras", ">=0.9 bare", ">= keras"], table[-1:]), flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    old_json = os.path.join(common.RESULTS_DIR, f"{name}.json")
    if os.path.exists(old_json) and not args.fresh:  # keep models measured by an earlier invocation
        import json
        with open(old_json) as f:
            old = json.load(f).get("models", {})
        for model, r in old.items():
            if model not in results:
                results[model] = r
                ips = r["images_per_second"]
                table.append((model, r["images"], r["image_size"], ips["project"], ips["bare"], ips["keras"],
                              r["ratio_project_to_bare"], r["ratio_project_to_keras"],
                              r["ratio_project_to_bare"] >= 0.9, r["ratio_project_to_keras"] >= 1.0))
    md = [common.format_table(
        ["model", "images", "size", "project img/s", "bare img/s", "keras img/s",
         "project/bare", "project/keras", ">=0.9 bare", ">= keras"], table), "",
        "Medians of %d interleaved runs (project, bare, keras), batch %d. Spread (max-min)/median and load average per model in "
        "results/bottleneck_throughput.json. Keras column: VGG16, InceptionV3, and EfficientNetB0 "
        "for EfficientNet-Lite0 (the closest Keras has; B0 adds squeeze-excite and swish). "
        "Both project and bare restore a checkpoint: the converted EfficientNet-Lite0 weights, "
        "and for VGG-16 and Inception-v3 (no official checkpoint offline) seeded random weights "
        "saved under the official names; bare is the project's own frozen graph fed in-memory "
        "images." % (args.repeats, args.batch_size), "", "Project path by stage (seconds, one pass):", ""]
    stage_names = list(next(iter(results.values()))["project_stages_seconds"])
    md.append(common.format_table(["model"] + stage_names,
                                  [[m] + [r["project_stages_seconds"][s] for s in stage_names]
                                   for m, r in results.items()]))
    markdown = "\n".join(md)
    print(markdown)
    if args.isa == "AVX2":
        markdown = ("AVX-512 disabled via ONEDNN_MAX_CPU_ISA=AVX2 on this CPU (not a real "
                    "AVX2-only machine).\n\n" + markdown)
    common.write_results(name, {"models": results, "isa": args.isa}, markdown)


if __name__ == "__main__":
    main()
