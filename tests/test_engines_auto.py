"""engine="auto" (interpret, compile once hot), executable attributes, and memory:
compiled code is freed with its executable.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import ebpfvm
import pytest
from engine_support import LOOP_SUM, asm


def test_engine_attributes() -> None:
    program = ebpfvm.Program.from_asm(LOOP_SUM)
    interp = program.load(engine="interpreter", verify=False)
    assert interp.engine == "interpreter"
    assert not interp.compiled
    assert interp.code_size is None and interp.compile_time is None
    assert interp.compile_error is None
    jit = program.load(engine="jit", verify=False)
    assert jit.engine == "jit"
    assert jit.compiled
    assert isinstance(jit.code_size, int) and jit.code_size > 0
    assert isinstance(jit.compile_time, float) and 0 < jit.compile_time < 1
    assert jit.compile_error is None
    auto = program.load(engine="auto", verify=False)
    assert auto.engine == "auto"
    assert not auto.compiled and auto.code_size is None and auto.compile_error is None


def test_auto_compiles_when_hot() -> None:
    exe = ebpfvm.Program.from_asm(LOOP_SUM).load(engine="auto", verify=False)
    reference = ebpfvm.Program.from_asm(LOOP_SUM).load(engine="interpreter", verify=False)
    data = bytearray(range(1, 41))
    expected = reference.run_counted(data)
    assert expected == (sum(range(1, 41)), 2 + 40 * 7 + 1 + 1)
    assert exe.run_counted(data) == expected
    assert not exe.compiled
    results = [exe.run_counted(data) for _ in range(99)]
    assert exe.compiled
    assert exe.compile_error is None
    assert isinstance(exe.code_size, int) and exe.code_size > 0
    assert exe.compile_time is not None and exe.compile_time > 0
    assert set(results) == {expected}
    # Compiled from now on, with identical results.
    assert exe.run_counted(data) == expected
    assert exe.run(bytearray(b"\x05\x06")) == 11


def test_auto_compiles_after_many_interpreted_instructions() -> None:
    # A single run of over a million instructions makes the program hot: the
    # next run compiles it.
    text = asm(
        "mov %r0, 0",
        "lddw %r3, 400000",
        "loop:",
        "add %r0, 3",
        "sub %r3, 1",
        "jne %r3, 0, loop",
        "exit",
    )
    exe = ebpfvm.Program.from_asm(text).load(engine="auto", verify=False)
    first = exe.run_counted(None)
    assert first == (1_200_000, 2 + 1_200_000 + 1)
    assert not exe.compiled
    assert exe.run_counted(None) == first
    assert exe.compiled


def test_auto_faults_are_the_same_before_and_after_compiling() -> None:
    exe = ebpfvm.Program.from_asm(asm("mov %r0, 0", "ldxw %r0, [%r1+4]", "exit")).load(
        engine="auto", verify=False
    )
    seen = set()
    for _ in range(100):
        with pytest.raises(ebpfvm.ExecutionError) as info:
            exe.run(bytearray(6))
        seen.add((info.value.kind, info.value.pc))
        assert exe.run(bytearray(8)) == 0
    assert exe.compiled
    assert seen == {("out_of_bounds", 1)}


# ---------------------------------------------------------------------------
# Memory: loading and dropping JIT programs does not leak
# ---------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _fifty_instruction_program() -> ebpfvm.Program:
    lines = ["mov %r0, 0", "mov %r3, 0", "loop:"]
    for k in range(22):
        lines += [f"add %r0, {k + 1}", "xor %r0, %r3"]
    lines += ["add %r3, 1", "jlt %r3, 10, loop", "mov %r0, %r0", "exit"]
    program = ebpfvm.Program.from_asm(asm(*lines))
    assert len(program) == 50
    return program


def test_loading_and_dropping_jit_programs_does_not_grow_memory() -> None:
    program = _fifty_instruction_program()
    expected = program.load(engine="interpreter").run(None)
    start = time.monotonic()

    def cycle(count: int) -> None:
        for _ in range(count):
            exe = program.load(engine="jit")
            assert exe.run(None) == expected
            del exe

    cycle(1_000)  # warm-up: allocator pools, caches
    gc.collect()
    before = _rss_bytes()
    cycle(9_000)
    gc.collect()
    growth = _rss_bytes() - before
    assert growth <= 20 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB over 9,000 loads"
    assert time.monotonic() - start < 30


def test_dropping_a_hot_auto_executable_frees_it() -> None:
    program = _fifty_instruction_program()

    def cycle(count: int) -> None:
        for _ in range(count):
            exe = program.load(engine="auto")
            for _ in range(66):
                exe.run(None)
            assert exe.compiled
            del exe

    cycle(200)
    gc.collect()
    before = _rss_bytes()
    cycle(3_000)
    gc.collect()
    growth = _rss_bytes() - before
    assert growth <= 8 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB over 3,000 loads"


# ---------------------------------------------------------------------------
# One executable shared by several Python threads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["interpreter", "jit", "auto"])
def test_executable_shared_between_threads(engine: str) -> None:
    exe = ebpfvm.Program.from_asm(LOOP_SUM).load(engine=engine, verify=False)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for k in range(300):
                data = bytearray((seed * 31 + k + j) % 256 for j in range(k % 50))
                assert exe.run(data) == sum(data)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    if engine != "interpreter":
        assert exe.compiled
