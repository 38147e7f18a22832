"""Property tests: no input, however malformed, may make ebpfvm fail in any way other
than raising an ``ebpfvm.Error`` subclass (no other exception, no panic, no hang).

Each property runs ``EBPFVM_FUZZ_EXAMPLES`` examples (default 300) so the suite stays
fast; set the variable higher for long runs, e.g. ``EBPFVM_FUZZ_EXAMPLES=100000``.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

import ebpfvm
from conftest import CONFORMANCE
from ebpfvm.conformance import UBPF_TEST_HELPERS, UBPF_UNWIND_HELPER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("EBPFVM_FUZZ_EXAMPLES", "300"))
#: Small budget: every fuzzed program stops quickly, looping or not.
MAX_INSTRUCTIONS = 2_000
U64_MASK = (1 << 64) - 1

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _corpus() -> list[tuple[bytes, bytes | None]]:
    with open(CONFORMANCE / "bpf_conformance.assembled.json", encoding="utf-8") as f:
        tests = json.load(f)["tests"]
    return [
        (bytes.fromhex(t["code"]), bytes.fromhex(t["mem"]) if t["mem"] else None) for t in tests
    ]


CORPUS = _corpus()


def exercise(code: bytes, mem: bytes | None) -> None:
    """Build, load and run ``code``; only ebpfvm.Error may escape (and is swallowed)."""
    try:
        program = ebpfvm.Program(code)
    except ebpfvm.Error:
        return
    assert program.code == code
    assert len(program) == len(code) // 8
    try:
        executable = program.load(
            helpers=dict(UBPF_TEST_HELPERS),
            verify=False,  # uBPF's convention: unverified programs
            unwind_helper=UBPF_UNWIND_HELPER,
            max_instructions=MAX_INSTRUCTIONS,
        )
    except ebpfvm.Error:
        return
    buffer = bytearray(mem) if mem is not None else None
    try:
        r0, executed = executable.run_counted(buffer)
    except ebpfvm.Error:
        return
    assert isinstance(r0, int) and 0 <= r0 <= U64_MASK
    assert 1 <= executed <= MAX_INSTRUCTIONS
    if buffer is not None:
        assert len(buffer) == len(mem or b"")


# --- strategies --------------------------------------------------------------


def _valid_opcodes() -> list[int]:
    ops: list[int] = []
    for cls in (0x04, 0x07):  # ALU, ALU64
        ops += [cls | op | src for op in range(0x00, 0xE0, 0x10) for src in (0x00, 0x08)]
    for cls in (0x05, 0x06):  # JMP, JMP32
        ops += [cls | op | src for op in range(0x00, 0xE0, 0x10) for src in (0x00, 0x08)]
    ops += [0x18]  # lddw
    ops += [0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91]  # ldx, ldxs
    ops += [0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73, 0x7B]  # st, stx
    ops += [0xC3, 0xDB]  # atomics
    return ops


VALID_OPCODES = _valid_opcodes()
INTERESTING_IMMS = [
    0,
    1,
    2,
    5,
    8,
    16,
    32,
    48,
    63,
    64,
    -1,
    -8,
    0x7FFF_FFFF,
    -(1 << 31),
    0x40,
    0x41,
    0x50,
    0x51,
    0xA0,
    0xA1,
    0xE1,
    0xF1,
]


@st.composite
def instruction(draw: st.DrawFn) -> bytes:
    opcode = draw(st.one_of(st.sampled_from(VALID_OPCODES), st.integers(0, 255)))
    dst = draw(st.one_of(st.sampled_from([0, 1, 2, 10]), st.integers(0, 15)))
    src = draw(st.one_of(st.sampled_from([0, 1, 2, 10]), st.integers(0, 15)))
    off = draw(st.one_of(st.integers(-8, 8), st.sampled_from([-512, -8, 8, 0x7FFF, -0x8000])))
    imm = draw(st.one_of(st.sampled_from(INTERESTING_IMMS), st.integers(-(1 << 31), (1 << 31) - 1)))
    encoded = struct.pack("<BBhi", opcode, (src << 4) | dst, off, imm)
    if opcode == 0x18 and draw(st.booleans()):
        encoded += struct.pack("<BBhi", 0, 0, 0, draw(st.integers(-(1 << 31), (1 << 31) - 1)))
    return encoded


structured_programs = st.lists(instruction(), min_size=0, max_size=24).map(
    lambda insns: b"".join(insns) + struct.pack("<BBhi", 0x95, 0, 0, 0)
)
word_programs = st.lists(st.binary(min_size=8, max_size=8), max_size=32).map(b"".join)
memories = st.one_of(st.none(), st.binary(max_size=128))


# --- properties --------------------------------------------------------------


def fuzz_properties(check: Callable[[bytes, bytes | None], None]) -> tuple[Any, ...]:
    """The fuzz properties, each feeding its inputs to ``check``; a test module
    binds them to ``test_*`` names (this one with the default engine, the JIT
    module with the JIT)."""

    @FUZZ
    @given(code=st.binary(max_size=300), mem=memories)
    def random_bytes(code: bytes, mem: bytes | None) -> None:
        check(code, mem)

    @FUZZ
    @given(code=word_programs, mem=memories)
    def random_whole_instructions(code: bytes, mem: bytes | None) -> None:
        check(code, mem)

    @FUZZ
    @given(code=structured_programs, mem=memories)
    def random_plausible_programs(code: bytes, mem: bytes | None) -> None:
        check(code, mem)

    @FUZZ
    @given(data=st.data())
    def bit_flipped_conformance_programs(data: st.DataObject) -> None:
        code, mem = data.draw(st.sampled_from(CORPUS))
        flips = data.draw(st.lists(st.integers(0, len(code) * 8 - 1), min_size=1, max_size=8))
        mutated = bytearray(code)
        for bit in flips:
            mutated[bit // 8] ^= 1 << (bit % 8)
        check(bytes(mutated), mem)

    @FUZZ
    @given(data=st.data())
    def conformance_programs_on_random_memory(data: st.DataObject) -> None:
        code, mem = data.draw(st.sampled_from(CORPUS))
        random_mem = data.draw(st.one_of(st.none(), st.binary(max_size=2 * len(mem or b"") + 16)))
        check(code, random_mem)

    return (
        random_bytes,
        random_whole_instructions,
        random_plausible_programs,
        bit_flipped_conformance_programs,
        conformance_programs_on_random_memory,
    )


(
    test_random_bytes,
    test_random_whole_instructions,
    test_random_plausible_programs,
    test_bit_flipped_conformance_programs,
    test_conformance_programs_on_random_memory,
) = fuzz_properties(exercise)


@FUZZ
@given(data=st.data())
def test_spliced_conformance_programs(data: st.DataObject) -> None:
    """Instructions from two programs glued together (breaks jump targets, lddw pairs)."""
    first, mem = data.draw(st.sampled_from(CORPUS))
    second, _ = data.draw(st.sampled_from(CORPUS))
    cut1 = data.draw(st.integers(0, len(first) // 8)) * 8
    cut2 = data.draw(st.integers(0, len(second) // 8)) * 8
    exercise(first[:cut1] + second[cut2:], mem)


ASM_WORDS = [
    "mov",
    "add32",
    "lddw",
    "ldxb",
    "stxdw",
    "ja",
    "jne32",
    "call",
    "local",
    "exit",
    "lock",
    "fetch",
    "cmpxchg",
    "be16",
    "neg",
    "%r0",
    "%r1",
    "%r10",
    "%r11",
    "%r16",
    "[%r1+4]",
    "[%r10-8]",
    "[%r1",
    "0x10",
    "-1",
    "+2",
    "0xffffffffffffffffff",
    "lbl:",
    "lbl",
    ",",
    "#",
    "exit:",
    "\n",
    "\n",
    "\n",
]


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200), st.lists(st.sampled_from(ASM_WORDS), max_size=40).map(" ".join)
    )
)
def test_assembler_never_fails_otherwise(text: str) -> None:
    try:
        code = ebpfvm.assemble(text)
    except ebpfvm.AssemblerError as exc:
        assert exc.line is None or exc.line >= 1
        return
    assert isinstance(code, bytes) and len(code) % 8 == 0
    exercise(code, None)


@FUZZ
@given(code=st.one_of(st.binary(max_size=200), structured_programs))
def test_disassembler_never_fails_otherwise(code: bytes) -> None:
    try:
        text = ebpfvm.disassemble(code)
    except ebpfvm.Error:
        return
    assert isinstance(text, str)
