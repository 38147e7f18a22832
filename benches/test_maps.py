"""Map operations from Python, next to a Python ``dict`` doing the same work.

Each benchmark times one operation per step (``m[k]``, ``m[k] = v``, ...)
on a map of 1024 ``u32 -> u64`` entries, with the key cycling through them;
the ``dict`` side runs the same loop on a dict of ints. Batch benchmarks
time one call handling 1024 keys and report the time per key. Figures are
in ``extra_info`` (``ns_per_op``) and in the pytest-benchmark table.

Program-side map operations (``bpf_map_lookup_elem`` and friends from
eBPF code, timed inside Rust with ``Executable.timeit``) are in the section
"Program-side map operations" at the end of this file.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle, islice, repeat
from typing import Any

import ebpfvm
import pytest
from ebpfvm import maps

from benches import _harness as h

N = 1024
KEYS = list(range(N))


def _hash_map() -> maps.HashMap:
    m = maps.HashMap("u32", "u64", N, name="bench")
    m.update_batch({k: k * 3 for k in KEYS})
    return m


def _dict() -> dict[int, int]:
    return {k: k * 3 for k in KEYS}


def _step_loop(op: Callable[[int], object]) -> Callable[[int], None]:
    """``loop(k)`` runs ``op`` k times over cycling keys."""

    def loop(k: int) -> None:
        f = op
        for key in islice(cycle(KEYS), k):
            f(key)

    return loop


def _operations(target: Any) -> dict[str, Callable[[int], object]]:
    get = target.__getitem__
    put = target.__setitem__
    return {
        "lookup": get,
        "update": lambda k: put(k, k),
        "get_missing": lambda k: target.get(k + N),
        "contains": target.__contains__,
        "increment": lambda k: put(k, get(k) + 1),
    }


#: (op, side) pairs: every index below max_entries exists in an array, so
#: it has no missing key to look up.
SINGLE_CASES = [
    (op, side)
    for op in ("lookup", "update", "get_missing", "contains", "increment")
    for side in ("dict", "hash", "array")
    if (op, side) != ("get_missing", "array")
]


@pytest.mark.parametrize(("op", "side"), SINGLE_CASES)
def test_single_operation(
    benchmark: Any, op: str, side: str, timing_settings: h.TimingSettings
) -> None:
    if side == "dict":
        target: Any = _dict()
    elif side == "hash":
        target = _hash_map()
    else:
        target = maps.ArrayMap("u32", "u64", N, name="bench_array")
        target.update_batch({k: k * 3 for k in KEYS})
    fn = _operations(target)[op]
    expected = {"lookup": 21, "update": None, "get_missing": None, "contains": True}
    assert fn(7) == expected.get(op)
    assert target[7] == {"update": 7, "increment": 22}.get(op, 21)
    timing = h.measure(benchmark, _step_loop(fn), timing_settings)
    if timing is not None:
        benchmark.extra_info["ns_per_op"] = round(timing.median_ns, 1)


@pytest.mark.parametrize("side", ["dict", "hash"])
@pytest.mark.parametrize("op", ["lookup_batch", "update_batch", "items"])
def test_batch_operation(
    benchmark: Any, op: str, side: str, timing_settings: h.TimingSettings
) -> None:
    """One call over 1024 keys; the time is per key."""
    values = {k: k + 1 for k in KEYS}
    if side == "dict":
        d = _dict()
        fns: dict[str, Callable[[], object]] = {
            "lookup_batch": lambda: [d.get(k) for k in KEYS],
            "update_batch": lambda: d.update(values),
            "items": lambda: list(d.items()),
        }
    else:
        m = _hash_map()
        fns = {
            "lookup_batch": lambda: m.lookup_batch(KEYS),
            "update_batch": lambda: m.update_batch(values),
            "items": m.items,
        }
    fn = fns[op]
    out = fn()
    if op == "lookup_batch":
        assert out == [k * 3 for k in KEYS]
    elif op == "items":
        assert len(out) == N  # type: ignore[arg-type]

    def unit(k: int) -> None:
        f = fn
        for _ in repeat(None, k):
            f()

    timing = h.measure(benchmark, unit, timing_settings, scale=N)
    if timing is not None:
        benchmark.extra_info["ns_per_key"] = round(timing.median_ns, 1)


def test_numpy_sum_of_array_map(benchmark: Any, timing_settings: h.TimingSettings) -> None:
    """Summing an array map through its zero-copy NumPy view (per element)."""
    a = maps.ArrayMap("u32", "u64", N)
    view = a.as_numpy()
    view[:] = 2
    assert int(view.sum()) == 2 * N

    def unit(k: int) -> None:
        s = view.sum
        for _ in repeat(None, k):
            s()

    timing = h.measure(benchmark, unit, timing_settings, scale=N)
    if timing is not None:
        benchmark.extra_info["ns_per_element"] = round(timing.median_ns, 3)


# --- Program-side map operations ------------------------------------------------
# Map helpers called from eBPF code, timed inside Rust (Executable.timeit), next
# to an empty program: the difference is the cost of the map operations. The
# program is verified, as load() verifies by default (the interpreter keeps its
# bounds checks either way). The integrator extends this section (JIT, more map
# types, object programs).

LOOKUP_UPDATE = """
stw [%r10-4], 7
lddw %r1, map_idx 0
mov %r2, %r10
add %r2, -4
call 1
jeq %r0, 0, +3
ldxdw %r1, [%r0]
add %r1, 1
stxdw [%r0], %r1
mov %r0, 0
exit
"""


@pytest.mark.parametrize("map_type", ["hash", "array"])
def test_program_lookup_and_increment(
    benchmark: Any, map_type: str, timing_settings: h.TimingSettings
) -> None:
    m: Any = maps.HashMap("u32", "u64", N) if map_type == "hash" else maps.ArrayMap("u32", "u64", N)
    m[7] = 0
    exe = ebpfvm.Program.from_asm(LOOKUP_UPDATE, maps=[m]).load(engine="interpreter", verify=True)
    packet = bytes(8)
    assert exe.run(packet) == 0 and m[7] == 1
    timing = h.measure_reported(benchmark, lambda k: exe.timeit(packet, k), timing_settings)
    assert m[7] > 1
    if timing is not None:
        benchmark.extra_info["ns_per_run"] = round(timing.median_ns, 1)
