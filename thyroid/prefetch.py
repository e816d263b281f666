"""Running an iterator ahead in a background thread."""

import queue
import threading

_DONE = object()


class Prefetch:
    """Iterates ``iterable`` in a background thread, at most ``depth`` items ahead of the
    consumer, from the moment it is created; an exception in the producer is raised in the
    consumer. Use it as a context manager so that an abandoned producer stops."""

    def __init__(self, iterable, depth):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iterable,), daemon=True)
        self._thread.start()

    def _put(self, item):
        """Waits for room unless the consumer has gone; -> False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterable):
        try:
            for item in iterable:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            self._put((_DONE, error))
            return
        self._put((_DONE, None))

    def __iter__(self):
        return self

    def __next__(self):
        item, error = self._queue.get()
        if item is _DONE:
            self._queue.put((_DONE, error))  # later calls end the same way
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self):
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
