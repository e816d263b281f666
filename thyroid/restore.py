"""Restoring (part of) a graph's variables from a checkpoint: one function every entry point uses.

    restore = build_restore_fn(path, exclude_scopes=spec.exclude_scopes)
    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        restore(sess)
"""

import os

from absl import logging

from thyroid.checkpoint_paths import latest_checkpoint, literal
from thyroid.compat import tf, tf1
from thyroid.scopes import parse_scopes

# Variables that are training state, not model state.
_OPTIMIZER_SUFFIXES = ("/Momentum", "/Adam", "/Adam_1", "/RMSProp", "/RMSProp_1",
                       "/Adagrad", "/ExponentialMovingAverage", "/ftrl", "/Ftrl", "/Ftrl_1")
_NON_MODEL_NAMES = ("global_step", "beta1_power", "beta2_power")



class CheckpointMismatchError(ValueError):
    """The graph's variables and the checkpoint's disagree (missing or shape-mismatched)."""

    def __init__(self, message, missing=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.mismatched = list(mismatched)


def _name(variable):
    return variable.op.name


def in_scopes(name, scopes):
    """Prefix match, as TF-Slim does (``name.startswith(scope)``)."""
    return any(name.startswith(scope) for scope in scopes)


def warn_unmatched_scopes(scopes, variables, what="scope"):
    """Logs a warning for each of ``scopes`` that matches none of ``variables``; returns them."""
    names = [_name(v) if not isinstance(v, str) else v for v in variables]
    unmatched = [s for s in parse_scopes(scopes) if not any(n.startswith(s) for n in names)]
    for scope in unmatched:
        logging.warning("%s %r matches no variable", what, scope)
    return unmatched


def variables_in_scopes(scopes, variables=None):
    """Trainable variables (or ``variables``) under any of ``scopes``; all when ``scopes`` empty."""
    scopes = parse_scopes(scopes)
    if variables is None:
        variables = tf1.trainable_variables()
    if not scopes:
        return list(variables)
    warn_unmatched_scopes(scopes, variables, "trainable scope")
    return [v for v in variables if in_scopes(_name(v), scopes)]


def is_model_variable(variable):
    name = _name(variable)
    if name.split("/")[-1] in _NON_MODEL_NAMES or name in _NON_MODEL_NAMES:
        return False
    return not any(part in name + "/" for part in (s + "/" for s in _OPTIMIZER_SUFFIXES))


def resolve_checkpoint_path(checkpoint_path):
    """A file prefix or a directory (-> its latest checkpoint) -> a checkpoint prefix."""
    if checkpoint_path is None:
        raise ValueError("No checkpoint path given")
    if os.path.isdir(checkpoint_path):
        latest = latest_checkpoint(checkpoint_path)
        if latest is None:
            candidates = sorted(f[:-len(".index")] for f in os.listdir(checkpoint_path)
                                if f.endswith(".index"))
            if len(candidates) == 1:
                return os.path.join(checkpoint_path, candidates[0])
            raise ValueError("No checkpoint found in directory %s" % checkpoint_path)
        return latest
    if not (os.path.exists(checkpoint_path + ".index") or os.path.isfile(checkpoint_path)):
        raise ValueError("Checkpoint %s not found (expected %s.index)"
                         % (checkpoint_path, checkpoint_path))
    return checkpoint_path


def _compare_with_checkpoint(graph_weights, checkpoint_shapes):
    """{name: tensor or variable} against the checkpoint's {name: shape} -> (missing names,
    [(name, graph shape, checkpoint shape)] of mismatched ones, {name: weight} that match)."""
    missing, mismatched, matching = [], [], {}
    for name, weight in graph_weights.items():
        if name not in checkpoint_shapes:
            missing.append(name)
            continue
        graph_shape = weight.shape.as_list()
        if list(checkpoint_shapes[name]) != graph_shape:
            mismatched.append((name, tuple(graph_shape), tuple(checkpoint_shapes[name])))
            continue
        matching[name] = weight
    return missing, mismatched, matching


def _mismatch_message(path, missing, mismatched):
    lines = []
    if missing:
        lines.append("%d variable(s) missing from the checkpoint: %s"
                     % (len(missing), ", ".join(missing)))
    for name, graph_shape, ckpt_shape in mismatched:
        lines.append("shape mismatch for %s: graph %s vs checkpoint %s"
                     % (name, list(graph_shape), list(ckpt_shape)))
    return "Checkpoint %s does not match the graph: %s" % (path, "; ".join(lines))


def build_restore_fn(checkpoint_path, exclude_scopes=(), ignore_missing_vars=False,
                     var_list=None):
    """-> fn(sess) restoring the model variables not under ``exclude_scopes`` from the checkpoint.

    ``checkpoint_path``: a checkpoint prefix or a directory (its latest checkpoint).
    Variables: ``var_list`` or every global variable except optimizer slots and global_step,
    minus those whose name starts with one of ``exclude_scopes``. Raises
    ``CheckpointMismatchError`` naming the missing and the shape-mismatched variables, unless
    ``ignore_missing_vars`` (then they are skipped with a warning). Call it inside the graph.
    """
    path = resolve_checkpoint_path(checkpoint_path)
    exclude_scopes = parse_scopes(exclude_scopes)
    if var_list is None:
        var_list = [v for v in tf1.global_variables() if is_model_variable(v)]
    else:
        var_list = list(var_list)
    variables = [v for v in var_list if not in_scopes(_name(v), exclude_scopes)]

    shapes = tf.train.load_checkpoint(literal(path)).get_variable_to_shape_map()
    # An exclude scope is a likely typo when it matches neither the graph nor the checkpoint
    # (excluding the checkpoint's ImageNet classifier from a graph without one is normal).
    warn_unmatched_scopes(exclude_scopes, [_name(v) for v in var_list] + list(shapes),
                          "exclude scope")
    missing, mismatched, restore = _compare_with_checkpoint(
        {_name(v): v for v in variables}, shapes)
    if missing or mismatched:
        message = _mismatch_message(path, missing, mismatched)
        if not ignore_missing_vars:
            raise CheckpointMismatchError(
                message + " (exclude their scopes or pass ignore_missing_vars)",
                missing, mismatched)
        logging.warning("%s; skipping them (ignore_missing_vars)", message)
    if not restore:
        logging.warning("Nothing to restore from %s", path)

        def noop(sess):
            del sess
        return noop

    saver = tf1.train.Saver(var_list=restore, reshape=False, sharded=False)
    logging.info("Restoring %d variables from %s", len(restore), path)

    def restore_fn(sess):
        saver.restore(sess, literal(path))

    restore_fn.checkpoint_path = path
    restore_fn.restored_names = sorted(restore)
    restore_fn.restored_variables = list(restore.values())
    restore_fn.skipped_names = sorted(missing + [m[0] for m in mismatched])
    return restore_fn


def initialize_and_restore(sess, restore_fn=None):
    """Initialises the graph's variables and restores ``restore_fn``'s from its checkpoint.

    Restored variables are not initialised first: generating random values for millions of
    weights only to overwrite them is a noticeable share of a short feature pass.
    """
    restored = {id(v) for v in getattr(restore_fn, "restored_variables", ())}
    sess.run(tf1.variables_initializer([v for v in tf1.global_variables() if id(v) not in restored]))
    if restore_fn is not None:
        restore_fn(sess)


class FrozenWeights:
    """Weights of layers that never train, held without variable objects.

    Build the layers under ``tf1.variable_scope("", custom_getter=weights.getter)``; then
    ``restore_op(checkpoint_path)`` fills them all in one op. Each weight is a bare resource
    handle and its read: creating ~250 Python variable objects (initialisers, collections) is
    most of the cost of building a frozen network, and none of it is used when nothing trains.
    ``saveables`` lets a Saver write them into checkpoints under their own names. Weights under
    ``exclude_scopes`` stay ordinary variables with their initialisers. A weight missing from
    the checkpoint or of another shape makes ``restore_op`` raise ``CheckpointMismatchError``
    naming it, as ``build_restore_fn`` does.
    """

    def __init__(self, exclude_scopes=()):
        self._exclude_scopes = parse_scopes(exclude_scopes)
        self._handles = {}
        self.saveables = {}  # name -> the weight's read, which a Saver accepts

    def getter(self, getter, name, *args, **kwargs):
        """A custom getter: a frozen weight's read, or a variable under an excluded scope."""
        if in_scopes(name, self._exclude_scopes):
            return getter(name, *args, **kwargs)
        if name not in self._handles:  # a reused scope gets the same weight
            shape = tf.TensorShape(kwargs.get("shape")).as_list()
            dtype = tf.as_dtype(kwargs.get("dtype") or tf.float32).base_dtype
            handle = tf.raw_ops.VarHandleOp(dtype=dtype, shape=shape, shared_name=name, name=name)
            self._handles[name] = handle
            self.saveables[name] = tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype,
                                                             name=name + "/read")
        return self.saveables[name]

    def restore_op(self, checkpoint_path):
        """One op filling every frozen weight from the checkpoint (a prefix or a directory);
        raises CheckpointMismatchError naming the missing and shape-mismatched ones."""
        path = resolve_checkpoint_path(checkpoint_path)
        shapes = tf.train.load_checkpoint(literal(path)).get_variable_to_shape_map()
        missing, mismatched, _ = _compare_with_checkpoint(self.saveables, shapes)
        if missing or mismatched:
            raise CheckpointMismatchError(_mismatch_message(path, missing, mismatched)
                                          + " (exclude their scopes)", missing, mismatched)
        names = sorted(self._handles)
        logging.info("Restoring %d frozen weights from %s", len(names), path)
        values = tf.raw_ops.RestoreV2(prefix=literal(path), tensor_names=names,
                                      shape_and_slices=[""] * len(names),
                                      dtypes=[self.saveables[name].dtype for name in names])
        return tf.group(*[tf.raw_ops.AssignVariableOp(resource=self._handles[name], value=value)
                          for name, value in zip(names, values)], name="restore_frozen_weights")
