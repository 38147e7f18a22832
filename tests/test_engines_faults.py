"""Checked-mode faults in the JIT: the same ebpfvm.ExecutionError (kind and pc) as
the interpreter, nothing written by a faulting store, and the process and the
executable both survive. Compiled code never traps: programs that divide by zero,
divide the most negative number by -1 or shift by huge amounts run in a child
process that must exit normally.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from typing import Any

import ebpfvm
import pytest
from engine_support import (
    INT64_MIN,
    U32_MASK,
    U64_MASK,
    asm,
    observe_all,
)

# (name, program, memory, expected kind, expected pc)
FAULTS: list[tuple[str, str, bytes | None, str, int]] = [
    (
        "load past the end",
        asm("mov %r0, 0", "mov %r3, 1", "ldxw %r0, [%r1+6]", "exit"),
        bytes(8),
        "out_of_bounds",
        2,
    ),
    ("load before the start", asm("ldxb %r0, [%r1-1]", "exit"), bytes(8), "out_of_bounds", 0),
    ("load without memory", asm("mov %r0, 0", "ldxb %r0, [%r1]", "exit"), None, "out_of_bounds", 1),
    (
        "load through a computed pointer",
        asm("mov %r2, %r1", "add %r2, 4096", "ldxdw %r0, [%r2]", "exit"),
        bytes(64),
        "out_of_bounds",
        2,
    ),
    (
        "store past the end",
        asm("mov %r3, 1", "mov %r0, 0", "stxdw [%r1+4], %r3", "exit"),
        bytes(8),
        "out_of_bounds",
        2,
    ),
    (
        "store immediate straddling the end",
        asm("sth [%r1+7], 1", "exit"),
        bytes(8),
        "out_of_bounds",
        0,
    ),
    (
        "store below the stack",
        asm("mov %r0, 0", "stdw [%r10-520], 1", "exit"),
        None,
        "out_of_bounds",
        1,
    ),
    ("store above the stack", asm("stb [%r10], 0", "exit"), None, "out_of_bounds", 0),
    (
        "store below the frame of a callee",
        asm("mov %r0, 0", "call local f", "exit", "f:", "stb [%r10-513], 1", "exit"),
        None,
        "out_of_bounds",
        3,
    ),
    (
        "store into a returned-from frame",
        asm(
            "call local f",
            "stb [%r0], 1",  # the callee's frame is no longer live
            "exit",
            "f:",
            "mov %r0, %r10",
            "add %r0, -8",
            "exit",
        ),
        None,
        "out_of_bounds",
        1,
    ),
    (
        "misaligned 64-bit atomic",
        asm("mov %r2, 1", "lock add [%r1+4], %r2", "exit"),
        bytes(16),
        "misaligned",
        1,
    ),
    (
        "misaligned 32-bit atomic on the stack",
        asm("mov %r0, 0", "mov %r2, 1", "lock fetch add32 [%r10-6], %r2", "exit"),
        None,
        "misaligned",
        2,
    ),
    (
        "misaligned cmpxchg",
        asm("mov %r2, 1", "lock cmpxchg [%r1+1], %r2", "exit"),
        bytes(16),
        "misaligned",
        1,
    ),
    (
        "atomic past the end",
        asm("mov %r2, 1", "lock xchg [%r1+16], %r2", "exit"),
        bytes(16),
        "out_of_bounds",
        1,
    ),
    (
        "callx to an unregistered helper",
        asm("mov %r0, 0", "mov %r6, 99", "call %r6", "exit"),
        None,
        "unknown_helper",
        2,
    ),
    (
        "callx to a 64-bit id whose low half is registered",
        asm("lddw %r6, 0x100000001", "call %r6", "exit"),
        None,
        "unknown_helper",
        2,
    ),
    ("callx to -1", asm("mov %r6, -1", "call %r6", "exit"), None, "unknown_helper", 1),
    (
        "unbounded recursion",
        asm("mov %r0, 0", "call local f", "exit", "f:", "add %r0, 1", "call local f", "exit"),
        None,
        "call_depth",
        4,
    ),
    (
        "mutual recursion",
        asm(
            "call local f",
            "exit",
            "f:",
            "stdw [%r10-8], 1",
            "call local g",
            "exit",
            "g:",
            "call local f",
            "exit",
        ),
        None,
        "call_depth",
        3,  # f, at depth 7, cannot call g
    ),
]


def _helpers(log: list[Any]) -> dict[int, Any]:
    return {1: lambda *args: 1, 2: lambda *args: 2}


@pytest.mark.parametrize(
    ("text", "mem", "kind", "pc"),
    [pytest.param(text, mem, kind, pc, id=name) for name, text, mem, kind, pc in FAULTS],
)
def test_fault_matches_interpreter(text: str, mem: bytes | None, kind: str, pc: int) -> None:
    outcome = observe_all(text, mem, helpers=_helpers, max_instructions=10_000)
    assert outcome.result == ("error", kind, pc)
    assert outcome.memory == mem  # a faulting store writes nothing


@pytest.mark.parametrize(
    ("text", "mem", "kind", "pc"),
    [pytest.param(text, mem, kind, pc, id=name) for name, text, mem, kind, pc in FAULTS],
)
def test_jit_fault_error_and_survival(text: str, mem: bytes | None, kind: str, pc: int) -> None:
    exe = ebpfvm.Program.from_asm(text).load(engine="jit", verify=False, helpers=_helpers([]))
    for _ in range(3):
        with pytest.raises(ebpfvm.ExecutionError) as info:
            exe.run(None if mem is None else bytearray(mem))
        error = info.value
        assert isinstance(error, ebpfvm.Error)
        assert (error.kind, error.pc) == (kind, pc)
        assert isinstance(error.reason, str) and error.reason
    # The executable still works after faults.
    ok = ebpfvm.Program.from_asm("mov %r0, %r2\nexit\n").load(engine="jit", verify=False)
    assert ok.run(b"abc") == 3


def test_fault_then_success_on_same_executable() -> None:
    exe = ebpfvm.Program.from_asm(asm("ldxb %r0, [%r1+3]", "exit")).load(engine="jit", verify=False)
    for _ in range(5):
        with pytest.raises(ebpfvm.ExecutionError):
            exe.run(bytearray(3))
        assert exe.run(bytearray([0, 0, 0, 9])) == 9


def test_callee_may_use_the_callers_frame() -> None:
    # All live frames are accessible: a callee may reach its caller's frame above r10.
    text = asm(
        "stdw [%r10-8], 5",
        "call local f",
        "ldxdw %r0, [%r10-8]",
        "exit",
        "f:",
        "ldxdw %r0, [%r10+504]",
        "add %r0, 1",
        "stxdw [%r10+504], %r0",
        "exit",
    )
    assert observe_all(text).r0 == 6


# ---------------------------------------------------------------------------
# The instruction budget
# ---------------------------------------------------------------------------

INFINITE_LOOPS = {
    "simple": asm("mov %r0, 0", "add %r0, 1", "ja -2"),
    "nested": asm(
        "mov %r0, 0",
        "outer:",
        "mov %r3, 3",
        "inner:",
        "add %r0, 1",
        "sub %r3, 1",
        "jne %r3, 0, inner",
        "ja outer",
    ),
    "with calls": asm(
        "mov %r0, 0",
        "top:",
        "call local f",
        "ja32 top",
        "f:",
        "mov %r1, 2",
        "again:",
        "sub %r1, 1",
        "jgt %r1, 0, again",
        "exit",
    ),
    "with a helper": asm("mov %r0, 0", "top:", "call 1", "jne %r0, 0, top", "exit"),
}


@pytest.mark.parametrize("name", sorted(INFINITE_LOOPS))
def test_budget_exhausted_at_same_pc(name: str) -> None:
    program = ebpfvm.Program.from_asm(INFINITE_LOOPS[name])
    pcs = set()
    for budget in [1, 2, 3, 4, 5, 7, 10, 11, 12, 13, 17, 50, 99, 100, 1000]:
        outcome = observe_all(program, helpers=_helpers, max_instructions=budget)
        assert outcome.result[:2] == ("error", "budget_exhausted"), budget
        pcs.add(outcome.result[2])
    assert pcs  # the pc depends on the budget, but never on the engine


def test_budget_is_checked_the_same_way() -> None:
    text = asm(
        "mov %r6, 0",
        "mov %r1, 7",
        "call local f",
        "add %r6, 1",
        "jne %r6, 40, -3",
        "mov %r0, %r6",
        "exit",
        "f:",
        "mov %r2, %r1",
        "loop:",
        "sub %r2, 1",
        "jne %r2, 0, loop",
        "exit",
    )
    program = ebpfvm.Program.from_asm(text)
    full = observe_all(program)
    executed = full.count
    # Every budget below the count either finishes like the full run or stops
    # with budget_exhausted, identically in all engines.
    assert full.result == ("ok", 40, 3 + 40 * (3 + 1 + 7 * 2 + 1) + 1)
    for budget in range(1, executed + 2, 7):
        outcome = observe_all(program, max_instructions=budget)
        assert outcome.result in (full.result, ("error", "budget_exhausted", outcome.result[2]))
    assert observe_all(program, max_instructions=executed).result == full.result
    stopped = observe_all(program, max_instructions=executed // 2)
    assert stopped.result[:2] == ("error", "budget_exhausted")


# ---------------------------------------------------------------------------
# Compiled code never traps (checked in a child process)
# ---------------------------------------------------------------------------


def _q(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *(v & U64_MASK for v in values))


def _binop(op: str) -> str:
    """r0 = mem[0] <op> mem[8], with both operands loaded at run time."""
    return asm("ldxdw %r0, [%r1]", "ldxdw %r2, [%r1+8]", f"{op} %r0, %r2", "exit")


def _immop(op: str) -> str:
    return asm("ldxdw %r0, [%r1]", op, "exit")


INT32_MIN_WITH_JUNK = 0xDEAD_BEEF_8000_0000
MINUS_ONE_32_WITH_JUNK = 0x1234_5678_FFFF_FFFF
ZERO_32_WITH_JUNK = 0x5_0000_0000

# (program, memory, expected r0)
NEVER_TRAP: list[tuple[str, bytes, int]] = [
    (_binop("div"), _q(7, 0), 0),
    (_binop("mod"), _q(7, 0), 7),
    (_binop("sdiv"), _q(-7, 0), 0),
    (_binop("smod"), _q(-7, 0), -7 & U64_MASK),
    (_binop("div32"), _q(7, ZERO_32_WITH_JUNK), 0),
    (_binop("mod32"), _q(0x1_0000_0007, ZERO_32_WITH_JUNK), 7),
    (_binop("sdiv32"), _q(7, ZERO_32_WITH_JUNK), 0),
    (_binop("smod32"), _q(-7, ZERO_32_WITH_JUNK), (-7) & U32_MASK),
    (_binop("sdiv"), _q(INT64_MIN, -1), INT64_MIN),
    (_binop("smod"), _q(INT64_MIN, -1), 0),
    (_binop("sdiv32"), _q(INT32_MIN_WITH_JUNK, MINUS_ONE_32_WITH_JUNK), 0x8000_0000),
    (_binop("smod32"), _q(INT32_MIN_WITH_JUNK, MINUS_ONE_32_WITH_JUNK), 0),
    (_binop("div"), _q(INT64_MIN, -1), 0),
    (_immop("div %r0, 0"), _q(7), 0),
    (_immop("mod %r0, 0"), _q(7), 7),
    (_immop("sdiv %r0, 0"), _q(7), 0),
    (_immop("smod32 %r0, 0"), _q(0x1_0000_0007), 7),
    (_immop("sdiv %r0, -1"), _q(INT64_MIN), INT64_MIN),
    (_immop("smod %r0, -1"), _q(INT64_MIN), 0),
    (_immop("sdiv32 %r0, -1"), _q(INT32_MIN_WITH_JUNK), 0x8000_0000),
    (_immop("smod32 %r0, -1"), _q(INT32_MIN_WITH_JUNK), 0),
    (_binop("lsh"), _q(1, 64), 1),
    (_binop("lsh"), _q(1, 65), 2),
    (_binop("rsh"), _q(INT64_MIN, -1), 1),
    (_binop("arsh"), _q(INT64_MIN, 1 << 40), INT64_MIN),
    (_binop("arsh"), _q(INT64_MIN, 127), U64_MASK),
    (_binop("lsh32"), _q(1, 32), 1),
    (_binop("lsh32"), _q(1, 0xFFFF_FFFF_FFFF_FF21), 2),
    (_binop("rsh32"), _q(0x8000_0000, 0xFFFF_FFFF), 1),
    (_binop("arsh32"), _q(0x8000_0000, 63), U32_MASK),
    (_immop("lsh %r0, 64"), _q(3), 3),
    (_immop("lsh %r0, 100"), _q(1), 1 << 36),
    (_immop("rsh %r0, -1"), _q(INT64_MIN), 1),
    (_immop("arsh32 %r0, 255"), _q(0x8000_0000), U32_MASK),
    (_immop("lsh32 %r0, 0x7fffffff"), _q(1), 1 << 31),
]

CHILD = """
import json, sys
import ebpfvm
cases = json.load(sys.stdin)
for text, mem in cases:
    exe = ebpfvm.Program.from_asm(text).load(engine=sys.argv[1], verify=False)
    buf = bytearray.fromhex(mem)
    values = [exe.run(buf) for _ in range(70)]  # "auto" compiles on the way
    assert len(set(values)) == 1, values
    records = exe.run_batch([bytes(buf)] * 8, threads=2)
    assert [int(v) for v in records] == values[:8], records
    print(values[0], flush=True)
