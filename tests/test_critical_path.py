"""The plan's critical path and the speed-up it allows, on a hand-built plan."""

import pytest

from thyroid.study.config import StudyConfig
from thyroid.study.critical_path import critical_path
from thyroid.study.plan import Job, Plan


def test_the_longest_chain_and_the_bound_on_n_workers():
    a, b, c = Job("data", "s"), Job("fit", "s", ("data",), 1), Job("fit", "s", ("data",), 2)
    d = Job("report", "s", (b.id, c.id))
    plan = Plan("/run", StudyConfig(), (a, b, c, d), 0.0, "", "")
    path = critical_path(plan, {a.id: 1.0, b.id: 5.0, c.id: 2.0, d.id: 1.0})
    assert path.jobs == ("data", "fit-1", "report")
    assert path.seconds == 7.0 and path.total_seconds == 9.0
    assert path.wall_bound(1) == 9.0 and path.wall_bound(2) == 7.0
    assert path.speedup(2) == pytest.approx(9.0 / 7.0) and path.speedup(8) == path.speedup(2)
