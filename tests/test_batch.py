"""Executable.run_batch: one program over many records, in every engine."""

from __future__ import annotations

import array

import ebpfvm
import numpy as np
import pytest
from engine_support import ENGINES, U64_MASK, asm

#: row[1] = row[0] + 1; r0 = (row[0] + 1) << 8 | len
BUMP = asm(
    "ldxb %r0, [%r1]",
    "add %r0, 1",
    "stxb [%r1+1], %r0",
    "lsh %r0, 8",
    "add %r0, %r2",
    "exit",
)

#: Faults (out of bounds at pc 2) on records whose first byte is 0xff.
FAULT_ON_FF = asm(
    "ldxb %r0, [%r1]",
    "jne %r0, 255, ok",
    "ldxb %r0, [%r1+100]",
    "ok:",
    "exit",
)

#: The same, after a loop that makes every record take a while (so that a
#: thread failing on its first record does so long before its neighbour is done).
SLOW_FAULT_ON_FF = asm(
    "mov %r3, 20000",
    "spin:",
    "sub %r3, 1",
    "jne %r3, 0, spin",
    "ldxb %r0, [%r1]",
    "jne %r0, 255, ok",
    "ldxb %r0, [%r1+100]",
    "ok:",
    "exit",
)


def _load(text: str, engine: str, **kwargs: object) -> ebpfvm.Executable:
    # Checked mode: these programs read records without checking their length,
    # and faults must stop a batch at the failing record (verified batches:
    # test_api.py).
    return ebpfvm.Program.from_asm(text).load(engine=engine, verify=False, **kwargs)


def _bump_expected(first_bytes: list[int], length: int) -> list[int]:
    return [(((b + 1) & 0xFFFF_FFFF_FFFF_FFFF) << 8) + length for b in first_bytes]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def test_two_dimensional_array_in_place(engine: str) -> None:
    exe = _load(BUMP, engine)
    records = np.zeros((100, 16), dtype=np.uint8)
    records[:, 0] = np.arange(100)
    out = exe.run_batch(records)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint64 and out.shape == (100,)
    assert out.tolist() == _bump_expected(list(range(100)), 16)
    assert records[:, 1].tolist() == [(k + 1) & 0xFF for k in range(100)]
    assert not records[:, 2:].any()


def test_two_dimensional_wider_dtype(engine: str) -> None:
    # The first dimension indexes records whatever the element type.
    exe = _load(BUMP, engine)
    records = np.zeros((10, 4), dtype=np.uint32)
    records[:, 0] = np.arange(10) + 0x100
    out = exe.run_batch(records)
    assert out.tolist() == _bump_expected(list(range(10)), 16)
    assert (records[:, 0] == np.arange(10) + ((np.arange(10) + 1) << 8)).all()


def test_three_dimensional_array(engine: str) -> None:
    exe = _load(BUMP, engine)
    records = np.zeros((3, 4, 4), dtype=np.uint8)
    records[:, 0, 0] = [1, 2, 3]
    assert exe.run_batch(records).tolist() == _bump_expected([1, 2, 3], 16)
    assert records[:, 0, 1].tolist() == [2, 3, 4]


def test_every_other_row(engine: str) -> None:
    # Not C-contiguous as a whole, but each row is: the rows are the records,
    # modified in place where they are.
    exe = _load(BUMP, engine)
    backing = np.zeros((10, 16), dtype=np.uint8)
    backing[:, 0] = np.arange(10)
    out = exe.run_batch(backing[::2])
    assert out.tolist() == _bump_expected([0, 2, 4, 6, 8], 16)
    assert backing[:, 1].tolist() == [1, 0, 3, 0, 5, 0, 7, 0, 9, 0]


def test_read_only_array_is_not_modified(engine: str) -> None:
    exe = _load(BUMP, engine)
    records = np.zeros((20, 8), dtype=np.uint8)
    records[:, 0] = np.arange(20)
    records.flags.writeable = False
    snapshot = records.copy()
    out = exe.run_batch(records)
    assert out.tolist() == _bump_expected(list(range(20)), 8)
    assert (records == snapshot).all()


def test_bytes_records_are_not_modified(engine: str) -> None:
    exe = _load(BUMP, engine)
    records = [bytes([k]) + bytes(1 + k % 5) for k in range(50)]
    snapshot = list(records)
    out = exe.run_batch(records)
    assert out.tolist() == [((k + 1) << 8) + 2 + k % 5 for k in range(50)]
    assert records == snapshot


def test_bytearray_records_are_modified(engine: str) -> None:
    exe = _load(BUMP, engine)
    records = [bytearray([k, 0, 7]) for k in range(50)]
    out = exe.run_batch(records)
    assert out.tolist() == _bump_expected(list(range(50)), 3)
    assert records == [bytearray([k, (k + 1) & 0xFF, 7]) for k in range(50)]


