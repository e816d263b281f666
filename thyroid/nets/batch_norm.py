"""Batch-norm settings shared by the networks that have it."""

from thyroid.compat import tf1

# slim.batch_norm goes through the legacy Keras layer unless its update ops are sent to a
# sequence of collections; then it uses its own fused path, which makes the same variables
# (same names, same collections), the same FusedBatchNorm op and the same UPDATE_OPS entries,
# and builds a graph several times faster (most of a frozen pass's fixed cost).
FUSED_BUILD = {"fused": True, "updates_collections": (tf1.GraphKeys.UPDATE_OPS,)}
