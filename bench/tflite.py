"""TFLite export: model size and milliseconds per image, float and int8.

    python -m bench.tflite [--steps=5] [--images=50]

Converts the EfficientNet-Lite0 ImageNet weights (``thyroid.checkpoints.convert``, as
``python -m thyroid.checkpoints convert`` does) into a temp dir, fine-tunes it at 224 for
a few steps on synthetic shards, exports with ``thyroid.deploy.export.export_model`` (float and
int8), then times ``tf.lite.Interpreter.invoke`` (batch 1) over N images with 1 and 2
threads (median of 3 passes; one warm-up invoke). The TF graph's P(malignant) on the
same images is the reference for the float model's error.
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

SIZE = 224


def time_interpreter(model_path, images, threads, repeats):
    from thyroid.compat import tf
    interpreter = tf.lite.Interpreter(model_path=model_path, num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    batch = images.astype(inp["dtype"])
    outputs = []

    def run():
        outputs.clear()
        for image in batch:
            interpreter.set_tensor(inp["index"], image[None])
            interpreter.invoke()
            outputs.append(float(interpreter.get_tensor(out["index"]).reshape(-1)[0]))
    interpreter.set_tensor(inp["index"], batch[:1])
    interpreter.invoke()  # warm-up
    stats = common.repeat(run, repeats)
    return stats, np.asarray(outputs), str(np.dtype(inp["dtype"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    common.quiet_tf()
    from thyroid.checkpoints.convert import convert
    from thyroid.datasets import shards
    from thyroid.deploy.export import export_model, tf_probabilities
    from thyroid.preprocessing.resize import resize_batch
    from thyroid.training.run import train
    from thyroid.training.run_config import RunConfig

    work = tempfile.mkdtemp(prefix="bench-tflite-")
    try:
        shard_dir = common.synthetic_shards(work, num_cases=60)
        checkpoint = convert("efficientnet_lite0", os.path.join(work, "checkpoints"))
        train_dir = os.path.join(work, "train")
        train_seconds, _ = common.timed(train, RunConfig(
            model="efficientnet_lite0", mode="finetune", dataset_dir=shard_dir,
            checkpoint_path=checkpoint, image_size=SIZE, batch_size=8,
            max_number_of_steps=args.steps, cache_dir=os.path.join(work, "cache")), train_dir)
        data = shards.load_split(shard_dir, "test")
        images = resize_batch(data.images, SIZE)
        while len(images) < args.images:
            images = np.concatenate([images, images])
        images = images[:args.images]
        reference = tf_probabilities(train_dir, images)
        rows, results = [], {}
        for quantize in ("none", "int8"):
            export_seconds, paths = common.timed(export_model, train_dir,
                                                 os.path.join(work, f"export-{quantize}"), quantize)
            size = os.path.getsize(paths.model)
            results[quantize] = {"bytes": size, "export_seconds": export_seconds, "threads": {}}
            for threads in (1, 2):
                stats, probs, dtype = time_interpreter(paths.model, images, threads, args.repeats)
                ms = stats["median"] / len(images) * 1000
                err = float(np.max(np.abs(probs - reference)))
                results[quantize]["threads"][threads] = {"seconds": stats, "ms_per_image": ms,
                                                         "max_abs_diff_vs_tf": err, "input_dtype": dtype}
                rows.append(("float32" if quantize == "none" else "int8", size / 2 ** 20, threads,
                             ms, err, export_seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    md = [f"EfficientNet-Lite0 fine-tuned {args.steps} steps at {SIZE} from the converted ImageNet "
          f"weights; batch-1 invoke over {args.images} images, median of {args.repeats} passes.", "",
          common.format_table(["model", "size MiB", "threads", "ms / image",
                               "max |P - P_tf|", "export s"], rows)]
    markdown = "\n".join(md)
    print(markdown)
    common.write_results("tflite", {"train_seconds": train_seconds, "exports": results,
                                    "images": args.images}, markdown)


if __name__ == "__main__":
    main()