def test_mixed_buffer_records(engine: str) -> None:
    exe = _load(BUMP, engine)
    backing = bytearray(b"\x05\x00\x00\x00")
    row_source = np.array([[8, 0], [9, 0]], dtype=np.uint8)
    records = [
        b"\x01\x00",
        bytearray(b"\x02\x00\x00"),
        memoryview(backing)[:2],
        array.array("B", [3, 0, 0, 0, 0]),
        memoryview(b"\x04\x00"),  # read-only: runs on a copy
        row_source[1],
    ]
    out = exe.run_batch(records)
    assert out.tolist() == [
        (2 << 8) + 2,
        (3 << 8) + 3,
        (6 << 8) + 2,
        (4 << 8) + 5,
        (5 << 8) + 2,
        (10 << 8) + 2,
    ]
    assert records[1] == bytearray(b"\x02\x03\x00")
    assert backing == bytearray(b"\x05\x06\x00\x00")
    assert records[3].tolist() == [3, 4, 0, 0, 0]
    assert row_source.tolist() == [[8, 0], [9, 10]]


def test_structured_record_array(engine: str) -> None:
    dtype = np.dtype([("a", "<u4"), ("b", "<u2"), ("c", "u1"), ("flag", "u1")])
    assert dtype.itemsize == 8
    records = np.zeros(300, dtype=dtype)
    records["a"] = np.arange(300) * 1000
    records["b"] = np.arange(300) % 7
    records["c"] = 3
    text = asm(
        "ldxw %r0, [%r1]",
        "ldxh %r3, [%r1+4]",
        "ldxb %r4, [%r1+6]",
        "mul %r3, %r4",
        "add %r0, %r3",
        "stb [%r1+7], 0xaa",
        "exit",
    )
    out = _load(text, engine).run_batch(records)
    assert out.tolist() == [k * 1000 + (k % 7) * 3 for k in range(300)]
    assert (records["flag"] == 0xAA).all()
    assert (records["a"] == np.arange(300) * 1000).all()


def test_empty_batch(engine: str) -> None:
    exe = _load(BUMP, engine)
    for records in ([], (), np.zeros((0, 16), dtype=np.uint8)):
        out = exe.run_batch(records)
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.uint64 and out.shape == (0,)
        assert exe.run_batch(records, threads=4).shape == (0,)


def test_empty_records(engine: str) -> None:
    exe = _load(asm("mov %r0, %r2", "add %r0, 1", "exit"), engine)
    assert exe.run_batch([b"", bytearray(), b"xyz"]).tolist() == [1, 1, 4]
    assert exe.run_batch(np.zeros((3, 0), dtype=np.uint8)).tolist() == [1, 1, 1]


def test_results_are_unsigned_64(engine: str) -> None:
    exe = _load(asm("lddw %r0, 0xfffffffffffffffe", "add %r0, %r2", "exit"), engine)
    out = exe.run_batch([b"", b"x", b"xy"])
    assert out.tolist() == [U64_MASK - 1, U64_MASK, 0]


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_threads_match_single_thread(engine: str, threads: int) -> None:
    exe = _load(BUMP, engine)
    rng = np.random.default_rng(1234)
    base = rng.integers(0, 256, size=(10_000, 24), dtype=np.uint8)
    one, many = base.copy(), base.copy()
    out_one = exe.run_batch(one, threads=1)
    out_many = exe.run_batch(many, threads=threads)
    assert (out_one == out_many).all()
    assert (one == many).all()
    assert not (one == base).all()
    assert out_one.tolist() == _bump_expected(base[:, 0].tolist(), 24)
    # The same over a list of bytes.
    as_bytes = [row.tobytes() for row in base]
    assert (exe.run_batch(as_bytes, threads=threads) == out_one).all()


def test_batch_matches_run(engine: str) -> None:
    text = asm(
        "mov %r0, 0",
        "mov %r3, %r2",
        "loop:",
        "jeq %r3, 0, out",
        "sub %r3, 1",
        "mov %r4, %r1",
        "add %r4, %r3",
        "ldxb %r5, [%r4]",
        "mul %r0, 31",
        "add %r0, %r5",
        "ja loop",
        "out:",
        "exit",
    )
    exe = _load(text, engine)
    reference = _load(text, "interpreter")
    rng = np.random.default_rng(7)
    records = [rng.bytes(int(n)) for n in rng.integers(0, 64, size=500)]
    expected = [reference.run(r) for r in records]
    assert exe.run_batch(records).tolist() == expected
    assert exe.run_batch(records, threads=2).tolist() == expected


def test_auto_compiles_during_a_batch() -> None:
    exe = _load(BUMP, "auto")
    records = np.zeros((1_000, 8), dtype=np.uint8)
    records[:, 0] = np.arange(1_000) % 256
    out = exe.run_batch(records, threads=2)
    assert exe.compiled
    assert out.tolist() == _bump_expected((np.arange(1_000) % 256).tolist(), 8)


