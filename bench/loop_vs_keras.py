"""Training steps per second: the project's loop against tf.keras ``fit`` on the same network.

    python -m bench.loop_vs_keras [--cases=small_cnn,efficientnet_lite0] [--steps=30]
                                  [--isa=default,AVX2]

For each case the same arrays (the training split of 200 synthetic DDTI-style cases with 2
augmented copies, resized in memory),
batch size, optimizer (Adam, the project's learning rate), class weights and trainable layers:
  loop (feed):     the graph ``thyroid.training.loop`` builds (``build_logits``, weighted
                   cross-entropy + L2, Adam on the trainable scopes), one ``sess.run`` per step
                   fed by ``feed_dict`` with the loop's own batch order: what the loop does today;
  loop (tf.data):  the same graph fed from ``tf.data`` over in-memory tensors with prefetch
                   (a candidate for the loop, which this benchmark does not change);
  keras fit:       tf_keras layers of the same architecture, ``fit`` on the numpy arrays;
  loop (prefix):   for fine-tuning a network with a frozen prefix, what the loop does by default:
                   the frozen layers' output computed once (``features.compute_activations``, timed
                   on its own) and the steps run the trainable suffix + head on it. Its per-step
                   rate is not the same work as the others'; the "first epoch" column counts the
                   one-off prefix pass against one epoch of steps.
Small CNN: 128 px, batch 32, everything trained. EfficientNet-Lite0 fine-tuning: 224 px,
batch 16, only the last block, conv_head and the head trained, batch norm in inference mode
(what the project's fine-tuning does); random weights on both sides, since speed does not
depend on their values. Each variant runs in its own process (Keras models and TF-Slim graphs
do not share a process well); variants alternate over ``--rounds``; a figure is the median of
the times between the ends of consecutive steps after warm-up steps. ``--isa=AVX2`` runs the children with
``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN then uses no AVX-512 kernels: a stand-in for, not a
measurement of, an AVX2-only CPU).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

CASES = {  # name -> (model, mode, image size, batch size)
    "small_cnn": ("small_cnn", "scratch", 128, 32),
    "efficientnet_lite0": ("efficientnet_lite0", "finetune", 224, 16),
}
VARIANTS = ("loop_feed", "loop_tfdata", "keras_fit")
PREFIX_VARIANT = "loop_prefix"
WARMUP_STEPS = 3
AUGMENT_COPIES = 2  # as the study: ~600 training images from 200 cases, many steps per epoch
ISA_ENV = {"default": None, "AVX2": "AVX2"}


# ----------------------------------------------------------------------------- children

def load_arrays(shard_dir, size):
    from thyroid.datasets import shards
    from thyroid.preprocessing.resize import resize_batch
    data = shards.load_split(shard_dir, "train")
    return resize_batch(data.images, size), np.asarray(data.labels, np.int64)


def slim_step_times(model, mode, images, labels, batch_size, steps, use_dataset,
                    uses_frozen_prefix=False):
    """Per-step seconds of the loop's graph, fed per step or from tf.data; with
    ``uses_frozen_prefix`` ``images`` are the frozen prefix's activations."""
    from thyroid.compat import tf, tf1
    from thyroid.nets import get_network
    from thyroid.training.loop import (batch_indices, class_weights, make_optimizer,
                                      training_objective)
    from thyroid.training.model import build_logits
    from thyroid.training.run import DEFAULT_LEARNING_RATES
    spec = get_network(model)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        if use_dataset:
            dataset = (tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(labels), seed=0)
                       .repeat().batch(batch_size, drop_remainder=True).prefetch(2))
            inputs, batch_labels = tf1.data.make_one_shot_iterator(dataset).get_next()
        else:
            inputs = tf1.placeholder(tf.as_dtype(images.dtype), [None] + list(images.shape[1:]))
            batch_labels = tf1.placeholder(tf.int64, [None])
        is_training = tf1.placeholder_with_default(False, [])
        logits, _ = build_logits(spec, mode, inputs, is_training, uses_frozen_prefix)
        weights = tf.gather(tf.constant(class_weights(labels, "balanced")), batch_labels)
        loss = tf1.losses.sparse_softmax_cross_entropy(batch_labels, logits, weights=weights)
        train_variables, total_loss = training_objective(mode, spec.trainable_scopes, loss)
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            train_op = make_optimizer("adam", DEFAULT_LEARNING_RATES[mode]).minimize(
                total_loss, var_list=train_variables)
        ends = []
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for step in range(steps + WARMUP_STEPS + 1):
                feed = {is_training: True}
                if not use_dataset:  # batch selection and copying count, as in the loop
                    idx = batch_indices(step, len(labels), batch_size, 0)
                    feed.update({inputs: images[idx], batch_labels: labels[idx]})
                sess.run([total_loss, train_op], feed)
                ends.append(time.perf_counter())
    return list(np.diff(ends)[WARMUP_STEPS:])


