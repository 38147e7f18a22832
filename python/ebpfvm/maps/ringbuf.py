"""Ring buffer maps (``BPF_MAP_TYPE_RINGBUF``): records from programs,
consumed in order from Python.

::

    rb = obj.maps["events"]
    rb.open_ring_buffer(lambda data: print(data))
    rb.poll(timeout_ms=100)      # waits with the GIL released, then consumes
    rb.consume()                 # consumes what is ready, without waiting
    for record in rb: ...        # ready records as bytes, without a callback
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ebpfvm._core import RingBufferConsumer
from ebpfvm.maps._base import Map, register_view
from ebpfvm.maps._callbacks import positional_arity

__all__ = ["RingBuffer"]


@register_view
class RingBuffer(Map):
    """A ring buffer of ``max_entries`` bytes (a power of two, a multiple
    of the page size)."""

    MAP_TYPES = ("ringbuf",)

    def __init__(self, max_entries: int = 64 * 4096, *, name: str = "", flags: int = 0) -> None:
        self._create(
            self.MAP_TYPES[0],
            None,
            None,
            max_entries,
            key_size=0,
            value_size=0,
            name=name,
            flags=flags,
        )

    def _attach(self, core: Any, key_codec: Any, value_codec: Any) -> None:
        super()._attach(core, None, None)
        self._reader = RingBufferConsumer(core)
        self._consumer: RingBufferConsumer | None = None

    def open_ring_buffer(self, callback: Callable[..., Any], ctx: Any = None) -> None:
        """Sets the function records go to: ``callback(data)`` with the
        record's bytes, or bcc's ``callback(ctx, data, size)`` when it takes
        three arguments. A callback returning a negative int stops the
        current ``poll``/``consume``; one raising stops it too and the
        exception propagates."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        target = callback
        if positional_arity(callback) == 3:

            def target(data: bytes) -> Any:
                return callback(ctx, data, len(data))

        self._consumer = RingBufferConsumer(self._core, target)

    def _opened(self) -> RingBufferConsumer:
        if self._consumer is None:
            raise self._error("call open_ring_buffer(callback) before poll() or consume()")
        return self._consumer

    def poll(self, timeout_ms: int = -1) -> int:
        """Waits up to ``timeout_ms`` milliseconds (-1: until a record
        arrives) with the GIL released, then hands every ready record to the
        callback; returns how many. Ctrl-C interrupts the wait."""
        return self._opened().poll(timeout_ms)

    def consume(self) -> int:
        """Hands every ready record to the callback without waiting."""
        return self._opened().consume()

    def __iter__(self) -> Iterator[bytes]:
        """Ready records as bytes, consumed as they are yielded; ends when
        none is ready (it does not wait)."""
        while True:
            batch = self._reader.drain(256)
            if not batch:
                return
            yield from batch

    def output(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        """Writes a record from user space (as ``bpf_ringbuf_output``)."""
        self._reader.output(data, flags)

    @property
    def available(self) -> int:
        """Bytes written by producers and not consumed yet."""
        return self._reader.available

    @property
    def size(self) -> int:
        return self._reader.size

    def __len__(self) -> int:
        return self.available
