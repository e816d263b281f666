"""A frozen network's forward pass run by the TFLite interpreter (XNNPACK on the CPU).

For EfficientNet-Lite0 the interpreter computes the same frozen outputs as the TensorFlow
graph about twice as fast on the CPUs measured (bench/frozen_pass_tflite.py), so frozen
passes of the networks in ``features.TFLITE_MODELS`` run here when no GPU is visible. The
model is converted from the TensorFlow graph's own session (weights restored or seeded, as
the graph computes them) with its weights made constants; each output agrees with the
graph's to 1e-4 of that output's largest magnitude (tests/test_frozen_tflite.py).
"""

import os
import warnings

import numpy as np

from thyroid.compat import tf, tf1


def frozen_graph_def(session, output_tensors):
    """The session's graph with every variable read replaced by its current value, cut down
    to what ``output_tensors`` need. Frozen weights are bare resource handles, which the
    converter's own freezing does not recognise, so reads are replaced here whatever made them."""
    graph_def = session.graph.as_graph_def()
    reads = [node.name for node in graph_def.node if node.op == "ReadVariableOp"]
    values = dict(zip(reads, session.run([name + ":0" for name in reads]))) if reads else {}
    frozen = tf1.GraphDef()
    for node in graph_def.node:
        if node.name in values:
            constant = frozen.node.add(name=node.name, op="Const")
            constant.attr["dtype"].type = node.attr["dtype"].type
            constant.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
        else:
            frozen.node.append(node)
    return tf1.graph_util.extract_sub_graph(frozen, [t.op.name for t in output_tensors])


def convert(session, input_tensor, output_tensors):
    """A float32 TFLite model (bytes) of ``session``'s graph from ``input_tensor`` to
    ``output_tensors``; the batch dimension is resized when the model is loaded."""
    graph_def = frozen_graph_def(session, output_tensors)
    converter = tf1.lite.TFLiteConverter(graph_def, [input_tensor], list(output_tensors))
    return converter.convert()


def interpreter_threads():
    """TensorFlow's intra-op thread count when a job set one, else every CPU this process may
    use: the frozen pass is the only computation running while it lasts."""
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return threads or len(os.sched_getaffinity(0))


def make_interpreter(model_content, threads):
    """LiteRT's interpreter when installed, else tf.lite's (deprecated but shipped); both
    apply XNNPACK to float models by default."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(model_content=model_content, num_threads=threads)


# Images per invoke: XNNPACK ran EfficientNet-Lite0 at 224 px about 6 % faster in fours than
# one at a time or in sixteens on a 2-core Xeon (the activations of a few images stay in cache).
INVOKE_BATCH = 4


class TFLiteNetwork:
    """The interpreter over a converted frozen network, with ``FrozenNetwork``'s ``run_batch``:
    uint8 images [N, S, S, 3] in, {output: float32 array} out. The input is sized once to
    ``invoke_batch`` images; a batch is run that many at a time, the last group padded with
    zeros, so every invoke has one shape (the graph path pads its short batch the same way)."""

    def __init__(self, model_content, output_names, invoke_batch=INVOKE_BATCH, threads=0):
        self.invoke_batch = invoke_batch
        self.interpreter = make_interpreter(model_content, threads or interpreter_threads())
        self._input = self.interpreter.get_input_details()[0]
        shape = list(self._input["shape"])
        self.interpreter.resize_tensor_input(self._input["index"], [invoke_batch] + shape[1:])
        self.interpreter.allocate_tensors()
        by_name = {detail["name"]: detail for detail in self.interpreter.get_output_details()}
        missing = sorted(set(output_names.values()) - set(by_name))
        if missing:
            raise ValueError(f"the converted model lacks outputs {missing}; it has {sorted(by_name)}")
        self._outputs = {output: by_name[name]["index"] for output, name in output_names.items()}
        self.output_shapes = {output: tuple(by_name[name]["shape"][1:])
                              for output, name in output_names.items()}

    def run_batch(self, batch):
        parts = [self._invoke(batch[start:start + self.invoke_batch])
                 for start in range(0, len(batch), self.invoke_batch)]
        return {output: np.concatenate([part[output] for part in parts]) if parts else
                np.zeros((0,) + self.output_shapes[output], np.float32)
                for output in self._outputs}

    def _invoke(self, group):
        size = len(group)
        if size < self.invoke_batch:
            padding = np.zeros((self.invoke_batch - size,) + group.shape[1:], group.dtype)
            group = np.concatenate([group, padding])
        self.interpreter.set_tensor(self._input["index"], np.ascontiguousarray(group, np.uint8))
        self.interpreter.invoke()
        return {output: np.array(self.interpreter.get_tensor(index)[:size], np.float32)
                for output, index in self._outputs.items()}

    def close(self):
        self.interpreter = None
