"""The JIT against the interpreter and native C, on the programs of ../shared/bench.

Two code shapes are timed: checked (``verify=False``: bounds checks and an
instruction budget) for every program, and verified (``verify=True``: no
runtime checks) for the programs the verifier proves for their vectors'
input sizes. The JIT/native goal is judged on the verified shape where it
exists and on the checked one elsewhere; a checked-only line shows what the
checks cost.

* ``test_in_rust``: in-Rust time per run (``exe.timeit``) of every program,
  v3 and v1 bytecode, on the interpreter and on the JIT; the JIT is first
  checked against the README's results and against the interpreter (r0,
  executed instructions, memory), and timed in alternation with the native
  C loop. This gives JIT/native, interpreter/JIT and the helper-call cost
  (helpers.c, cffi helpers).
* ``test_jit_call``: ``exe.run()`` from Python on the JIT next to
  ``ebpfvm._core._noop`` with the same argument.
* ``test_compile``: JIT compile time of a generated 1,000-instruction program
  and of every benchmark program.
* ``test_batch``: ``run_batch`` on parse.c over N packets, in alternation
  with the in-Rust time per packet.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any

import ebpfvm
import numpy as np
import pytest

from benches import _harness as h

#: The 74-byte TCP SYN of parse.bin.
PACKET = h.read_input("parse")
PARSE_RESULT = h.expected_result("parse")

#: (kind, side) cases of test_jit_call: the JIT on every kind, and the _noop
#: baseline only for kinds test_call_overhead.py does not already time.
JIT_CALL_CASES = [(kind, "jit") for kind in h.JIT_CALL_KINDS] + [
    (kind, "noop") for kind in h.JIT_CALL_KINDS if kind not in h.CALL_KINDS
]


@pytest.mark.parametrize("case", h.rust_cases() + h.verified_cases(), ids=lambda case: case.id)
def test_in_rust(
    benchmark: Any,
    case: h.RustCase,
    native: h.NativeLib,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    """``exe.timeit(input, k)``: k runs inside Rust; the time shown is per run.

    The JIT's rounds alternate with rounds of the native C loop
    (``loop_<name>``) on the same input, its baseline.
    """
    exe = h.load_case(case.base, native, engine=case.engine)
    executed = h.check_rust_case(exe, case, native)
    mem = h.read_input(case.program)
    benchmark.group = case.program

    def in_rust(k: int) -> float:
        return exe.timeit(mem, k)

    native_timing: h.Timing | None = None
    if case.engine in ("jit", h.VERIFIED):
        buf = bytearray(mem)
        ptr, size, loop = native.pointer(buf), len(buf), native.loop(case.program)
        assert loop(ptr, size, 1) == h.expected_result(case.program)
        paired = h.measure_paired(
            benchmark, in_rust, h.wall_clock(lambda k: loop(ptr, size, k)), timing_settings
        )
        if paired is None:
            return
        timing, native_timing = paired
    else:
        measured = h.measure_reported(benchmark, in_rust, timing_settings)
        if measured is None:
            return
        timing = measured
    results.in_rust[case] = h.RustResult(case, executed, timing, native_timing)
    info: dict[str, object] = {
        "what": f"exe.timeit on the {case.engine} (time inside Rust)",
        "executed_insns": executed,
        "ns_per_run": timing.median_ns,
        "ns_per_insn": timing.median_ns / executed,
    }
    if native_timing is not None:
        info["native_ns_per_run"] = native_timing.median_ns
        info["jit_over_native"] = timing.median_ns / native_timing.median_ns
        info.update(compile_time_s=exe.compile_time, code_size=exe.code_size)
        interp = results.in_rust.get(dataclasses.replace(case, engine="interpreter"))
        if interp is not None:
            info["interp_over_jit"] = interp.timing.median_ns / timing.median_ns
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("case", h.unverified_cases(), ids=lambda case: case.id)
def test_unverifiable(case: h.RustCase, results: h.Results) -> None:
    """Programs the verifier cannot prove (e.g. loops bounded only by the
    input length) are refused by load(verify=True); the summary says why."""
    with pytest.raises(ebpfvm.VerifierError) as info:
        h.load_case(case.base, None, engine=case.engine)
    results.unverified[case] = f"insn {info.value.pc}: {info.value.message}"


# --------------------------------------------------------------------------
# exe.run() from Python


def _call_program(kind: str) -> tuple[bytes, tuple[bytes | bytearray, ...], int]:
    """(bytecode, arguments, expected r0) of a JIT_CALL_KINDS kind."""
    if kind == "empty":
        return h.EMPTY_PROGRAM, (), 0
    if kind == "noop64":
        return h.read_bytecode("noop", "v3"), (bytearray(h.read_input("noop")),), 64
    if kind == "bytes":
        return h.read_bytecode("parse", "v3"), (bytes(PACKET),), PARSE_RESULT
    if kind == "bytearray":
        return h.read_bytecode("parse", "v3"), (bytearray(PACKET),), PARSE_RESULT
    raise ValueError(kind)


# Baselines come from test_call_overhead.py (which runs first) or, for kinds
# it lacks, from the "noop" cases here, listed after the JIT ones; a missing
# baseline only leaves the overhead columns out.
@pytest.mark.parametrize(("kind", "side"), sorted(JIT_CALL_CASES, key=lambda c: c[1] != "noop"))
def test_jit_call(
    benchmark: Any,
    kind: str,
    side: str,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    code, args, expected = _call_program(kind)
    fn: Callable[..., object]
    if side == "noop":
        fn = ebpfvm._core._noop
        assert fn(*args) is None
    else:
        exe = ebpfvm.Program(code).load(engine="jit", verify=False, jit_tier="optimized")
        h.check_compiled(exe, f"{kind} program")
        fn = exe.run
        assert fn(*args) == expected
    assert len(PACKET) == 74
    goal = {
        "empty": h.GOAL_EMPTY_RUN_NS,
        "bytes": h.GOAL_PARSE_RUN_NS,
        "bytearray": h.GOAL_PARSE_RUN_NS,
    }.get(kind)
    h.time_call(
        benchmark, kind, side, fn, args, h.JIT_CALL_KINDS[kind], goal, results, timing_settings
    )


# --------------------------------------------------------------------------
# Compile time


def _compile_targets() -> list[str]:
    """The generated program, then every benchmark program (v3 and v1)."""
    return [h.GENERATED_KEY] + [case.id for case in h.interp_cases() if case.helpers != "python"]


def _compile_subject(
    key: str, native: h.NativeLib
) -> tuple[ebpfvm.Program, dict[int, Any] | None, Callable[[ebpfvm.Executable], None]]:
    """(program, helpers, check of a compiled executable) for a compile target."""
    if key == h.GENERATED_KEY:
        program = ebpfvm.Program.from_asm(h.generated_program())
        assert len(program) == h.GENERATED_SLOTS
        reference = program.load(engine="interpreter", verify=False)
        inputs = {"bytes 0..63": h.generated_input()}

        def check_generated(exe: ebpfvm.Executable) -> None:
            h.check_same_as_interpreter(exe, reference, inputs, "generated program")
            # The main path (not the too-short exit) ran, loops included.
            assert exe.run_counted(h.generated_input())[1] > h.GENERATED_SLOTS

        return program, None, check_generated
    (case,) = [case for case in h.interp_cases() if case.id == key]

    def check_benchmark(exe: ebpfvm.Executable) -> None:
        h.check_executable(exe, case)

    program = ebpfvm.Program(h.read_bytecode(case.program, case.isa))
    return program, h.case_helpers(case, native), check_benchmark


@pytest.mark.parametrize("tier", h.JIT_TIERS)
@pytest.mark.parametrize("key", _compile_targets())
def test_compile(
    benchmark: Any,
    key: str,
    tier: str,
    native: h.NativeLib,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    """``program.load(engine="jit", verify=False, jit_tier=tier)``: the
    checked-mode compile (no verifier run) by one tier; the time shown is
    ``exe.compile_time``. A default (tiered) load returns once the baseline
    tier's code is in place, and Cranelift's replaces it in the background."""
    program, helpers, check = _compile_subject(key, native)
    exe = program.load(engine="jit", verify=False, helpers=helpers, jit_tier=tier)
    h.check_compiled(exe, key)
    assert exe.jit_tier == tier, f"{key}: {tier} load ran {exe.jit_tier} code"
    check(exe)
    code_size = exe.code_size
    assert code_size is not None
    del exe
    walls: list[int] = []

    def unit(k: int) -> float:
        compile_s = 0.0
        for _ in repeat(None, k):
            start = time.perf_counter_ns()
            loaded = program.load(engine="jit", verify=False, helpers=helpers, jit_tier=tier)
            walls.append(time.perf_counter_ns() - start)
            compile_s += loaded.compile_time or 0.0
        return compile_s

    settings = timing_settings
    if key != h.GENERATED_KEY:  # only the generated program has a goal
        settings = dataclasses.replace(settings, max_time_s=settings.max_time_s / 4)
    benchmark.group = f"jit-compile-{tier}"
    timing = h.measure_reported(benchmark, unit, settings)
    if timing is None:
        return
    load_ns = float(np.median(walls))
    results.compile[tier][key] = h.CompileResult(len(program), timing, load_ns, code_size)
    info: dict[str, object] = {
        "what": f"exe.compile_time of load(engine='jit', jit_tier={tier!r})",
        "slots": len(program),
        "compile_ms": timing.median_ns / 1e6,
        "load_ms": load_ns / 1e6,
        "code_size": code_size,
    }
    if key == h.GENERATED_KEY and tier == h.GOAL_COMPILE_TIER:
        info.update(goal_ms=h.GOAL_COMPILE_MS, goal_met=timing.median_ns / 1e6 < h.GOAL_COMPILE_MS)
    benchmark.extra_info.update(info)


# --------------------------------------------------------------------------
# run_batch


@pytest.fixture(scope="module")
def parse_jit() -> ebpfvm.Executable:
    """parse.c (v3) on the JIT, its batch results checked on mixed packets."""
    exe = ebpfvm.Program(h.read_bytecode("parse", "v3")).load(
        engine="jit", verify=False, jit_tier="optimized"
    )
    h.check_compiled(exe, "parse v3")
    vectors = list(h.vectors_of("parse")) * 5
    records = [bytes(h.read_input(vector)) for vector, _ in vectors]
    expected = np.array([value for _, value in vectors], dtype=np.uint64)
    for threads in (None, h.BATCH_THREADS):
        got = exe.run_batch(records, threads=threads)
        assert got.dtype == np.uint64
        assert got.tolist() == expected.tolist(), f"run_batch(threads={threads})"
    return exe


@pytest.mark.parametrize("case", h.batch_cases(), ids=lambda case: case.id)
def test_batch(
    benchmark: Any,
    case: h.BatchCase,
    parse_jit: ebpfvm.Executable,
    results: h.Results,
    timing_settings: h.TimingSettings,
) -> None:
    """One ``run_batch`` call over N packets; the time shown is per packet.

    Its rounds alternate with rounds of ``exe.timeit(packet, N)``, the
    in-Rust time per packet that it is compared with.
    """
    size = case.size
    records = h.batch_records(PACKET, size)
    threads = case.threads if case.threads > 1 else None  # None: the default, one
    got = parse_jit.run_batch(records, threads=threads)
    assert got.dtype == np.uint64 and got.shape == (size,)
    assert bool((got == PARSE_RESULT).all())
    assert bool((records == np.frombuffer(PACKET, dtype=np.uint8)).all())
    assert parse_jit.timeit(PACKET, size) > 0
    run_batch, timeit = parse_jit.run_batch, parse_jit.timeit

    def batches(k: int) -> None:
        for _ in repeat(None, k):
            run_batch(records, threads=threads)

    def in_rust(k: int) -> float:
        return sum(timeit(PACKET, size) for _ in repeat(None, k))

    benchmark.group = "run_batch-parse"
    paired = h.measure_paired(
        benchmark,
        h.wall_clock(batches),
        in_rust,
        timing_settings,
        scale=size,
        baseline_scale=size,
    )
    if paired is None:
        return
    results.batch[case] = paired
    timing, rust = paired
    ratio = timing.median_ns / rust.median_ns
    benchmark.extra_info.update(
        what="run_batch(2-D uint8 array) / N",
        packets_per_call=size,
        threads=case.threads,
        ns_per_packet=timing.median_ns,
        in_rust_ns_per_packet=rust.median_ns,
        over_in_rust=ratio,
        goal_ratio=h.GOAL_BATCH_RATIO,
        goal_met=ratio <= h.GOAL_BATCH_RATIO,
    )
