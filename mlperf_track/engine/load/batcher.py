"""The dynamic batcher's decision, as a pure function shared by the threaded deployment and the simulator.

Triton's dynamic batcher (without preferred sizes) forms a batch from the oldest queued requests up to the
maximum batch size; it sends a full batch at once, and a partial one when the oldest request has waited
``max_queue_delay`` (immediately when the delay is 0). Keeping the rule in one function means the simulation
that tests and benchmarks compare against runs exactly the policy the real deployment runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlperf_track.engine.load.queries import QueueItem


@dataclass(frozen=True)
class BatchDecision:
    """What a free worker does now.

    Attributes:
        take: How many items from the front of the queue to run now (0: wait).
        wake_ns: When waiting, the time to decide again even if nothing arrives (``None``: wait for an arrival).
    """

    take: int
    wake_ns: int | None = None


def decide(queue: Iterable[QueueItem], now_ns: int, max_batch_size: int, max_queue_delay_ns: int) -> BatchDecision:
    """Decide for a free worker, given the queue (oldest first) at ``now_ns``.

    Args:
        queue: The waiting items, oldest first (each at most ``max_batch_size`` samples).
        now_ns: The current time.
        max_batch_size: The most samples in one batch.
        max_queue_delay_ns: How long a partial batch may wait for more items, from the oldest item's enqueue.
    """
    take = 0
    total = 0
    full = False
    oldest_ns: int | None = None
    for item in queue:
        if oldest_ns is None:
            oldest_ns = item.enqueued_ns
        if take and total + item.samples > max_batch_size:
            full = True
            break
        take += 1
        total += item.samples
        if total >= max_batch_size:
            full = True
            break
    if take == 0 or oldest_ns is None:
        return BatchDecision(0)
    deadline = oldest_ns + max_queue_delay_ns
    if full or max_queue_delay_ns <= 0 or now_ns >= deadline:
        return BatchDecision(take)
    return BatchDecision(0, deadline)
