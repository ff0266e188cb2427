"""A fake NVML device for the GPU monitor tests (the hardware is absent here; the monitors' logic is not faked)."""

from __future__ import annotations


def _not_supported() -> BaseException:
    try:
        import pynvml
    except ImportError:
        return OSError("Not Supported")
    return pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


class FakeGpu:
    """Implements GpuCounters with settable readings."""

    def __init__(self, *, energy: bool = True) -> None:
        self.energy_mj = 1_000_000
        self.power = 100_000
        self.utilization = [50.0]
        self.memory: dict[int, int | None] = {}
        self.device_used = 1 << 30
        self.energy_supported = energy

    def total_energy_mj(self) -> int:
        if not self.energy_supported:
            raise _not_supported()
        return self.energy_mj

    def power_mw(self) -> int:
        return self.power

    def utilization_pct(self) -> float:
        return self.utilization.pop(0) if len(self.utilization) > 1 else self.utilization[0]

    def process_memory_bytes(self, pid: int) -> int | None:
        return self.memory.get(pid)

    def used_memory_bytes(self) -> int:
        return self.device_used
