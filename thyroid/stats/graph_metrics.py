"""The metrics of ``thyroid.stats.metrics`` as TensorFlow graph ops (tf1 graph mode).

The training graph evaluates them on each training batch and on the validation
predictions fed back in, and writes them as TensorBoard summaries. The definitions are
those of ``metrics.binary_metrics``; ``tests/test_metrics.py`` holds the two against each
other. The only module of ``stats`` that imports TensorFlow.
"""

from thyroid.compat import tf, tf1


def metric_ops(labels, probs, threshold=0.5):
    """Scalar float32 tensors with the same definitions as ``binary_metrics``.

    ``labels``: int/float tensor [batch] of 0/1; ``probs``: P(malignant) [batch].
    The AUC is exact (all pairwise comparisons, ties count 1/2): O(batch^2) memory,
    meant for batch-sized inputs. Undefined values are nan.
    Returns dict with accuracy, sensitivity, specificity, auc, tp, fp, tn, fn.
    """
    with tf.name_scope("metrics"):
        labels = tf.reshape(tf.cast(labels, tf.float32), [-1])
        probs = tf.reshape(tf.cast(probs, tf.float32), [-1])
        pos = tf.cast(tf.equal(labels, 1.0), tf.float32)
        neg = 1.0 - pos
        pred = tf.cast(probs >= tf.cast(threshold, tf.float32), tf.float32)
        tp = tf.reduce_sum(pred * pos, name="tp")
        fp = tf.reduce_sum(pred * neg, name="fp")
        tn = tf.reduce_sum((1.0 - pred) * neg, name="tn")
        fn = tf.reduce_sum((1.0 - pred) * pos, name="fn")
        nan = tf.constant(float("nan"), tf.float32)

        def ratio(num, den, name):
            safe = tf.where(den > 0, den, tf.ones_like(den))
            return tf.where(den > 0, num / safe, nan, name=name)

        n_pos = tf.reduce_sum(pos)
        n_neg = tf.reduce_sum(neg)
        accuracy = ratio(tp + tn, n_pos + n_neg, "accuracy")
        sensitivity = ratio(tp, tp + fn, "sensitivity")
        specificity = ratio(tn, tn + fp, "specificity")

        # pair[i, j] compares positive i with negative j.
        diff = probs[:, None] - probs[None, :]
        wins = tf.cast(diff > 0, tf.float32) + 0.5 * tf.cast(tf.equal(diff, 0.0), tf.float32)
        pair_mask = pos[:, None] * neg[None, :]
        u = tf.reduce_sum(wins * pair_mask)
        auc = ratio(u, n_pos * n_neg, "auc")
    return {"accuracy": accuracy, "sensitivity": sensitivity, "specificity": specificity,
            "auc": auc, "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def add_metric_summaries(metric_tensors, prefix):
    """Adds a tf1.summary.scalar '<prefix>/<name>' per tensor; returns the summary ops.

    nan values are written as they are (TensorBoard shows them as gaps).
    """
    prefix = prefix.rstrip("/")
    ops = []
    for name in sorted(metric_tensors):
        tag = f"{prefix}/{name}" if prefix else name
        ops.append(tf1.summary.scalar(tag, metric_tensors[name]))
    return ops
