"""The JIT's two tiers: ``load(engine="jit")`` returns with baseline machine
code and Cranelift's optimized code replaces it from a background thread;
``jit_tier=`` asks for one tier only. The runs of both tiers must be
indistinguishable (test_engines*.py compare each tier with the interpreter).
"""

from __future__ import annotations

import os
import threading

import ebpfvm
import pytest
from engine_support import LOOP_SUM, asm

#: A BPF-to-BPF call: each function is compiled on its own.
WITH_CALL = asm(
    "mov %r1, 20",
    "call local double",
    "add %r0, 2",
    "exit",
    "double:",
    "mov %r0, %r1",
    "add %r0, %r1",
    "exit",
)

DATA = bytes(range(1, 101))
EXPECTED = (sum(DATA), 2 + 100 * 7 + 1 + 1)


def load(text: str, **options: object) -> ebpfvm.Executable:
    return ebpfvm.Program.from_asm(text).load(engine="jit", verify=False, **options)


def test_default_load_runs_baseline_code_then_optimized_code() -> None:
    exe = load(LOOP_SUM)
    assert exe.jit_tier in ("baseline", "optimized")
    first = exe.run_counted(DATA)
    assert exe.wait_optimized() is True
    assert exe.jit_tier == "optimized"
    assert exe.optimize_error is None
    assert first == exe.run_counted(DATA) == EXPECTED


def test_baseline_tier_only() -> None:
    exe = load(LOOP_SUM, jit_tier="baseline")
    assert exe.jit_tier == "baseline"
    assert exe.run_counted(DATA) == EXPECTED
    # No optimized code is coming.
    assert exe.wait_optimized(timeout=0.05) is False
    assert exe.wait_optimized() is False
    assert exe.jit_tier == "baseline"


def test_optimized_tier_compiles_before_load_returns() -> None:
    exe = load(LOOP_SUM, jit_tier="optimized")
    assert exe.jit_tier == "optimized"
    assert exe.wait_optimized(timeout=0) is True
    assert exe.run_counted(DATA) == EXPECTED


def test_programs_with_calls_in_both_tiers() -> None:
    for tier in ("baseline", "optimized"):
        exe = load(WITH_CALL, jit_tier=tier)
        assert exe.jit_tier == tier
        assert exe.run_counted() == (42, 7)


def test_bad_tier_and_timeout_are_value_errors() -> None:
    with pytest.raises(ValueError, match='unknown jit_tier "fast"'):
        load(LOOP_SUM, jit_tier="fast")
    exe = load(LOOP_SUM)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout"):
            exe.wait_optimized(timeout=bad)


def test_interpreter_has_no_tier() -> None:
    exe = ebpfvm.Program.from_asm(LOOP_SUM).load(engine="interpreter", verify=False)
    assert exe.jit_tier is None
    assert exe.wait_optimized(timeout=0) is False
    assert exe.optimize_error is None


def test_auto_compiles_tiered_once_hot() -> None:
    exe = ebpfvm.Program.from_asm(LOOP_SUM).load(engine="auto", verify=False)
    assert exe.jit_tier is None
    assert exe.wait_optimized(timeout=0) is False  # not compiled yet
    results = {exe.run_counted(DATA) for _ in range(100)}
    assert results == {EXPECTED}
    assert exe.compiled
    assert exe.jit_tier in ("baseline", "optimized")
    assert exe.wait_optimized() is True
    assert exe.jit_tier == "optimized"
    assert exe.run_counted(DATA) == EXPECTED


def test_runs_on_other_threads_see_the_switch_unharmed() -> None:
    """Threads run the program while the optimized code is swapped in:
    every run gives the same result, before, during and after."""
    exe = load(LOOP_SUM)
    stop = threading.Event()
    seen: list[set[tuple[int, int]]] = [set() for _ in range(2)]

    def runner(k: int) -> None:
        while not stop.is_set():
            seen[k].add(exe.run_counted(DATA))

    threads = [threading.Thread(target=runner, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        assert exe.wait_optimized(timeout=60) is True
        for _ in range(100):
            assert exe.run_counted(DATA) == EXPECTED
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen[0] | seen[1] == {EXPECTED}


def test_faults_are_the_same_in_both_tiers() -> None:
    oob = asm("ldxdw %r0, [%r1+200]", "exit")
    forever = asm("mov %r0, 0", "loop:", "add %r0, 1", "jne %r0, 0, loop", "exit")
    for tier in ("baseline", "optimized"):
        with pytest.raises(ebpfvm.ExecutionError, match="out of bounds") as info:
            load(oob, jit_tier=tier).run(bytearray(16))
        assert info.value.pc == 0
        with pytest.raises(ebpfvm.ExecutionError, match="budget of 1000 exhausted") as info:
            load(forever, jit_tier=tier, max_instructions=1000).run()
        assert info.value.pc == 2


def test_a_load_after_many_dropped_ones_is_optimized() -> None:
    """Many loads dropped at once do not keep a later one from getting its
    optimized code (that their compiles are skipped is checked in Rust,
    rust/jit/tests/tiers.rs, which counts the background compiles)."""
    program = ebpfvm.Program.from_asm(LOOP_SUM)
    for _ in range(2000):
        program.load(engine="jit", verify=False)
    exe = program.load(engine="jit", verify=False)
    assert exe.wait_optimized(timeout=60) is True


def test_a_forked_child_gets_its_own_background_compiler() -> None:
    """fork() copies the parent's queue but not its thread: a child's tiered
    loads must still be optimized (a child stuck on baseline code, or
    waiting for ever, would be the failure)."""
    load(LOOP_SUM).wait_optimized()  # the parent's thread exists before the fork
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            exe = load(LOOP_SUM)
            ok = exe.wait_optimized(timeout=60) and exe.run_counted(DATA) == EXPECTED
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
