"""What one job may use: CPU threads and GPUs. Applied where the job runs (in the study's own
process for the local executor, inside the Ray task otherwise), before TensorFlow runs an op.

Ray sets only ``OMP_NUM_THREADS`` for a task; TensorFlow's own pools would still take every
core of the node, so the intra- and inter-op pools are sized to the task's CPU share here.
With GPUs, memory growth is on, so that jobs sharing a GPU (``--gpus_per_job=0.5``) do not
each reserve all of its memory.
"""

import dataclasses
import math
import os
import sys

from absl import logging

from thyroid.datasets.workers import available_cores


@dataclasses.dataclass(frozen=True)
class JobResources:
    """CPUs (threads) and GPUs (fractions allowed) per job; 0 CPUs: TensorFlow's default."""
    cpus: float = 0.0
    gpus: float = 0.0

    @property
    def threads(self):
        return max(1, int(math.floor(self.cpus))) if self.cpus else 0


_APPLIED = {}  # what this process has configured (TensorFlow's pools are set once per process)


def configure_tensorflow(resources):
    """Sizes TensorFlow's thread pools to ``resources`` and turns on GPU memory growth.
    Idempotent within a process; a process configured differently keeps its first setting
    and says so (TensorFlow cannot resize its pools once it has run)."""
    threads = resources.threads
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    from thyroid.compat import tf
    if _APPLIED.get("threads") not in (None, threads):
        logging.warning("TensorFlow already runs %s threads in this process; %d asked",
                        _APPLIED["threads"], threads)
        return
    if "threads" not in _APPLIED:
        try:
            if threads:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:  # TensorFlow had already started in this process
            logging.warning("TensorFlow threads not set: %s", error)
        _APPLIED["threads"] = threads


def tensorflow_gpus():
    """The GPUs TensorFlow sees in this process, or None when no job here loaded TensorFlow:
    recorded with each job's result, so that a GPU run can be checked (bench/gpu_check.py)."""
    if "tensorflow" not in sys.modules:
        return None
    from thyroid.compat import tf
    return [device.name for device in tf.config.list_logical_devices("GPU")]


def job_workers():
    """Processes a job may use for per-image work (the dataset build's workers): the CPU share
    its executor gave it (``--cpus_per_job``; a Ray task's CPUs), else every core this process
    may use (the local executor without ``--cpus_per_job`` runs one job at a time)."""
    return _APPLIED.get("threads") or available_cores()
