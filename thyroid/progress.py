"""Progress lines for long loops: rate and time left, at most every few seconds."""

import time

from absl import logging


class Progress:
    def __init__(self, total, what, unit="items", every_seconds=5.0):
        self.total = max(int(total), 0)
        self.what = what
        self.unit = unit
        self.every_seconds = every_seconds
        self.done = 0
        self.start = time.monotonic()
        self._last_report = self.start

    def update(self, count=1):
        self.done += count
        now = time.monotonic()
        if now - self._last_report >= self.every_seconds or self.done >= self.total:
            self._last_report = now
            logging.info("%s", self.line(now))

    def line(self, now=None):
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.what}: {self.done}/{self.total} {self.unit} "
                f"({rate:.1f} {self.unit}/s, {elapsed:.0f}s elapsed, ~{left:.0f}s left)")

