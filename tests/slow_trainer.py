"""``python slow_trainer.py PAUSE_S <thyroid.train flags>``: thyroid.train with a pause after
every step, so that test_resume.py can kill it in the middle of a run.

The pause only stretches wall time; the weights a step computes are untouched.
"""

import sys
import time

from thyroid import train
from thyroid.progress import Progress


def pause_after_each_step(pause_s):
    original_update = Progress.update

    def update_then_pause(self, count=1):
        original_update(self, count)
        time.sleep(pause_s)

    Progress.update = update_then_pause


if __name__ == "__main__":
    pause_after_each_step(float(sys.argv[1]))
    sys.exit(train.main([sys.argv[0]] + sys.argv[2:]))
