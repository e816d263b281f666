"""The background iterator the frozen pass reads its batches from."""

import time

import pytest

from thyroid.prefetch import Prefetch


def test_items_arrive_in_order_and_end():
    with Prefetch(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))
        assert list(items) == []  # an ended prefetch stays ended


def test_slices_of_one_prefetch_share_the_stream():
    import itertools
    with Prefetch(iter(range(10)), depth=2) as items:
        assert list(itertools.islice(items, 4)) == [0, 1, 2, 3]
        assert list(itertools.islice(items, 0)) == []
        assert list(itertools.islice(items, 6)) == [4, 5, 6, 7, 8, 9]


def test_producer_runs_ahead_before_the_first_read_and_stops_at_depth():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    with Prefetch(source(), depth=4) as items:
        deadline = time.monotonic() + 5
        while len(produced) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        # 4 queued and one more made, waiting for room
        assert len(produced) == 5
        assert next(items) == 0


def test_an_error_in_the_producer_reaches_the_consumer_after_earlier_items():
    def source():
        yield 1
        raise OSError("broken shard")

    with Prefetch(source(), depth=2) as items:
        assert next(items) == 1
        with pytest.raises(OSError, match="broken shard"):
            next(items)


def test_close_stops_a_producer_the_consumer_abandoned():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    items = Prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert not items._thread.is_alive()


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth"):
        Prefetch(iter(()), depth=0)
