"""Interpreter vs. native C on the seven programs of ../shared/bench.

For every program: the native build called once through cffi, the native
build in a C loop (the per-run time without any Python), and the ebpfvm
interpreter on v3 and v1 bytecode (helpers.c with Python helpers and with
native cffi helpers). Results are checked before anything is timed.
"""

from __future__ import annotations

from typing import Any

import pytest

from benches import _harness as h


@pytest.mark.parametrize("program", h.PROGRAMS)
def test_native_call(
    benchmark: Any,
    program: str,
    native: h.NativeLib,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    """One ``lib.bench_<name>(ptr, len)`` call from Python (cffi API mode)."""
    buf = bytearray(h.read_input(program))
    ptr = native.pointer(buf)
    fn = native.program(program)
    assert fn(ptr, len(buf)) == h.expected_result(program)
    benchmark.group = program
    timing = h.measure(benchmark, h.call_loop(fn, ptr, len(buf)), timing_settings)
    if timing is None:
        return
    results.native_call[program] = timing
    benchmark.extra_info.update(ns_per_run=timing.median_ns, what="one cffi call from Python")


@pytest.mark.parametrize("program", h.PROGRAMS)
def test_native_loop(
    benchmark: Any,
    program: str,
    native: h.NativeLib,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    """``loop_<name>(ptr, len, n)``: n runs in C; the time shown is per run."""
    buf = bytearray(h.read_input(program))
    ptr = native.pointer(buf)
    loop = native.loop(program)
    size = len(buf)
    assert loop(ptr, size, 1) == h.expected_result(program)
    benchmark.group = program

    def unit(n: int) -> int:
        return loop(ptr, size, n)

    timing = h.measure(benchmark, unit, timing_settings)
    if timing is None:
        return
    results.native_loop[program] = timing
    benchmark.extra_info.update(
        ns_per_run=timing.median_ns, runs_per_c_call=timing.runs_per_round, what="C loop"
    )


@pytest.mark.parametrize("case", h.interp_cases(), ids=lambda case: case.id)
def test_interpreter(
    benchmark: Any,
    case: h.InterpCase,
    native: h.NativeLib,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    """``exe.run(bytearray)`` on the interpreter."""
    exe = h.load_case(case, native)
    executed = h.check_executable(exe, case)
    mem = bytearray(h.read_input(case.program))
    assert exe.run(mem) == h.expected_result(case.program)
    benchmark.group = case.program
    timing = h.measure(benchmark, h.call_loop(exe.run, mem), timing_settings)
    if timing is None:
        return
    result = h.InterpResult(case, executed, timing)
    results.interp[case] = result
    info: dict[str, object] = {
        "executed_insns": executed,
        "ns_per_run": timing.median_ns,
        "ns_per_insn": result.ns_per_insn,
        "ns_per_insn_basis": (
            "full exe.run() time incl. the Python call; call overhead negligible"
            if result.long
            else "full exe.run() time incl. the Python call, which dominates here"
        ),
    }
    native_timing = results.native_loop.get(case.program)
    if native_timing is not None:
        info["native_ns_per_run"] = native_timing.median_ns
        info["interp_over_native"] = timing.median_ns / native_timing.median_ns
    benchmark.extra_info.update(info)