def keras_small_cnn(keras, size):
    from thyroid.nets.net_inputs import unit_preprocess
    l2 = keras.regularizers.l2(1e-4)
    inputs = keras.Input((size, size, 3), dtype="uint8")
    net = keras.layers.Lambda(lambda x: unit_preprocess(keras.backend.cast(x, "float32")))(inputs)
    for depth in (32, 32, 64):
        net = keras.layers.Conv2D(depth, 3, padding="same", activation="relu", kernel_regularizer=l2)(net)
        net = keras.layers.MaxPooling2D(2, 2)(net)
    net = keras.layers.Flatten()(net)
    net = keras.layers.Dense(64, activation="relu", kernel_regularizer=l2)(net)
    net = keras.layers.Dropout(0.5)(net)
    return keras.Model(inputs, keras.layers.Dense(2, kernel_regularizer=l2)(net))


def keras_efficientnet_lite0(keras, size):
    """EfficientNet-Lite0 as ``thyroid.nets.efficientnet_lite`` builds it, in Keras layers;
    only the last block, conv_head and the head train; batch norm always in inference mode."""
    from thyroid.nets import efficientnet_lite as lite
    from thyroid.nets.net_inputs import efficientnet_lite_preprocess
    blocks = lite.block_table()

    def conv_bn(net, filters, kernel, stride, trainable, activation=True, depthwise=False):
        layer = (keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False)
                 if depthwise else keras.layers.Conv2D(filters, kernel, stride, padding="same",
                                                       use_bias=False))
        layer.trainable = trainable
        net = layer(net)
        norm = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99)
        norm.trainable = trainable
        net = norm(net, training=False)
        return keras.layers.ReLU(6.0)(net) if activation else net

    inputs = keras.Input((size, size, 3), dtype="uint8")
    net = keras.layers.Lambda(
        lambda x: efficientnet_lite_preprocess(keras.backend.cast(x, "float32")))(inputs)
    net = conv_bn(net, lite.STEM_FILTERS, 3, 2, False)
    for index, (expand, kernel, stride, filters_in, filters_out) in enumerate(blocks):
        trainable = index == len(blocks) - 1
        block_input = net
        if expand != 1:
            net = conv_bn(net, filters_in * expand, 1, 1, trainable)
        net = conv_bn(net, None, kernel, stride, trainable, depthwise=True)
        net = conv_bn(net, filters_out, 1, 1, trainable, activation=False)
        if stride == 1 and filters_in == filters_out:
            net = keras.layers.Add()([net, block_input])
    net = conv_bn(net, lite.HEAD_FILTERS, 1, 1, True)
    net = keras.layers.GlobalAveragePooling2D()(net)
    l2 = keras.regularizers.l2(1e-4)
    net = keras.layers.Dense(256, activation="relu", kernel_regularizer=l2)(net)
    net = keras.layers.Dropout(0.5)(net)
    return keras.Model(inputs, keras.layers.Dense(2, kernel_regularizer=l2)(net))


