"""The monitor interface and the group that runs monitors beside the timed loop.

A :class:`Monitor` reads a source at the window's edges (:meth:`Monitor.start`, :meth:`Monitor.stop`) and,
if it sets ``samples = True``, also in :meth:`Monitor.sample`, which one shared background thread calls
every ``interval_s`` (default 50 ms). A source that is absent on this machine makes the monitor return
notes instead of metrics: a metric is never reported as 0 because it could not be read.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

logger = logging.getLogger(__name__)

#: Bytes in the "MB" of every ``*_mb`` metric the engine reports (MiB, as torch and nvidia-smi count).
BYTES_PER_MB = 1024**2

#: (monitor, reason) pairs already logged at INFO in this process: a source absent from the machine is said
#: once, not once per case (every reading still carries its notes).
_ABSENCES_LOGGED: set[tuple[str, str]] = set()
_ABSENCES_LOCK = threading.Lock()


@dataclass(frozen=True)
class Window:
    """What happened inside the monitored window.

    Attributes:
        seconds: Wall-clock length of the timed window.
        samples: Samples (not batches) processed in it.
    """

    seconds: float
    samples: int


@dataclass
class MonitorReading:
    """What one monitor reports for one window.

    Attributes:
        metrics: Values keyed by :mod:`mlperf_track.metrics` names.
        notes: Why a metric is absent (keyed by metric key) or what a source could not do (keyed by source).
        tags: Facts about how the values were obtained (``memory.cpu_rss_peak_source=vmhwm``).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def merge(self, other: MonitorReading) -> None:
        """Add ``other``'s entries to this reading."""
        self.metrics.update(other.metrics)
        self.notes.update(other.notes)
        self.tags.update(other.tags)


class Monitor(ABC):
    """A source of side metrics read over the timed window."""

    #: Short name, used as the note key when the whole source is absent.
    name: ClassVar[str]
    #: Metric keys this monitor may produce (each gets a note when the source is absent).
    metric_keys: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`sample` should be called periodically during the window.
    samples: ClassVar[bool] = False
    #: Metric keys for which 0 is a real reading (utilisation of an idle device); every other metric is a
    #: finite value above zero or absent with a note (the contract ``tests/engine/monitors`` checks).
    zero_allowed: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def start(self) -> None:
        """Open the source and take the first reading (called right before the timed loop)."""

    def sample(self) -> None:  # noqa: B027 - optional hook
        """Take one periodic reading (background thread; must be cheap and thread-safe)."""

    @abstractmethod
    def stop(self, window: Window) -> MonitorReading:
        """Take the last reading and return the window's metrics, or notes saying why they are absent."""

    def absent(self, reason: str) -> MonitorReading:
        """A reading with every metric of this monitor absent for ``reason`` (also logged: at INFO the first time
        this process meets that monitor and reason, at DEBUG after that)."""
        with _ABSENCES_LOCK:
            first = (self.name, reason) not in _ABSENCES_LOGGED
            _ABSENCES_LOGGED.add((self.name, reason))
        logger.log(
            logging.INFO if first else logging.DEBUG,
            "%s: metrics %s left out: %s",
            self.name,
            ", ".join(self.metric_keys) or "-",
            reason,
        )
        return MonitorReading(notes={key: reason for key in self.metric_keys or (self.name,)})


class MonitorGroup:
    """Start, sample and stop several monitors together; one monitor's failure never stops the others.

    Args:
        monitors: The monitors to run.
        interval_s: Sampling period of the background thread.
    """

    def __init__(self, monitors: Sequence[Monitor], interval_s: float = 0.05) -> None:
        self.monitors = list(monitors)
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: dict[str, str] = {}
        self._sampled_errors: set[str] = set()

    def start(self) -> None:
        """Start every monitor, then the sampling thread if any monitor samples."""
        for monitor in self.monitors:
            try:
                monitor.start()
            except Exception as error:  # a broken source must not break the measurement
                logger.warning("monitor %s failed to start: %s", monitor.name, error)
                self._failed[monitor.name] = f"failed to start: {type(error).__name__}: {error}"
        if any(monitor.samples and monitor.name not in self._failed for monitor in self.monitors):
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._run, name="mlperf-track-monitors", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        sampling = [m for m in self.monitors if m.samples and m.name not in self._failed]
        while not self._stop_event.wait(self.interval_s):
            for monitor in sampling:
                try:
                    monitor.sample()
                except Exception as error:  # keep sampling the others; report once
                    if monitor.name not in self._sampled_errors:
                        self._sampled_errors.add(monitor.name)
                        logger.warning("monitor %s failed to sample: %s", monitor.name, error)

    def stop(self, window: Window) -> MonitorReading:
        """Stop the thread and every monitor; return their merged readings."""
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
        merged = MonitorReading()
        for monitor in self.monitors:
            if monitor.name in self._failed:
                merged.merge(MonitorReading(notes={k: self._failed[monitor.name] for k in monitor.metric_keys}))
                continue
            try:
                merged.merge(monitor.stop(window))
            except Exception as error:
                logger.warning("monitor %s failed to stop: %s", monitor.name, error)
                reason = f"failed to read: {type(error).__name__}: {error}"
                merged.merge(MonitorReading(notes={key: reason for key in monitor.metric_keys}))
        return merged
