"""The engines agree: the interpreter, the JIT and "auto" (cold and hot) give the
same r0, the same instruction count, the same memory effects and the same helper
calls on hand-written programs covering the instruction set; where a Python model
is easy, they also match it.
"""

from __future__ import annotations

import struct
from typing import Any

import ebpfvm
import pytest
from engine_support import (
    INT64_MIN,
    U32_MASK,
    U64_MASK,
    asm,
    native_helper,
    observe_all,
    weighted,
)

# ---------------------------------------------------------------------------
# A Python model of ALU operations (RFC 9669)
# ---------------------------------------------------------------------------


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _sdiv(a: int, b: int) -> int:
    """Signed division truncating towards zero, as C and eBPF do."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def alu_model(op: str, bits: int, a: int, b: int) -> int:
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    sa, sb = _signed(a, bits), _signed(b, bits)
    shift = b & (bits - 1)
    results = {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: a * b,
        "div": lambda: 0 if b == 0 else a // b,
        "mod": lambda: a if b == 0 else a % b,
        "sdiv": lambda: 0 if b == 0 else _sdiv(sa, sb),
        "smod": lambda: a if b == 0 else sa - sb * _sdiv(sa, sb),
        "or": lambda: a | b,
        "and": lambda: a & b,
        "xor": lambda: a ^ b,
        "lsh": lambda: a << shift,
        "rsh": lambda: a >> shift,
        "arsh": lambda: sa >> shift,
        "mov": lambda: b,
        "neg": lambda: -a,
    }
    return results[op]() & mask


BINARY_OPS = [
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "sdiv",
    "smod",
    "or",
    "and",
    "xor",
    "lsh",
    "rsh",
    "arsh",
    "mov",
]

#: (dst, src) register values; upper halves are set so 32-bit forms must ignore them.
REG_PAIRS = [
    (7, 0),
    (U64_MASK - 6, 0),  # -7 / 0
    (0x1_0000_0007, 0x5_0000_0000),  # 32-bit: 7 / 0 although the register is not 0
    (INT64_MIN, U64_MASK),  # INT64_MIN / -1
    (0xDEAD_BEEF_8000_0000, 0x1234_5678_FFFF_FFFF),  # 32-bit: INT32_MIN / -1
    (U64_MASK - 6, 2),
    (U64_MASK - 6, U64_MASK - 1),
    (7, U64_MASK - 1),
    (0x0123_4567_89AB_CDEF, 13),
    (0xFEDC_BA98_7654_3210, 0x1_0000_0003),
    (0x8000_0000_0000_0001, 63),
    (0x8000_0000_0000_0001, 64),
    (0x8000_0000_0000_0001, 65),
    (0xFFFF_FFFF_8000_0001, 31),
    (0xFFFF_FFFF_8000_0001, 32),
    (0xFFFF_FFFF_8000_0001, 0xFFFF_FFFF_FFFF_FF21),
    (U64_MASK, U64_MASK),
    (0, 0),
]
IMM_DSTS = [7, U64_MASK - 6, INT64_MIN, 0xDEAD_BEEF_8000_0000, 0x0123_4567_89AB_CDEF]
IMMS = [0, 1, 3, -1, -2, 2, 13, 31, 32, 33, 63, 64, 65, -(1 << 31), (1 << 31) - 1, 0x7FFF]


def _alu_program(op: str, bits: int, use_reg: bool) -> tuple[str, list[int]]:
    """A program applying ``op`` to many operand pairs, storing each result in the
    input buffer, and the results the model expects."""
    suffix = "" if bits == 64 else "32"
    lines: list[str] = []
    expected: list[int] = []
    if use_reg:
        cases = [(a, b, f"{op}{suffix} %r0, %r2") for a, b in REG_PAIRS]
    else:
        # 64-bit immediates are sign-extended, 32-bit ones are used as they are.
        cases = [
            (a, imm & U64_MASK if bits == 64 else imm & U32_MASK, f"{op}{suffix} %r0, {imm}")
            for a in IMM_DSTS
            for imm in IMMS
        ]
    for k, (a, b, line) in enumerate(cases):
        lines += [f"lddw %r0, {a:#x}"]
        if use_reg:
            lines += [f"lddw %r2, {b:#x}"]
        lines += [line, f"stxdw [%r1+{8 * k}], %r0"]
        expected.append(alu_model(op, bits, a, b))
    lines += ["mov %r0, 0", "exit"]
    return asm(*lines), expected


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("source", ["reg", "imm"])
@pytest.mark.parametrize("op", BINARY_OPS)
def test_alu(op: str, source: str, bits: int) -> None:
    text, expected = _alu_program(op, bits, source == "reg")
    mem = bytes(8 * len(expected))
    outcome = observe_all(text, mem)
    assert outcome.r0 == 0
    assert outcome.memory is not None
    got = list(struct.unpack(f"<{len(expected)}Q", outcome.memory))
    assert got == expected


@pytest.mark.parametrize("bits", [64, 32])
def test_neg(bits: int) -> None:
    suffix = "" if bits == 64 else "32"
    values = [0, 1, INT64_MIN, U64_MASK, 0xDEAD_BEEF_8000_0000, 0x1234_5678_0000_0000]
    lines: list[str] = []
    for k, value in enumerate(values):
        lines += [f"lddw %r0, {value:#x}", f"neg{suffix} %r0", f"stxdw [%r1+{8 * k}], %r0"]
    outcome = observe_all(asm(*lines, "exit"), bytes(8 * len(values)))
    assert outcome.memory is not None
    got = list(struct.unpack(f"<{len(values)}Q", outcome.memory))
    assert got == [alu_model("neg", bits, v, 0) for v in values]


def test_alu32_zero_extends_and_alu64_wraps() -> None:
    text = asm(
        "lddw %r0, 0xffffffff00000005",
        "add32 %r0, 1",  # 6, upper half cleared
        "lddw %r3, 0x7fffffffffffffff",
        "add %r3, 1",  # wraps to INT64_MIN
        "mov32 %r4, -1",  # 0xffffffff, not sign-extended
        "mov %r5, -1",  # sign-extended
        "stxdw [%r1], %r0",
        "stxdw [%r1+8], %r3",
        "stxdw [%r1+16], %r4",
        "stxdw [%r1+24], %r5",
        "exit",
    )
    outcome = observe_all(text, bytes(32))
    assert outcome.r0 == 6
    assert outcome.memory == struct.pack("<4Q", 6, INT64_MIN, U32_MASK, U64_MASK)


# ---------------------------------------------------------------------------
# Signed operations: sign-extending moves and loads, arithmetic shift
# ---------------------------------------------------------------------------


def test_sign_extending_moves() -> None:
    source = 0x1234_5678_9ABC_DEF0  # low byte 0xF0, low half 0xDEF0, low word 0x9ABCDEF0
    forms = ["movsx864", "movsx1664", "movsx3264", "movsx832", "movsx1632"]
    lines = [f"lddw %r2, {source:#x}"]
    for k, form in enumerate(forms):
        lines += ["lddw %r0, 0xaaaaaaaaaaaaaaaa", f"{form} %r0, %r2", f"stxdw [%r1+{8 * k}], %r0"]
    outcome = observe_all(asm(*lines, "exit"), bytes(8 * len(forms)))
    assert outcome.memory == struct.pack(
        "<5Q",
        (-0x10) & U64_MASK,
        (-0x2110) & U64_MASK,
        (0x9ABC_DEF0 - (1 << 32)) & U64_MASK,
        0xFFFF_FFF0,
        0xFFFF_DEF0,
    )


def test_sign_extending_loads() -> None:
    mem = struct.pack("<Q", 0x8081_8283_F0F1_F2F3) + struct.pack("<Q", 0x0102_0304_7071_7273)
    text = asm(
        "ldxsb %r2, [%r1]",
        "ldxsh %r3, [%r1]",
        "ldxsw %r4, [%r1]",
        "ldxsw %r5, [%r1+8]",
        "ldxb %r6, [%r1]",
        "ldxh %r7, [%r1]",
        "ldxw %r8, [%r1]",
        "stxdw [%r1+16], %r2",
        "stxdw [%r1+24], %r3",
        "stxdw [%r1+32], %r4",
        "stxdw [%r1+40], %r5",
        "mov %r0, %r6",
        "add %r0, %r7",
        "add %r0, %r8",
        "exit",
    )
    outcome = observe_all(text, mem + bytes(32))
    assert outcome.r0 == 0xF3 + 0xF2F3 + 0xF0F1_F2F3
    assert outcome.memory is not None
    assert struct.unpack("<4q", outcome.memory[16:]) == (
        -0x0D,
        -0x0D0D,
        0xF0F1_F2F3 - (1 << 32),
        0x7071_7273,
    )


# ---------------------------------------------------------------------------
# Byte swaps
# ---------------------------------------------------------------------------

SWAP_VALUE = 0x0123_4567_89AB_CDEF


def _swap_model(kind: str, width: int) -> int:
    low = SWAP_VALUE & ((1 << width) - 1)
    if kind == "le":  # a no-op on little-endian hosts, apart from truncation
        return low
    return int.from_bytes(low.to_bytes(width // 8, "little"), "big")


@pytest.mark.parametrize("kind", ["le", "be", "bswap"])
def test_byte_swaps(kind: str) -> None:
    lines: list[str] = []
    widths = [16, 32, 64]
    for k, width in enumerate(widths):
        lines += [f"lddw %r0, {SWAP_VALUE:#x}", f"{kind}{width} %r0", f"stxdw [%r1+{8 * k}], %r0"]
    outcome = observe_all(asm(*lines, "exit"), bytes(24))
    assert outcome.memory is not None
    assert list(struct.unpack("<3Q", outcome.memory)) == [_swap_model(kind, w) for w in widths]


# ---------------------------------------------------------------------------
# Jumps: every condition, 64 and 32 bits, register and immediate
# ---------------------------------------------------------------------------

CONDITIONS = {
    "jeq": lambda a, b, sa, sb: a == b,
    "jne": lambda a, b, sa, sb: a != b,
    "jgt": lambda a, b, sa, sb: a > b,
    "jge": lambda a, b, sa, sb: a >= b,
    "jlt": lambda a, b, sa, sb: a < b,
    "jle": lambda a, b, sa, sb: a <= b,
    "jset": lambda a, b, sa, sb: a & b != 0,
    "jsgt": lambda a, b, sa, sb: sa > sb,
    "jsge": lambda a, b, sa, sb: sa >= sb,
    "jslt": lambda a, b, sa, sb: sa < sb,
    "jsle": lambda a, b, sa, sb: sa <= sb,
}
JUMP_PAIRS = [
    (1, 1),
    (1, 2),
    (2, 1),
    (U64_MASK, 1),
    (1, U64_MASK),
    (INT64_MIN, INT64_MIN - 1),
    (0x1_0000_0001, 1),  # equal in 32 bits only
    (0xFFFF_FFFF, U64_MASK),
    (0x8000_0000, 0),
    (0, 0x8000_0000),
    (5, 4),
    (6, 9),
]
JUMP_IMM_PAIRS = [
    (a, imm)
    for a in (0, 1, U64_MASK, 0xFFFF_FFFF, INT64_MIN, 0x8000_0000)
    for imm in (0, 1, -1, -(1 << 31), 0x7FFF_FFFF)
]


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("source", ["reg", "imm"])
@pytest.mark.parametrize("cond", sorted(CONDITIONS))
def test_conditional_jumps(cond: str, source: str, bits: int) -> None:
    suffix = "" if bits == 64 else "32"
    mask = (1 << bits) - 1
    lines: list[str] = []
    expected: list[int] = []
    pairs = JUMP_PAIRS if source == "reg" else JUMP_IMM_PAIRS
    for k, (a, b) in enumerate(pairs):
        lines += [f"lddw %r3, {a:#x}", "mov %r0, 1"]
        if source == "reg":
            lines += [f"lddw %r4, {b:#x}", f"{cond}{suffix} %r3, %r4, +1"]
            b_value = b
        else:
            lines += [f"{cond}{suffix} %r3, {b}, +1"]
            b_value = b & U64_MASK  # the immediate is sign-extended
        lines += ["mov %r0, 0", f"stxb [%r1+{k}], %r0"]
        a_m, b_m = a & mask, b_value & mask
        taken = CONDITIONS[cond](a_m, b_m, _signed(a_m, bits), _signed(b_m, bits))
        expected.append(int(taken))
    outcome = observe_all(asm(*lines, "exit"), bytes(len(pairs)))
    assert list(outcome.memory or b"") == expected


def test_long_jumps_and_backward_loops() -> None:
    text = asm(
        "mov %r0, 0",
        "mov %r3, 0",
        "top:",
        "add %r0, %r3",
        "add %r3, 1",
        "jlt32 %r3, 100, top",  # 32-bit backward conditional jump
        "ja32 skip",  # gotol: 32-bit offset
        "mov %r0, 12345",
        "skip:",
        "mov %r4, 3",
        "again:",
        "sub %r4, 1",
        "jeq %r4, 0, out",
        "ja again",
        "out:",
        "exit",
    )
    outcome = observe_all(text)
    assert outcome.r0 == sum(range(100))
    # 2 + 100 * 3 + ja32 + mov + 2 * 3 + (sub, jeq) + exit
    assert outcome.count == 2 + 300 + 1 + 1 + 6 + 2 + 1


def test_lddw() -> None:
    text = asm(
        "lddw %r0, 0x0123456789abcdef",
        "lddw %r2, 0xffffffff00000000",
        "lddw %r3, 0x80000000",
        "xor %r0, %r2",
        "add %r0, %r3",
        "exit",
    )
    outcome = observe_all(text)
    assert outcome.r0 == ((0x0123_4567_89AB_CDEF ^ 0xFFFF_FFFF_0000_0000) + 0x8000_0000) & U64_MASK
    assert outcome.count == 6


# ---------------------------------------------------------------------------
# Atomics on the input buffer and on the stack
# ---------------------------------------------------------------------------


def test_atomics_on_input_buffer() -> None:
    initial = [
        0x10,
        0x20,
        0xF0F0,
        0xFF00,
        0x0FF0,
        0x1234,
        0x99,
        0x77,
    ]
    words32 = [0xFFFF_FFF0, 0x0F0F_0F0F, 0xAAAA_AAAA, 0x5]
    mem = struct.pack("<8Q", *initial) + struct.pack("<4I", *words32) + bytes(8 * 10)
    text = asm(
        "lddw %r2, 0x100000005",
        "lock add [%r1], %r2",
        "mov %r3, 7",
        "lock fetch add [%r1+8], %r3",  # r3 = 0x20
        "mov %r4, 0x0f0f",
        "lock or [%r1+16], %r4",
        "mov %r5, 0x0ff0",
        "lock fetch and [%r1+24], %r5",  # r5 = 0xff00
        "mov %r6, 0xffff",
        "lock fetch xor [%r1+32], %r6",  # r6 = 0x0ff0
        "mov %r7, 0x5555",
        "lock xchg [%r1+40], %r7",  # r7 = 0x1234
        "mov %r0, 0x99",
        "mov %r8, 0x42",
        "lock cmpxchg [%r1+48], %r8",  # equal: stores 0x42, r0 = 0x99
        "mov %r9, %r0",
        "mov %r0, 1",
        "lock cmpxchg [%r1+56], %r8",  # differs: r0 = 0x77, memory unchanged
        "stxdw [%r1+96], %r3",
        "stxdw [%r1+104], %r5",
        "stxdw [%r1+112], %r6",
        "stxdw [%r1+120], %r7",
        "stxdw [%r1+128], %r9",
        "stxdw [%r1+136], %r0",
        # 32-bit forms: the upper half of the operand is ignored, results zero-extend
        "lddw %r2, 0xffffffff00000020",
        "lock fetch add32 [%r1+64], %r2",  # r2 = 0xfffffff0; memory wraps to 0x10
        "mov %r3, 0xf0",
        "lock fetch or32 [%r1+68], %r3",  # r3 = 0x0f0f0f0f
        "mov32 %r4, -1",
        "lock xchg32 [%r1+72], %r4",  # r4 = 0xaaaaaaaa
        "mov %r0, 5",
        "mov %r5, 9",
        "lock cmpxchg32 [%r1+76], %r5",  # equal: stores 9, r0 = 5
        "stxdw [%r1+144], %r2",
        "stxdw [%r1+152], %r3",
        "add %r0, %r4",
        "exit",
    )
    outcome = observe_all(text, mem)
    assert outcome.r0 == 5 + 0xAAAA_AAAA
    expected = bytearray(mem)
    struct.pack_into(
        "<8Q",
        expected,
        0,
        0x10 + 0x1_0000_0005,
        0x27,
        0xFFFF,
        0x0F00,
        0xF00F,
        0x5555,
        0x42,
        0x77,
    )
    struct.pack_into("<4I", expected, 64, 0x10, 0x0F0F_0FFF, U32_MASK, 9)
    struct.pack_into("<6Q", expected, 96, 0x20, 0xFF00, 0x0FF0, 0x1234, 0x99, 0x77)
    struct.pack_into("<2Q", expected, 144, 0xFFFF_FFF0, 0x0F0F_0F0F)
    assert outcome.memory == bytes(expected)


def test_atomics_on_stack() -> None:
    text = asm(
        "stdw [%r10-8], 40",
        "mov %r2, 2",
        "lock add [%r10-8], %r2",
        "mov %r3, %r10",
        "add %r3, -16",
        "stw [%r3], 100",
        "mov %r4, 1",
        "lock fetch add32 [%r3], %r4",  # r4 = 100
        "ldxdw %r0, [%r10-8]",
        "ldxw %r5, [%r10-16]",
        "add %r0, %r5",
        "add %r0, %r4",
        "exit",
    )
    assert observe_all(text).r0 == 42 + 101 + 100


# ---------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------


def test_whole_stack_frame() -> None:
    text = asm(
        "mov %r2, %r10",
        "mov %r3, 0",
        "fill:",
        "add %r2, -8",
        "stxdw [%r2], %r3",  # a checked access through another register
        "add %r3, 1",
        "jlt %r3, 64, fill",
        "stb [%r10-1], 0x7f",  # overwrite the top byte of slot 0
        "sth [%r10-512], 0x1234",  # and the low half-word of slot 63
        "mov %r0, 0",
        "mov %r1, %r10",
        "add %r1, -512",
        "mov %r2, %r10",
        "sum:",
        "add %r2, -8",
        "ldxdw %r4, [%r2]",
        "add %r0, %r4",
        "jgt %r2, %r1, sum",
        "exit",
    )
    outcome = observe_all(text)
    slot0 = 0x7F << 56
    slot63 = 0x1234
    assert outcome.r0 == sum(range(1, 63)) + slot0 + slot63
    assert outcome.count == 2 + 64 * 4 + 2 + 4 + 64 * 4 + 1


def test_stack_starts_zeroed_each_run() -> None:
    # In checked mode each run starts from a zeroed frame, whatever the previous
    # run left there (the verifier refuses reads of stack never written).
    text = asm("ldxdw %r0, [%r10-8]", "stdw [%r10-8], 99", "exit")
    program = ebpfvm.Program.from_asm(text)
    for engine in ("interpreter", "jit", "auto"):
        exe = program.load(engine=engine, verify=False)
        assert [exe.run(None) for _ in range(100)] == [0] * 100, engine


# ---------------------------------------------------------------------------
# BPF-to-BPF calls
# ---------------------------------------------------------------------------


def _recursive_sum(n: int) -> str:
    return asm(
        f"mov %r1, {n}",
        "call local f",
        "exit",
        "f:",
        "mov %r0, 0",
        "jeq %r1, 0, done",
        "mov %r6, %r1",
        "sub %r1, 1",
        "call local f",
        "add %r0, %r6",
        "done:",
        "exit",
    )


def test_recursion_up_to_the_limit() -> None:
    # main is frame 1; f(n) .. f(0) take n + 1 more frames.
    n = ebpfvm.MAX_CALL_FRAMES - 2
    outcome = observe_all(_recursive_sum(n))
    assert outcome.r0 == n * (n + 1) // 2
    assert outcome.count == 3 + n * 7 + 3


def test_recursion_one_past_the_limit() -> None:
    outcome = observe_all(_recursive_sum(ebpfvm.MAX_CALL_FRAMES - 1))
    assert outcome.result == ("error", "call_depth", 7)  # the recursive `call local f`


def test_call_frames_are_separate() -> None:
    text = asm(
        "stdw [%r10-8], 111",
        "mov %r6, 6",
        "mov %r1, %r10",
        "add %r1, -8",  # a pointer into the caller's frame
        "call local g",
        "ldxdw %r2, [%r10-8]",
        "add %r0, %r2",
        "add %r0, %r6",  # r6 survives the call
        "exit",
        "g:",
        "ldxdw %r0, [%r10-8]",  # the callee's own frame starts zeroed
        "stdw [%r10-8], 222",
        "ldxdw %r3, [%r1]",  # the caller's slot through the pointer: 111
        "stdw [%r1], 333",
        "ldxdw %r4, [%r10-8]",
        "add %r0, %r3",
        "add %r0, %r4",
        "add %r0, %r6",  # the callee's r6 starts at 0
        "mov %r6, 1000",
        "exit",
    )
    assert observe_all(text).r0 == (0 + 111 + 222) + 333 + 6


def test_calls_keep_argument_registers() -> None:
    # Both engines restore r1-r5 after a local call (and keep them across helpers).
    text = asm(
        "mov %r1, 1",
        "mov %r2, 2",
        "mov %r3, 3",
        "mov %r4, 4",
        "mov %r5, 5",
        "call local g",
        "call 1",
        "lsh %r1, 4",
        "add %r1, %r2",
        "lsh %r1, 4",
        "add %r1, %r3",
        "lsh %r1, 4",
        "add %r1, %r4",
        "lsh %r1, 4",
        "add %r1, %r5",
        "mov %r0, %r1",
        "exit",
        "g:",
        "mov %r1, 9",
        "mov %r2, 9",
        "mov %r3, 9",
        "mov %r4, 9",
        "mov %r5, 9",
        "exit",
    )
    outcome = observe_all(text, helpers=lambda log: {1: lambda *a: 0})
    assert outcome.r0 == 0x12345


def test_many_functions_and_counts() -> None:
    text = asm(
        "mov %r0, 0",
        "mov %r6, 0",
        "loop:",
        "mov %r1, %r6",
        "call local double",
        "add %r6, 1",
        "jlt %r6, 10, loop",
        "exit",
        "double:",
        "mov %r7, %r0",
        "call local twice",
        "add %r0, %r7",
        "exit",
        "twice:",
        "mov %r0, %r1",
        "add %r0, %r1",
        "exit",
    )
    outcome = observe_all(text)
    # A callee starts with r0 = 0, so `double` returns 2 * i; the last i is 9.
    assert outcome.r0 == 18
    assert outcome.count == 2 + 10 * (4 + 4 + 3) + 1


def test_ldabs_stop_inside_a_function() -> None:
    text = asm(
        "stb [%r1], 1",
        "call local f",
        "stb [%r1+1], 1",  # never reached
        "mov %r0, 77",
        "exit",
        "f:",
        "ldabsw 2",  # out of range on 4 bytes: the whole program stops with r0 = 0
        "mov %r0, 5",
        "exit",
    )
    outcome = observe_all(text, bytes(4))
    assert outcome.result == ("ok", 0, 3)
    assert outcome.memory == b"\x01\x00\x00\x00"


# ---------------------------------------------------------------------------
# Helpers: Python, memory helpers, native helpers, callx, unwind
# ---------------------------------------------------------------------------


def _helpers(log: list[Any]) -> dict[int, Any]:
    def plain(a: int, b: int, c: int, d: int, e: int) -> int:
        log.append(("plain", a, b, c, d, e))
        return (a * 1000 + b * 100 + c * 10 + d) ^ e

    def memory(mem: ebpfvm.VMMemory, addr: int, size: int, c: int, d: int, e: int) -> int:
        data = mem.read(addr, size)
        log.append(("memory", data))
        mem.write(addr, data[::-1])
        return sum(data)

    return {1: plain, 2: ebpfvm.Helper(memory, memory=True), 3: native_helper()}


def test_python_helper() -> None:
    text = asm(
        "mov %r1, 1",
        "mov %r2, 2",
        "mov %r3, 3",
        "mov %r4, 4",
        "mov %r5, -1",
        "mov %r6, 6",
        "mov %r9, 9",
        "call 1",
        "add %r0, %r6",
        "add %r0, %r9",
        "exit",
    )
    outcome = observe_all(text, helpers=_helpers)
    assert outcome.r0 == ((1234 ^ U64_MASK) + 15) & U64_MASK
    assert outcome.calls == (("plain", 1, 2, 3, 4, U64_MASK),)


def test_memory_helper_on_input_and_stack() -> None:
    text = asm(
        "mov %r6, %r1",
        "mov %r2, 4",
        "call 2",  # reverses the first 4 input bytes
        "mov %r7, %r0",
        "stdw [%r10-8], 0x04030201",
        "mov %r1, %r10",
        "add %r1, -8",
        "mov %r2, 3",
        "call 2",  # reverses 3 stack bytes
        "add %r7, %r0",
        "ldxdw %r0, [%r10-8]",
        "ldxw %r8, [%r6]",
        "lsh %r0, 32",
        "or %r0, %r8",
        "add %r0, %r7",
        "exit",
    )
    outcome = observe_all(text, b"\x0a\x0b\x0c\x0d\x0e", helpers=_helpers)
    assert outcome.memory == b"\x0d\x0c\x0b\x0a\x0e"
    assert outcome.calls == (("memory", b"\x0a\x0b\x0c\x0d"), ("memory", b"\x01\x02\x03"))
    assert outcome.r0 == ((0x0401_0203 << 32) | 0x0A0B_0C0D) + (10 + 11 + 12 + 13) + 6


def test_memory_helper_in_a_callee() -> None:
    # Inside a callee, a memory helper sees the callee's frame and its caller's.
    text = asm(
        "stdw [%r10-8], 0x0a0b",
        "call local f",
        "ldxdw %r6, [%r10-8]",
        "lsh %r0, 32",
        "or %r0, %r6",
        "exit",
        "f:",
        "stdw [%r10-8], 0x0102",
        "mov %r1, %r10",
        "add %r1, -8",
        "mov %r2, 2",
        "call 2",  # the callee's own frame
        "mov %r6, %r0",
        "mov %r1, %r10",
        "add %r1, 504",
        "mov %r2, 2",
        "call 2",  # the caller's frame, above
        "add %r0, %r6",
        "ldxdw %r7, [%r10-8]",
        "lsh %r7, 16",
        "add %r0, %r7",
        "exit",
    )
    outcome = observe_all(text, helpers=_helpers)
    assert outcome.calls == (("memory", b"\x02\x01"), ("memory", b"\x0b\x0a"))
    assert outcome.r0 == ((3 + 21 + (0x0201 << 16)) << 32) | 0x0B0A  # caller slot reversed


def test_native_helper_ctypes_callback() -> None:
    text = asm(
        "mov %r1, 1",
        "mov %r2, 2",
        "mov %r3, 3",
        "mov %r4, 4",
        "mov %r5, -1",
        "call 3",
        "exit",
    )
    outcome = observe_all(text, helpers=_helpers)
    assert outcome.r0 == weighted(1, 2, 3, 4, U64_MASK)


def test_helpers_in_a_loop_and_in_functions() -> None:
    text = asm(
        "mov %r6, 0",
        "mov %r7, 0",
        "loop:",
        "mov %r1, %r6",
        "call local f",
        "add %r7, %r0",
        "add %r6, 1",
        "jlt %r6, 20, loop",
        "mov %r0, %r7",
        "exit",
        "f:",
        "mov %r2, %r1",
        "mov %r3, 0",
        "mov %r4, 0",
        "mov %r5, 0",
        "call 3",  # native: r1 + 2 * r1
        "mov %r1, %r0",
        "call 1",  # python
        "exit",
    )
    outcome = observe_all(text, helpers=_helpers)
    assert outcome.r0 == sum((3 * i) * 1000 + i * 100 for i in range(20))
    assert len(outcome.calls) == 20


def test_callx() -> None:
    text = asm(
        "mov %r1, 1",
        "mov %r2, 2",
        "mov %r3, 3",
        "mov %r4, 4",
        "mov %r5, 5",
        "mov %r6, 3",
        "call %r6",  # native helper 3
        "mov %r7, %r0",
        "mov %r8, 1",
        "call %r8",  # python helper 1
        "add %r0, %r7",
        "exit",
    )
    outcome = observe_all(text, helpers=_helpers)
    assert outcome.r0 == weighted(1, 2, 3, 4, 5) + ((1234 ^ 5) & U64_MASK)
    assert outcome.calls == (("plain", 1, 2, 3, 4, 5),)


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("stop", [False, True])
def test_unwind_helper(native: bool, stop: bool) -> None:
    def factory(log: list[Any]) -> dict[int, Any]:
        if native:
            return {4: native_helper()}
        return {4: lambda a, b, c, d, e: a}

    first = 0 if stop else 1
    text = asm(
        f"mov %r1, {first}",
        "mov %r2, 0",
        "mov %r3, 0",
        "mov %r4, 0",
        "mov %r5, 0",
        "stb [%r10-1], 1",
        "call local f",
        "mov %r0, 42",
        "exit",
        "f:",
        "call 4",
        "mov %r0, 43",
        "exit",
    )
    outcome = observe_all(text, helpers=factory, unwind_helper=4)
    assert outcome.result == (("ok", 0, 8) if stop else ("ok", 42, 12))


def test_helper_exception_propagates_from_the_jit() -> None:
    class Boom(Exception):
        pass

    def helper(*args: int) -> int:
        raise Boom("from the helper")

    text = asm("mov %r1, 1", "call local f", "exit", "f:", "call 1", "exit")
    program = ebpfvm.Program.from_asm(text)
    for engine in ("interpreter", "jit", "auto"):
        exe = program.load(engine=engine, verify=False, helpers={1: helper})
        for _ in range(80):  # "auto" compiles on the way
            with pytest.raises(Boom):
                exe.run(None)
    ok = program.load(engine="jit", verify=False, helpers={1: lambda *a: 3})
    assert ok.run(None) == 3


def _bad_read_helpers(log: list[Any]) -> dict[int, Any]:
    return {2: ebpfvm.Helper(lambda mem, a, b, c, d, e: mem.read(a, b)[0], memory=True)}


BAD_READ = asm("mov %r0, 0", "mov %r2, 100", "call 2", "exit")


def test_memory_helper_fault_is_the_same() -> None:
    # A memory helper reading outside the program's memory: every engine fails
    # the same way.
    outcome = observe_all(BAD_READ, bytes(8), helpers=_bad_read_helpers)
    assert outcome.result[0] == "error"


@pytest.mark.parametrize("engine", ["interpreter", "jit"])
def test_memory_helper_fault_has_execution_error_attributes(engine: str) -> None:
    # ExecutionError promises .pc, .reason and .kind; an uncaught bad access by a
    # memory helper is a run-time fault of the helper call at pc 2.
    exe = ebpfvm.Program.from_asm(BAD_READ).load(
        engine=engine, verify=False, helpers=_bad_read_helpers([])
    )
    with pytest.raises(ebpfvm.ExecutionError) as info:
        exe.run(bytearray(8))
    error = info.value
    assert getattr(error, "kind", None) in ("helper_failed", "out_of_bounds")
    assert getattr(error, "pc", None) == 2
    assert isinstance(getattr(error, "reason", None), str)


# ---------------------------------------------------------------------------
# Legacy packet loads
# ---------------------------------------------------------------------------

PACKET = bytes(range(0x10, 0x30))  # 32 bytes


def test_legacy_packet_loads() -> None:
    text = asm(
        "ldabsh 12",  # big-endian half-word at 12
        "mov %r6, %r0",
        "ldabsb 0",
        "lsh %r6, 8",
        "add %r6, %r0",
        "ldabsw 2",
        "lsh %r6, 32",
        "xor %r6, %r0",
        "mov %r7, 4",
        "ldindh %r7, 2",  # offset 6
        "add %r6, %r0",
        "mov %r7, -2",
        "ldindw %r7, 10",  # offset 8
        "add %r6, %r0",
        "lddw %r7, 0x100000003",  # only the low 32 bits of the index count
        "ldindb %r7, 1",  # offset 4
        "add %r6, %r0",
        "ldabsw 28",  # the last 4 bytes: still in range
        "add %r6, %r0",
        "mov %r0, %r6",
        "exit",
    )
    outcome = observe_all(text, PACKET)

    def be(offset: int, size: int) -> int:
        return int.from_bytes(PACKET[offset : offset + size], "big")

    r6 = ((be(12, 2) << 8) + be(0, 1)) & U64_MASK
    r6 = ((r6 << 32) & U64_MASK) ^ be(2, 4)
    r6 = (r6 + be(6, 2) + be(8, 4) + be(4, 1) + be(28, 4)) & U64_MASK
    assert outcome.r0 == r6
    assert outcome.count == 21


@pytest.mark.parametrize(
    ("load", "mem"),
    [
        ("ldabsw 29", PACKET),
        ("ldabsh 31", PACKET),
        ("ldabsb 32", PACKET),
        ("ldabsb -1", PACKET),
        ("ldabsb 0", None),
        ("ldabsb 0", b""),
        ("ldindb %r7, 0", PACKET),  # r7 = -1
        ("ldindw %r7, 30", PACKET),  # offset 29
        ("ldindh %r8, 0", PACKET),  # r8 = 0x7fffffff
    ],
)
def test_legacy_packet_load_out_of_range_stops(load: str, mem: bytes | None) -> None:
    text = asm(
        "mov %r0, 99",
        "mov %r7, -1",
        "mov %r8, 0x7fffffff",
        "mov %r9, %r1",
        load,
        "stb [%r9], 0",  # never reached
        "mov %r0, 1",
        "exit",
    )
    outcome = observe_all(text, mem)
    assert outcome.result == ("ok", 0, 5)
    assert outcome.memory == mem
