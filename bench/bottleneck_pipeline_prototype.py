"""Prototype of a proposed fix (not project code): the bottleneck path with JPEG decode and
resize overlapped with the forward pass, against ``features.load_or_compute`` and the bare
forward pass, in one run.

    python -m bench.bottleneck_pipeline_prototype [--models=efficientnet_lite0] [--cases=450]

The prototype reads the shard records, and while the session runs batch k, a thread pool
decodes (PIL) and resizes (``resize_square``, the project's one resize) batch k+1; the same
graph, batch size and session as ``features.compute_activations``. PIL and ``Session.run``
release the GIL, so the decode overlaps the forward pass.
"""

import argparse
import concurrent.futures
import io
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common
from bench.bottleneck_throughput import (AUGMENT_COPIES, BareForward, checkpoint_for,
                                         project_path)


def pipelined(spec, shard_dir, checkpoint, size, batch_size, workers=2):
    from thyroid.compat import tf, tf1
    from thyroid.datasets import shards
    from thyroid.features import BOTTLENECK, output_tensor
    from thyroid.preprocessing.resize import resize_square
    from thyroid.restore import build_restore_fn

    def prepare(record):
        feature = tf.train.Example.FromString(record).features.feature
        with Image.open(io.BytesIO(feature["image/encoded"].bytes_list.value[0])) as image:
            return resize_square(np.asarray(image.convert("RGB"), dtype=np.uint8), size)

    records = list(shards.iter_records(shard_dir, "train"))
    batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    with tf.Graph().as_default(), concurrent.futures.ThreadPoolExecutor(workers) as pool, \
            concurrent.futures.ThreadPoolExecutor(1) as ahead:
        tf1.set_random_seed(0)
        image_input = tf1.placeholder(tf.uint8, [None, size, size, 3], name="images")
        values = output_tensor(spec, spec.preprocess(tf.cast(image_input, tf.float32)), BOTTLENECK)
        restore = build_restore_fn(checkpoint, exclude_scopes=spec.exclude_scopes) if checkpoint else None

        def stack(batch):
            return np.stack(list(pool.map(prepare, batch)))

        pending = ahead.submit(stack, batches[0])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if restore:
                restore(sess)
            chunks = []
            for index in range(len(batches)):
                images = pending.result()
                if index + 1 < len(batches):
                    pending = ahead.submit(stack, batches[index + 1])
                chunks.append(sess.run(values, {image_input: images}))
    return np.concatenate(chunks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="efficientnet_lite0")
    parser.add_argument("--cases", type=int, default=450)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    common.quiet_tf()
    from thyroid.features import BOTTLENECK, compute_activations  # noqa: F401
    from thyroid.nets import get_network
    from thyroid.datasets import shards
    from thyroid.preprocessing.resize import resize_batch
    work = tempfile.mkdtemp(prefix="bench-pipeline-")
    table, results = [], {}
    try:
        for model in args.models.split(","):
            spec = get_network(model)
            size = spec.default_image_size
            shard_dir = common.synthetic_shards(os.path.join(work, model), num_cases=args.cases,
                                                augment_copies=AUGMENT_COPIES)
            checkpoint = checkpoint_for(model, os.path.join(work, "checkpoints"))
            images = resize_batch(shards.load_split(shard_dir, "train").images, size)
            runner = BareForward(spec, images, checkpoint, args.batch_size)
            project, proto, bare = [], [], []
            for _ in range(args.repeats):  # interleaved, so drifting load hits all alike
                seconds, values = project_path(spec, shard_dir, checkpoint, size, args.batch_size)
                project.append(seconds)
                seconds, proto_values = common.timed(pipelined, spec, shard_dir, checkpoint, size,
                                                     args.batch_size)
                proto.append(seconds)
                bare.append(common.timed(runner.run)[0])
            runner.close()
            bare = common.summarize(bare)
            n = len(values)
            p, q = common.summarize(project), common.summarize(proto)
            results[model] = {"images": n, "project": p, "prototype": q, "bare": bare,
                              "max_abs_diff": float(np.max(np.abs(values - proto_values)))}
            table.append((model, n, n / p["median"], n / q["median"], n / bare["median"],
                          bare["median"] / p["median"], bare["median"] / q["median"],
                          results[model]["max_abs_diff"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    markdown = common.format_table(["model", "images", "project img/s", "prototype img/s", "bare img/s",
                                    "project/bare", "prototype/bare", "max |diff| of features"], table)
    print(markdown)
    common.write_results("bottleneck_pipeline_prototype", {"models": results}, markdown)


if __name__ == "__main__":
    main()
