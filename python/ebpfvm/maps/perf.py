"""Perf event arrays (``BPF_MAP_TYPE_PERF_EVENT_ARRAY``): per-CPU sample
buffers filled by ``bpf_perf_event_output``, consumed as bcc does::

    pe = obj.maps["events"]
    pe.open_perf_buffer(lambda cpu, data, size: ..., lost_cb=lambda lost: ...)
    pe.poll(timeout_ms=100)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ebpfvm._core import PerfBufferConsumer
from ebpfvm.maps._base import Map, register_view
from ebpfvm.maps._callbacks import positional_arity

__all__ = ["PerfEventArray"]


@register_view
class PerfEventArray(Map):
    """A perf event array with one buffer per CPU (``max_entries`` 0: one
    per virtual CPU)."""

    MAP_TYPES = ("perf_event_array",)

    def __init__(self, max_entries: int = 0, *, name: str = "", flags: int = 0) -> None:
        self._create(
            self.MAP_TYPES[0],
            "u32",
            "u32",
            max_entries,
            name=name,
            flags=flags,
        )

    def _attach(self, core: Any, key_codec: Any, value_codec: Any) -> None:
        super()._attach(core, key_codec, value_codec)
        self._reader = PerfBufferConsumer(core)
        self._consumer: PerfBufferConsumer | None = None

    def open_perf_buffer(
        self,
        callback: Callable[..., Any],
        page_cnt: int = 8,
        lost_cb: Callable[..., Any] | None = None,
    ) -> None:
        """Sets where samples go: bcc's ``callback(cpu, data, size)`` (or
        ``callback(cpu, data)``, or ``callback(data)``), with the sample's
        bytes. ``page_cnt`` 4096-byte pages (a power of two) per CPU buffer;
        samples that do not fit are dropped and counted, and
        ``lost_cb(count)`` (or ``lost_cb(cpu, count)``) hears of them."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        arity = positional_arity(callback)
        sample_cb: Callable[[int, bytes], Any]
        if arity == 1:
            sample_cb = lambda cpu, data: callback(data)  # noqa: E731
        elif arity == 2:
            sample_cb = callback
        else:
            sample_cb = lambda cpu, data: callback(cpu, data, len(data))  # noqa: E731
        lost: Callable[[int, int], Any] | None = None
        if lost_cb is not None:
            if positional_arity(lost_cb) == 2:
                lost = lost_cb
            else:
                lost = lambda cpu, count: lost_cb(count)  # noqa: E731
        self._consumer = PerfBufferConsumer(self._core, sample_cb, lost, page_cnt)

    def _opened(self) -> PerfBufferConsumer:
        if self._consumer is None:
            raise self._error("call open_perf_buffer(callback) before poll() or consume()")
        return self._consumer

    def poll(self, timeout_ms: int = -1) -> int:
        """Waits up to ``timeout_ms`` milliseconds (-1: until a sample
        arrives) with the GIL released, then hands every buffered sample to
        the callback; returns how many. Ctrl-C interrupts the wait."""
        return self._opened().poll(timeout_ms)

    def consume(self) -> int:
        """Hands every buffered sample to the callback without waiting."""
        return self._opened().consume()

    perf_buffer_poll = poll

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """Buffered samples as ``(cpu, data)``, consumed; does not wait."""
        return iter(self._reader.drain())

    def output(self, data: bytes | bytearray | memoryview, cpu: int = 0) -> None:
        """Writes a sample into ``cpu``'s buffer from user space."""
        self._reader.output(data, cpu)

    def lost(self, cpu: int) -> int:
        """Samples dropped so far from ``cpu``'s buffer because it was full."""
        return self._reader.lost(cpu)

    @property
    def pending(self) -> int:
        """Samples waiting in all buffers."""
        return self._reader.pending

    def __len__(self) -> int:
        return self.pending
