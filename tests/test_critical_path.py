"""The plan's critical path and the speed-up it allows, on a hand-built plan."""

import pytest

from thyroid.study.config import StudyConfig
from thyroid.study.critical_path import critical_path
from thyroid.study.plan import Job, Plan


def test_the_longest_chain_and_the_bound_on_n_workers():
    jobs = (Job("a", "data", "s"), Job("b", "fit", "s", ("a",)), Job("c", "fit", "s", ("a",)),
            Job("d", "report", "s", ("b", "c")))
    plan = Plan("/run", StudyConfig(), jobs, 0.0, "", "")
    path = critical_path(plan, {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0})
    assert path.jobs == ("a", "b", "d") and path.seconds == 7.0 and path.total_seconds == 9.0
    assert path.wall_bound(1) == 9.0 and path.wall_bound(2) == 7.0
    assert path.speedup(2) == pytest.approx(9.0 / 7.0) and path.speedup(8) == path.speedup(2)
