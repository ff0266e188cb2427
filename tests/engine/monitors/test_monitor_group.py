"""MonitorGroup: sampling thread, and a broken monitor never breaks the others."""

from __future__ import annotations

import threading
import time

from mlperf_track import metrics as m
from mlperf_track.engine.monitors import Monitor, MonitorGroup, MonitorReading, Window


class Counting(Monitor):
    name = "counting"
    metric_keys = (m.GPU_UTILIZATION,)
    samples = True

    def __init__(self) -> None:
        self.count = 0
        self.threads: set[str] = set()

    def start(self) -> None:
        self.count = 0

    def sample(self) -> None:
        self.count += 1
        self.threads.add(threading.current_thread().name)

    def stop(self, window: Window) -> MonitorReading:
        return MonitorReading(metrics={m.GPU_UTILIZATION: float(self.count)})


class Broken(Monitor):
    name = "broken"
    metric_keys = (m.CPU_POWER_MEAN,)

    def __init__(self, fail_in: str) -> None:
        self.fail_in = fail_in

    def start(self) -> None:
        if self.fail_in == "start":
            raise RuntimeError("device vanished")

    def stop(self, window: Window) -> MonitorReading:
        raise OSError("read failed")


def test_sampling_thread_runs_and_stops() -> None:
    counting = Counting()
    group = MonitorGroup([counting], interval_s=0.005)
    group.start()
    time.sleep(0.1)
    reading = group.stop(Window(seconds=0.1, samples=1))
    assert reading.metrics[m.GPU_UTILIZATION] >= 3
    assert counting.threads == {"mlperf-track-monitors"}
    after = counting.count
    time.sleep(0.02)
    assert counting.count == after  # the thread has stopped


def test_broken_monitors_leave_notes_and_others_still_report() -> None:
    group = MonitorGroup([Broken("start"), Counting()], interval_s=0.005)
    group.start()
    reading = group.stop(Window(seconds=0.0, samples=1))
    assert "failed to start: RuntimeError: device vanished" in reading.notes[m.CPU_POWER_MEAN]
    assert m.GPU_UTILIZATION in reading.metrics
    group = MonitorGroup([Broken("stop")])
    group.start()
    reading = group.stop(Window(seconds=0.0, samples=1))
    assert reading.metrics == {} and "failed to read: OSError" in reading.notes[m.CPU_POWER_MEAN]