print("done", flush=True)
"""


@pytest.mark.parametrize("engine", ["jit", "auto"])
def test_compiled_code_never_traps(engine: str) -> None:
    cases = [(text, mem.hex()) for text, mem, _ in NEVER_TRAP]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, engine],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-2000:]}"
    lines = child.stdout.split()
    assert lines[-1] == "done"
    results = [int(v) for v in lines[:-1]]
    expected = [value & U64_MASK for _, _, value in NEVER_TRAP]
    assert results == expected
    # The interpreter agrees.
    for text, mem, value in NEVER_TRAP:
        interpreted = ebpfvm.Program.from_asm(text).load(engine="interpreter", verify=False)
        assert interpreted.run(bytearray(mem)) == value & U64_MASK, text


FAULT_CHILD = """
import json, sys
import ebpfvm
for text, mem in json.load(sys.stdin):
    exe = ebpfvm.Program.from_asm(text).load(
        engine="jit",
        verify=False,
        helpers={1: lambda *a: 1, 2: lambda *a: 2},
        max_instructions=10_000,
    )
    try:
        exe.run(None if mem is None else bytearray.fromhex(mem))
        print("no-error", flush=True)
    except ebpfvm.ExecutionError as e:
        print(e.kind, e.pc, flush=True)
print("done", flush=True)
"""


def test_jit_faults_do_not_kill_the_process() -> None:
    cases = [(text, None if mem is None else mem.hex()) for _, text, mem, _, _ in FAULTS]
    cases += [(text, None) for text in INFINITE_LOOPS.values()]
    child = subprocess.run(
        [sys.executable, "-c", FAULT_CHILD],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-2000:]}"
    lines = child.stdout.splitlines()
    assert lines[-1] == "done"
    expected = [f"{kind} {pc}" for _, _, _, kind, pc in FAULTS]
    assert lines[: len(FAULTS)] == expected
    assert all(line.startswith("budget_exhausted ") for line in lines[len(FAULTS) : -1])