def test_python_helper_in_a_batch(engine: str) -> None:
    calls: list[int] = []

    def helper(a: int, b: int, c: int, d: int, e: int) -> int:
        calls.append(b)
        return b * 3

    exe = _load(asm("call 1", "exit"), engine, helpers={1: helper})
    records = [bytes(k % 17) for k in range(400)]
    assert exe.run_batch(records, threads=2).tolist() == [3 * (k % 17) for k in range(400)]
    assert sorted(calls) == sorted(k % 17 for k in range(400))


def test_memory_helper_in_a_batch(engine: str) -> None:
    def helper(mem: ebpfvm.VMMemory, addr: int, size: int, c: int, d: int, e: int) -> int:
        data = mem.read(addr, size)
        mem.write(addr, data.upper())
        return len(data)

    exe = _load(asm("call 7", "exit"), engine, helpers={7: ebpfvm.Helper(helper, memory=True)})
    records = [bytearray(b"rec%d" % k) for k in range(200)]
    out = exe.run_batch(records, threads=2)
    assert out.tolist() == [len(b"rec%d" % k) for k in range(200)]
    assert records == [bytearray(b"REC%d" % k) for k in range(200)]


# ---------------------------------------------------------------------------
# Faults and exceptions
# ---------------------------------------------------------------------------


def _records_with_faults(n: int, faulty: list[int]) -> np.ndarray:
    records = np.zeros((n, 16), dtype=np.uint8)
    records[faulty, 0] = 0xFF
    return records


@pytest.mark.parametrize("k", [0, 1, 4_999, 5_000, 7_777, 9_999])
@pytest.mark.parametrize("threads", [1, 2])
def test_fault_reports_record_index(engine: str, threads: int, k: int) -> None:
    exe = _load(FAULT_ON_FF, engine)
    with pytest.raises(ebpfvm.ExecutionError) as info:
        exe.run_batch(_records_with_faults(10_000, [k]), threads=threads)
    error = info.value
    assert error.index == k
    assert (error.kind, error.pc) == ("out_of_bounds", 2)
    # The same through a list of bytes.
    records = [bytes(16)] * 10_000
    records[k] = b"\xff" + bytes(15)
    with pytest.raises(ebpfvm.ExecutionError) as info:
        exe.run_batch(records, threads=threads)
    assert info.value.index == k


def test_fault_reports_the_lowest_failing_index(engine: str) -> None:
    # Records 999 (the last of the first thread's share) and 1,000 (the first of
    # the second's) fail: the error must name the lowest failing index, although
    # the second thread fails first.
    exe = _load(SLOW_FAULT_ON_FF, engine)
    records = _records_with_faults(2_000, [999, 1_000, 1_800])
    with pytest.raises(ebpfvm.ExecutionError) as info:
        exe.run_batch(records, threads=1)
    assert info.value.index == 999
    with pytest.raises(ebpfvm.ExecutionError) as info:
        exe.run_batch(records, threads=2)
    assert (info.value.kind, info.value.pc) == ("out_of_bounds", 5)
    assert info.value.index == 999


def test_fault_then_batch_again(engine: str) -> None:
    exe = _load(FAULT_ON_FF, engine)
    with pytest.raises(ebpfvm.ExecutionError):
        exe.run_batch(_records_with_faults(100, [50]))
    assert exe.run_batch(np.zeros((100, 16), dtype=np.uint8)).tolist() == [0] * 100


class HelperBoom(Exception):
    pass


@pytest.mark.parametrize("threads", [1, 2])
def test_helper_exception_propagates(engine: str, threads: int) -> None:
    def helper(a: int, b: int, c: int, d: int, e: int) -> int:
        if b == 7:
            raise HelperBoom(f"record of length {b}")
        return b

    exe = _load(asm("call 1", "exit"), engine, helpers={1: helper})
    records = [bytes(3)] * 1_000
    records[600] = bytes(7)
    with pytest.raises(HelperBoom, match="length 7"):
        exe.run_batch(records, threads=threads)
    assert exe.run_batch([bytes(3)] * 10, threads=threads).tolist() == [3] * 10


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(b"\x00" * 16, id="bytes"),
        pytest.param(bytearray(16), id="bytearray"),
        pytest.param(12345, id="int"),
        pytest.param(np.zeros(16, dtype=np.uint8), id="1-D uint8 array"),
        pytest.param(memoryview(bytes(16)), id="1-D memoryview"),
        pytest.param(None, id="None"),
        pytest.param([1, 2, 3], id="list of ints"),
        pytest.param([b"ab", "str"], id="list with a str"),
        pytest.param(np.zeros((4, 16), dtype=np.uint8)[:, ::2], id="strided rows"),
    ],
)
def test_bad_records_are_a_type_error(engine: str, records: object) -> None:
    exe = _load(BUMP, engine)
    with pytest.raises(TypeError):
        exe.run_batch(records)
