"""Random ops whose draws depend only on (graph seed, op salt, global step).

TensorFlow's stateful random ops restart their sequence when a process restarts, so a
run resumed from a checkpoint would see other dropout masks than an uninterrupted
one. Stateless ops seeded from the global step give the same mask at the same step
whatever happened in between.
"""

from thyroid.compat import tf, tf1


def step_seed(salt):
    """A [2] int64 seed: (graph seed + ``salt``, global step); the step is 0 without one."""
    graph = tf1.get_default_graph()
    base = tf.constant((graph.seed or 0) + salt, tf.int64)
    global_step = tf1.train.get_global_step(graph)
    # The read feeds the mask, the mask the gradients, and the step increment waits for
    # the gradients: the draw always sees the step before the update.
    step = tf.zeros([], tf.int64) if global_step is None else tf.cast(tf.identity(global_step), tf.int64)
    return tf.stack([base, step])


def dropout(inputs, keep_prob, is_training, salt, scope=None):
    """Inverted dropout with a per-step mask; the identity unless ``is_training`` is true.

    ``is_training``: a Python bool or a boolean tensor (e.g. a placeholder).
    """
    with tf1.name_scope(scope, "Dropout", [inputs]):
        def drop():
            return tf.nn.experimental.stateless_dropout(inputs, rate=1.0 - keep_prob,
                                                        seed=step_seed(salt))

        if isinstance(is_training, bool):
            return drop() if is_training and keep_prob < 1.0 else inputs
        return tf.cond(is_training, drop, lambda: tf.identity(inputs))
