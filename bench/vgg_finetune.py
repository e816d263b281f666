"""VGG-16 fine-tuning above conv5_2: the frozen-prefix cache against the full network.

    python -m bench.vgg_finetune [--num_cases=48] [--epochs=3] [--batch_size=16]

Both paths (``RunConfig.use_prefix_cache`` True / False) train the same rows at 224 on
the same synthetic shards, with the same batch size, seed and a random VGG-16 checkpoint
written first and passed to both as ``checkpoint_path``.

Times, per path:
  total  - ``train()`` from scratch for N epochs with a fresh cache dir (the cached path
           pays the conv1..conv5_2 prefix computation here);
  epoch  - (T(1 + E epochs) - T(1 epoch)) / E with a warm cache: the fixed costs (graph
           build, restore, cache load, final validation and checkpoint) cancel.

First-step loss: the first training step's loss is drawn through dropout, whose op-level
seed TF1 derives from the op count of each graph, so it is not comparable across the
two graphs. Instead each path trains one step with learning rate 0 (weights unchanged; the
checkpoint the loop saves is then the weights it started from) and the loss of the first
batch (``batch_indices(0, ...)``) is evaluated from that checkpoint with is_training=False
(dropout off): weighted cross-entropy exactly as the loop defines it. Done twice:
  head restored - the checkpoint also holds ``vgg_16/Head``, restored by both paths
                  (checkpoint_exclude_scopes without Head): identical starting weights, so
                  the losses must agree to float error;
  head fresh    - default exclude scopes, the head initialised by each graph.
Target: cached path >= 10x faster per epoch.
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


def write_random_checkpoint(path, seed=1234):
    """Random VGG-16 conv weights and a random fc_head, saved under the official names."""
    from thyroid.compat import tf, tf1
    from thyroid.nets import get_network
    from thyroid.nets.heads import fc_head
    spec = get_network("vgg_16")
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        images = tf1.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        features, _ = spec.features(images)
        fc_head(features, 2, False, scope=spec.head_scope)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return tf1.train.Saver().save(sess, path)


def options(shard_dir, train_dir, cache_dir, checkpoint, cached, epochs, batch_size, **extra):
    from thyroid.training.run_config import RunConfig
    config = RunConfig(model="vgg_16", mode="finetune", dataset_dir=shard_dir,
                       checkpoint_path=checkpoint, use_prefix_cache=cached, image_size=SIZE,
                       batch_size=batch_size, num_epochs=epochs, cache_dir=cache_dir, seed=0,
                       save_interval_steps=100, eval_every_n_steps=100, **extra)
    return config, train_dir


def run_train(opts):
    from thyroid.training.run import train
    seconds, result = common.timed(train, *opts)
    return seconds, result


def first_batch_loss(train_dir, batch_size):
    """Weighted cross-entropy of batch 0 from the run's checkpoint, dropout off."""
    from thyroid.training.inputs import load_split_inputs
    from thyroid.training.loop import batch_indices, class_weights, load_and_predict
    from thyroid.training.run_config import RunConfig
    config = RunConfig.load(train_dir)
    inputs = load_split_inputs(config, "train")
    idx = batch_indices(0, len(inputs.labels), batch_size, config.seed)
    batch = type(inputs)(inputs.values[idx], inputs.labels[idx], inputs.patient_ids[idx])
    p1 = np.clip(load_and_predict(config, train_dir, batch).astype(np.float64), 1e-12, 1 - 1e-12)
    labels = batch.labels
    ce = -np.log(np.where(labels == 1, p1, 1 - p1))
    w = class_weights(inputs.labels, "balanced")[labels]
    return float((w * ce).sum() / np.count_nonzero(w)), p1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_cases", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=10, help="N for the totals (the study uses 10)")
    parser.add_argument("--epoch_runs", default="20,3",
                        help="extra epochs E for the per-epoch difference, cached,plain")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the per-epoch runs")
    args = parser.parse_args()
    common.quiet_tf()
    work = tempfile.mkdtemp(prefix="bench-vgg-")
    counter = iter(range(10 ** 6))

    def fresh(name):
        return os.path.join(work, f"{name}-{next(counter)}")

    try:
        shard_dir = common.synthetic_shards(work, num_cases=args.num_cases)
        from thyroid.datasets.shards import load_split
        num_train = len(load_split(shard_dir, "train"))
        checkpoint = write_random_checkpoint(os.path.join(work, "vgg_random", "model.ckpt"))
        results = {}
        extra = dict(zip(("cached", "plain"), map(int, args.epoch_runs.split(","))))
        paths = (("cached", True), ("plain", False))
        results = {name: {"load_average_1min": [common.load_average()]} for name, _ in paths}
        cache_dirs = {name: fresh("cache") for name, _ in paths}
        for name, cached in paths:
            results[name]["total_seconds"], _ = run_train(options(
                shard_dir, fresh("train"), cache_dirs[name], checkpoint, cached, args.epochs, args.batch_size))
        epochs = {name: [] for name, _ in paths}
        for _ in range(args.repeats):  # interleaved, so a change of load hits both paths alike
            for name, cached in paths:
                one, _ = run_train(options(shard_dir, fresh("train"), cache_dirs[name], checkpoint, cached,
                                           1, args.batch_size))
                many, _ = run_train(options(shard_dir, fresh("train"), cache_dirs[name], checkpoint, cached,
                                            1 + extra[name], args.batch_size))
                epochs[name].append((many - one) / extra[name])
                results[name]["load_average_1min"].append(common.load_average())
        for name, cached in paths:
            losses = {}
            for variant, exclude in (("head_restored", ("vgg_16/fc6", "vgg_16/fc7", "vgg_16/fc8")),
                                     ("head_fresh", ())):
                train_dir = fresh("loss")
                run_train(options(shard_dir, train_dir, cache_dirs[name], checkpoint, cached, 1,
                                  args.batch_size, max_number_of_steps=1, learning_rate=1e-30,
                                  checkpoint_exclude_scopes=exclude))
                losses[variant] = first_batch_loss(train_dir, args.batch_size)
            results[name].update(epoch_seconds=common.summarize(epochs[name]),
                                 first_batch_loss={k: v[0] for k, v in losses.items()},
                                 first_batch_p_malignant={k: v[1].tolist() for k, v in losses.items()})
            print(name, results[name], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    c, p = results["cached"], results["plain"]
    speedup = p["epoch_seconds"]["median"] / c["epoch_seconds"]["median"]
    rows = [(name, r["epoch_seconds"]["median"], r["total_seconds"], r["first_batch_loss"]["head_restored"],
             r["first_batch_loss"]["head_fresh"]) for name, r in results.items()]
    md = [f"{num_train} training images at {SIZE}x{SIZE}, batch {args.batch_size}, "
          f"{args.epochs} epochs, random VGG-16 checkpoint restored by both paths; epoch time = median "
          f"of {args.repeats} interleaved x (T(1+E epochs) - T(1 epoch)) / E with a warm cache, E = {args.epoch_runs} "
          "(cached, plain).", "",
          common.format_table(["path", "s / epoch", f"total s, {args.epochs} epochs (incl. prefix)",
                               "batch-0 loss, head restored", "batch-0 loss, head fresh"], rows), "",
          common.format_table(["measure", "value", "target", "met"], [
              ("speed-up per epoch (plain / cached)", speedup, 10.0, speedup >= 10),
              (f"speed-up, total of {args.epochs} epochs", p["total_seconds"] / c["total_seconds"], None, None),
              ("|loss difference|, head restored",
               abs(c["first_batch_loss"]["head_restored"] - p["first_batch_loss"]["head_restored"]), "< 1e-4",
               abs(c["first_batch_loss"]["head_restored"] - p["first_batch_loss"]["head_restored"]) < 1e-4),
              ("|loss difference|, head fresh (default)",
               abs(c["first_batch_loss"]["head_fresh"] - p["first_batch_loss"]["head_fresh"]), None, None)])]
    markdown = "\n".join(md)
    print(markdown)
    common.write_results("vgg_finetune", {"num_train": num_train, "epochs": args.epochs,
                                          "batch_size": args.batch_size, "paths": results,
                                          "speedup_per_epoch": speedup}, markdown)


if __name__ == "__main__":
    main()