def keras_step_times(model, mode, images, labels, batch_size, steps):
    import tf_keras as keras
    from thyroid.training.loop import class_weights
    from thyroid.training.run import DEFAULT_LEARNING_RATES
    build = keras_small_cnn if model == "small_cnn" else keras_efficientnet_lite0
    net = build(keras, images.shape[1])
    net.compile(optimizer=keras.optimizers.Adam(DEFAULT_LEARNING_RATES[mode]),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ends = []

    class StepTimer(keras.callbacks.Callback):
        # Time between the ends of consecutive steps: input iteration and epoch boundaries
        # count, as in the loop. Numpy logs (the default) make each step end synchronously.
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    weights = class_weights(labels, "balanced")
    steps_per_epoch = len(labels) // batch_size
    epochs = -(-(steps + WARMUP_STEPS + 1) // steps_per_epoch)
    net.fit(images, labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
            class_weight={0: float(weights[0]), 1: float(weights[1])}, callbacks=[StepTimer()])
    return list(np.diff(ends)[WARMUP_STEPS:WARMUP_STEPS + steps])


def child(args):
    common.quiet_tf()
    model, mode, size, batch_size = CASES[args.case]
    images, labels = load_arrays(args.shard_dir, size)
    if args.variant == "keras_fit":
        times = keras_step_times(model, mode, images, labels, batch_size, args.steps)
    elif args.variant == PREFIX_VARIANT:
        from thyroid.nets import get_network
        from thyroid.training import features, frozen_network
        started = time.perf_counter()
        prefix = features.compute_activations(get_network(model), images,
                                              frozen_network.FROZEN_PREFIX, None)
        print("PREFIX_SECONDS %f" % (time.perf_counter() - started), flush=True)
        times = slim_step_times(model, mode, prefix, labels, batch_size, args.steps,
                                use_dataset=False, uses_frozen_prefix=True)
    else:
        times = slim_step_times(model, mode, images, labels, batch_size, args.steps,
                                use_dataset=args.variant == "loop_tfdata")
    print("RESULT " + json.dumps(times), flush=True)


# ----------------------------------------------------------------------------- parent

def run_child(case, variant, isa, shard_dir, steps):
    env = dict(os.environ)
    if ISA_ENV[isa]:
        env["ONEDNN_MAX_CPU_ISA"] = ISA_ENV[isa]
    command = [sys.executable, "-m", "bench.loop_vs_keras", "--child", "--case", case,
               "--variant", variant, "--shard_dir", shard_dir, "--steps", str(steps)]
    output = subprocess.run(command, env=env, cwd=common.REPO_DIR, capture_output=True, text=True)
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if output.returncode or not lines:
        raise RuntimeError(f"{case}/{variant}/{isa} failed:\n{output.stderr[-3000:]}")
    prefix = [float(line.split()[1]) for line in output.stdout.splitlines()
              if line.startswith("PREFIX_SECONDS ")]
    return json.loads(lines[-1][len("RESULT "):]), prefix


def variants_of(case):
    from thyroid.nets import get_network
    model, mode, _, _ = CASES[case]
    has_prefix = mode == "finetune" and get_network(model).frozen_prefix is not None
    return VARIANTS + ((PREFIX_VARIANT,) if has_prefix else ())


def measure(cases, isas, shard_dir, steps, rounds):
    """({(case, isa, variant): [per-step seconds]}, {(case, isa): [prefix pass seconds]}), with
    variants alternating over rounds."""
    times, prefix_seconds = {}, {}
    for round_index in range(rounds):
        for case in cases:
            for isa in isas:
                variants = variants_of(case)
                order = variants if round_index % 2 == 0 else variants[::-1]
                for variant in order:
                    step_times, prefix = run_child(case, variant, isa, shard_dir, steps)
                    prefix_seconds.setdefault((case, isa), []).extend(prefix)
                    times.setdefault((case, isa, variant), []).extend(step_times)
                    print(f"{case} {isa} {variant}: median step "
                          f"{statistics.median(step_times):.3f}s (load {common.load_average():.2f})",
                          flush=True)
    return times, prefix_seconds


def report(cases, isas, times, prefix_seconds, steps, rounds, loads, steps_per_epoch):
    rows = []
    for case in cases:
        model, mode, size, batch_size = CASES[case]
        for isa in isas:
            rate = {v: 1.0 / statistics.median(times[(case, isa, v)]) for v in variants_of(case)}
            row = [f"{model} {mode} {size}px b{batch_size}", isa, rate["loop_feed"],
                   rate["loop_tfdata"], rate["keras_fit"], rate["loop_feed"] / rate["keras_fit"],
                   rate["loop_tfdata"] / rate["loop_feed"], "", "", ""]
            if PREFIX_VARIANT in rate:
                once = statistics.median(prefix_seconds[(case, isa)])
                epoch = steps_per_epoch[case]
                first_epoch_rate = epoch / (once + epoch / rate[PREFIX_VARIANT])
                row[-3:] = [rate[PREFIX_VARIANT], once, first_epoch_rate / rate["keras_fit"]]
            rows.append(row)
    table = common.format_table(
        ["case", "oneDNN ISA", "loop feed steps/s", "loop tf.data steps/s", "keras fit steps/s",
         "loop/keras", "tf.data/feed", "loop prefix steps/s", "prefix pass s",
         "prefix first epoch/keras"], rows)
    return (f"Median of per-step times, {steps} steps per variant per round after "
            f"{WARMUP_STEPS} warm-up steps, {rounds} rounds (variants alternate). "
            f"CPU: {common.cpu_flags_note()}. 1-minute load average during the runs: "
            f"{min(loads):.2f}-{max(loads):.2f} (shared machine). "
            "AVX2 rows: AVX-512 disabled via ONEDNN_MAX_CPU_ISA=AVX2 on this CPU, "
            "not a real AVX2-only machine.\n\n" + table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--isa", default="default,AVX2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num_cases", type=int, default=200)
    parser.add_argument("--no_write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--shard_dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    common.quiet_tf()
    cases = [c for c in args.cases.split(",") if c]
    isas = [i for i in args.isa.split(",") if i]
    for name, known in (("--cases", CASES), ("--isa", ISA_ENV)):
        unknown = [v for v in (cases if name == "--cases" else isas) if v not in known]
        if unknown:
            parser.error(f"{name}: unknown {unknown}; choose from {sorted(known)}")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as work_dir:
        shard_dir = common.synthetic_shards(work_dir, num_cases=args.num_cases,
                                            augment_copies=AUGMENT_COPIES)
        loads = [common.load_average()]
        times, prefix_seconds = measure(cases, isas, shard_dir, args.steps, args.rounds)
        loads.append(common.load_average())
        from thyroid.datasets import shards
        train_images = len(shards.load_split(shard_dir, "train", decode=False).labels)
    steps_per_epoch = {case: train_images // CASES[case][3] for case in cases}
    markdown = report(cases, isas, times, prefix_seconds, args.steps, args.rounds, loads,
                      steps_per_epoch)
    print(markdown)
    if not args.no_write:
        common.write_results("loop_vs_keras", {
            "per_step_seconds": {"/".join(k): v for k, v in times.items()},
            "prefix_pass_seconds": {"/".join(k): v for k, v in prefix_seconds.items()}}, markdown)


if __name__ == "__main__":
    main()
