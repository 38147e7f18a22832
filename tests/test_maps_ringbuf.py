"""Ring buffer and perf event array consumers."""

from __future__ import annotations

import threading
import time

import ebpfvm
import pytest
from ebpfvm import maps

# A program writing the u64 at offset 0 of its input into ring buffer map 0.
RINGBUF_OUTPUT = """
ldxdw %r6, [%r1]
stxdw [%r10-8], %r6
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -8
mov %r3, 8
mov %r4, 0
call 130
exit
"""


def test_records_from_python_in_order() -> None:
    rb = maps.RingBuffer(4096, name="rb")
    assert rb.map_type == "ringbuf" and rb.size == 4096
    for i in range(5):
        rb.output(bytes([i]) * (i + 1))
    assert rb.available > 0
    assert list(rb) == [bytes([i]) * (i + 1) for i in range(5)]
    assert rb.available == 0 and list(rb) == []


def test_callbacks_plain_and_bcc_style() -> None:
    rb = maps.RingBuffer(4096)
    got: list[bytes] = []
    rb.open_ring_buffer(got.append)
    rb.output(b"a")
    rb.output(b"bc")
    assert rb.consume() == 2 and got == [b"a", b"bc"]
    bcc: list[tuple[object, bytes, int]] = []
    rb.open_ring_buffer(lambda ctx, data, size: bcc.append((ctx, data, size)), ctx="c")
    rb.output(b"xyz")
    assert rb.poll(0) == 1 and bcc == [("c", b"xyz", 3)]


def test_negative_return_stops_and_exceptions_propagate() -> None:
    rb = maps.RingBuffer(4096)
    seen: list[bytes] = []

    def stop_after_first(data: bytes) -> int:
        seen.append(data)
        return -1

    rb.open_ring_buffer(stop_after_first)
    for d in (b"1", b"2", b"3"):
        rb.output(d)
    assert rb.consume() == 1 and seen == [b"1"]

    def boom(data: bytes) -> None:
        raise ValueError(data)

    rb.open_ring_buffer(boom)
    with pytest.raises(ValueError, match="2"):
        rb.consume()
    assert list(rb) == [b"3"]  # the failing record was consumed, the rest kept


def test_poll_times_out_and_needs_a_callback() -> None:
    rb = maps.RingBuffer(4096, name="lonely")
    with pytest.raises(ebpfvm.MapError, match="open_ring_buffer"):
        rb.poll(0)
    rb.open_ring_buffer(lambda d: None)
    start = time.monotonic()
    assert rb.poll(timeout_ms=100) == 0
    assert 0.09 <= time.monotonic() - start < 5


def test_poll_releases_the_gil_while_waiting() -> None:
    rb = maps.RingBuffer(4096)
    got: list[bytes] = []
    rb.open_ring_buffer(got.append)

    def produce() -> None:
        time.sleep(0.05)
        rb.output(b"late")

    t = threading.Thread(target=produce)
    t.start()
    start = time.monotonic()
    n = rb.poll(timeout_ms=10_000)  # a Python thread must run to produce
    t.join()
    assert n == 1 and got == [b"late"]
    assert time.monotonic() - start < 5


def test_full_ring_refuses_records() -> None:
    rb = maps.RingBuffer(4096, name="full")
    with pytest.raises(ebpfvm.MapError) as e:
        for _ in range(1000):
            rb.output(bytes(100))
    assert e.value.map_name == "full"
    assert len(list(rb)) == 4096 // 112  # 100 bytes + 8-byte header, padded to 8


def test_program_records_reach_python() -> None:
    rb = maps.RingBuffer(4096)
    # Verified for the 8-byte inputs it reads without checking their length.
    exe = ebpfvm.Program.from_asm(RINGBUF_OUTPUT, maps=[rb]).load(input_size=8)
    for i in range(3):
        assert exe.run((1000 + i).to_bytes(8, "little")) == 0
    assert [int.from_bytes(r, "little") for r in rb] == [1000, 1001, 1002]


def test_ring_buffer_sizes_are_checked() -> None:
    with pytest.raises(ebpfvm.MapError, match="power of two"):
        maps.RingBuffer(5000)


def test_perf_buffer_callbacks_bcc_style() -> None:
    pe = maps.PerfEventArray(name="perf")
    assert pe.map_type == "perf_event_array"
    got: list[tuple[int, bytes, int]] = []
    pe.open_perf_buffer(lambda cpu, data, size: got.append((cpu, data, size)))
    pe.output(b"one", cpu=0)
    pe.output(b"three", cpu=1 % max(pe.num_cpus, 1))
    assert pe.pending == 2
    assert pe.poll(100) == 2
    assert sorted(got) == sorted([(0, b"one", 3), (1 % max(pe.num_cpus, 1), b"three", 5)])
    assert pe.poll(0) == 0


def test_perf_buffer_lost_samples_are_reported() -> None:
    pe = maps.PerfEventArray(2, name="lossy")
    lost: list[int] = []
    pe.open_perf_buffer(lambda cpu, data, size: None, page_cnt=1, lost_cb=lost.append)
    with pytest.raises(ebpfvm.MapError):
        for _ in range(100):
            pe.output(bytes(1000), cpu=1)
    assert pe.lost(1) == 1 and pe.lost(0) == 0
    assert pe.consume() > 0
    assert lost == [1]
    pe.consume()
    assert lost == [1]  # reported once


def test_perf_iteration_and_poll_wakeup() -> None:
    pe = maps.PerfEventArray(2)
    pe.output(b"x", cpu=1)
    assert list(pe) == [(1, b"x")]
    seen: list[bytes] = []
    pe.open_perf_buffer(lambda data: seen.append(data))
    t = threading.Timer(0.05, lambda: pe.output(b"later", cpu=0))
    t.start()
    assert pe.poll(10_000) == 1
    t.join()
    assert seen == [b"later"]
    with pytest.raises(ebpfvm.MapError, match="power-of-two"):
        pe.open_perf_buffer(lambda data: None, page_cnt=3)
