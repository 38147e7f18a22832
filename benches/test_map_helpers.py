"""Map operations from a program (``bpf_map_lookup_elem``/``update_elem``)
next to the same work in Python: on a ``dict`` and through ebpfvm's map
views.

Each eBPF program performs ``OPS`` operations on keys ``i & 255`` in a
counted loop, is verified (the default of ``load``: the JIT compiles it
without run-time checks) and is run with ``Executable.timeit`` (inside Rust, so the
Python call around a run is not counted); ns per operation is the run time
divided by ``OPS``. The Python sides do the same ``OPS`` operations in a
Python loop. Results are checked before anything is timed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ebpfvm
import ebpfvm.maps
import pytest

OPS = 1000
KEYS = 256

LOOKUP = f"""
    mov %r6, 0
    mov %r7, 0
loop:
    mov %r1, %r6
    and %r1, {KEYS - 1}
    stxw [%r10-4], %r1
    lddw %r1, map_idx 0
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, next
    ldxdw %r1, [%r0]
    add %r7, %r1
next:
    add %r6, 1
    jlt %r6, {OPS}, loop
    mov %r0, %r7
    exit
"""

UPDATE = f"""
    mov %r6, 0
    mov %r7, 0
loop:
    mov %r1, %r6
    and %r1, {KEYS - 1}
    stxw [%r10-4], %r1
    stxdw [%r10-16], %r6
    lddw %r1, map_idx 0
    mov %r2, %r10
    add %r2, -4
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 2
    or %r7, %r0
    add %r6, 1
    jlt %r6, {OPS}, loop
    mov %r0, %r7
    exit
"""

MAP_KINDS = ("array", "hash")
ENGINES = ("interpreter", "jit")


def make_map(kind: str) -> ebpfvm.maps.Map:
    if kind == "array":
        m: Any = ebpfvm.maps.ArrayMap("u32", "u64", KEYS)
    else:
        m = ebpfvm.maps.HashMap("u32", "u64", 4 * KEYS)
    for k in range(KEYS):
        m[k] = 3 * k
    return m


def expected_lookup_sum() -> int:
    return sum(3 * (i & (KEYS - 1)) for i in range(OPS))


def per_op(benchmark: Any, run: Callable[[], object]) -> None:
    benchmark.extra_info["ops_per_call"] = OPS
    benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["ns_per_op"] = stats.stats.median * 1e9 / OPS


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", MAP_KINDS)
def test_program_lookup(benchmark: Any, kind: str, engine: str) -> None:
    m = make_map(kind)
    exe = ebpfvm.Program.from_asm(LOOKUP, maps=[m]).load(
        engine=engine, verify=True, jit_tier="optimized"
    )
    assert exe.run() == expected_lookup_sum()
    benchmark.group = f"map-lookup-{kind}"
    per_op(benchmark, lambda: exe.timeit(None, 1))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", MAP_KINDS)
def test_program_update(benchmark: Any, kind: str, engine: str) -> None:
    m = make_map(kind)
    exe = ebpfvm.Program.from_asm(UPDATE, maps=[m]).load(
        engine=engine, verify=True, jit_tier="optimized"
    )
    assert exe.run() == 0
    # The last write of each key wins: the largest i with i & 255 == k.
    assert {k: m[k] for k in range(KEYS)} == {
        k: max(i for i in range(OPS) if i & (KEYS - 1) == k) for k in range(KEYS)
    }
    benchmark.group = f"map-update-{kind}"
    per_op(benchmark, lambda: exe.timeit(None, 1))


def test_python_dict_lookup(benchmark: Any) -> None:
    d = {k: 3 * k for k in range(KEYS)}

    def work() -> int:
        s = 0
        for i in range(OPS):
            s += d[i & (KEYS - 1)]
        return s

    assert work() == expected_lookup_sum()
    benchmark.group = "map-lookup-python"
    per_op(benchmark, work)


def test_python_dict_update(benchmark: Any) -> None:
    d: dict[int, int] = {}

    def work() -> None:
        for i in range(OPS):
            d[i & (KEYS - 1)] = i

    work()
    assert d[KEYS - 1] == max(i for i in range(OPS) if i & (KEYS - 1) == KEYS - 1)
    benchmark.group = "map-update-python"
    per_op(benchmark, work)


@pytest.mark.parametrize("kind", MAP_KINDS)
def test_python_view_lookup(benchmark: Any, kind: str) -> None:
    m = make_map(kind)

    def work() -> int:
        s = 0
        for i in range(OPS):
            s += m[i & (KEYS - 1)]
        return s

    assert work() == expected_lookup_sum()
    benchmark.group = "map-lookup-python"
    per_op(benchmark, work)


@pytest.mark.parametrize("kind", MAP_KINDS)
def test_python_view_update(benchmark: Any, kind: str) -> None:
    m = make_map(kind)

    def work() -> None:
        for i in range(OPS):
            m[i & (KEYS - 1)] = i

    work()
    assert m[KEYS - 1] == max(i for i in range(OPS) if i & (KEYS - 1) == KEYS - 1)
    benchmark.group = "map-update-python"
    per_op(benchmark, work)
