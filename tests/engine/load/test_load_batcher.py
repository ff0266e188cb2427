"""The dynamic batcher's rule (Triton's, without preferred sizes), as a pure function."""

from __future__ import annotations

from mlperf_track.engine.load.batcher import decide
from mlperf_track.engine.load.queries import Query, QueueItem


def _queue(*items: tuple[int, int]) -> list[QueueItem]:
    """Items of ``(samples, enqueued_ns)``."""
    return [QueueItem(Query(i, 0, samples, t), samples, t) for i, (samples, t) in enumerate(items)]


def test_empty_queue_waits_for_an_arrival() -> None:
    decision = decide([], 100, max_batch_size=8, max_queue_delay_ns=1000)
    assert decision.take == 0
    assert decision.wake_ns is None


def test_a_full_batch_goes_at_once() -> None:
    queue = _queue(*[(1, 0)] * 10)
    assert decide(queue, 0, max_batch_size=4, max_queue_delay_ns=10**9).take == 4


def test_a_partial_batch_waits_until_the_oldest_has_waited_the_delay() -> None:
    queue = _queue((1, 100), (1, 300))
    waiting = decide(queue, 500, max_batch_size=4, max_queue_delay_ns=1000)
    assert (waiting.take, waiting.wake_ns) == (0, 1100)  # the deadline counts from the oldest item
    assert decide(queue, 1100, max_batch_size=4, max_queue_delay_ns=1000).take == 2


def test_zero_delay_batches_whatever_is_waiting() -> None:
    queue = _queue((1, 0), (1, 0), (1, 0))
    assert decide(queue, 0, max_batch_size=8, max_queue_delay_ns=0).take == 3
    assert decide(queue, 0, max_batch_size=2, max_queue_delay_ns=0).take == 2


def test_no_batching_takes_one() -> None:
    queue = _queue((1, 0), (1, 0))
    assert decide(queue, 0, max_batch_size=1, max_queue_delay_ns=10**6).take == 1


def test_items_are_never_split_and_the_limit_counts_samples() -> None:
    queue = _queue((3, 0), (3, 0), (1, 0))
    # 3 + 3 > 4: the second item does not fit, so the batch is full with one item.
    assert decide(queue, 0, max_batch_size=4, max_queue_delay_ns=10**9).take == 1
    assert decide(queue, 0, max_batch_size=7, max_queue_delay_ns=10**9).take == 3
