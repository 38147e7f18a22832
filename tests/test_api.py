"""The Python API contract of ebpfvm: programs, loading, running, helpers, errors."""

from __future__ import annotations

import array
import ctypes
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cffi
import ebpfvm
import numpy as np
import pytest

U64_MASK = (1 << 64) - 1
INT64_MIN = 1 << 63


def insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """Encode one 8-byte instruction (RFC 9669 layout, little-endian)."""
    return struct.pack("<BBhI", op, (src << 4) | dst, off, imm & 0xFFFF_FFFF)


EXIT = insn(0x95)
MOV_R0_0 = insn(0xB7)


def run_asm(text: str, mem: Any = None, *, verify: bool = False, **load_args: Any) -> int:
    """Runs ``text`` once, in checked mode unless ``verify``: most tests here
    check what any bytecode does (memory conventions, faults, budgets, RFC 9669
    arithmetic, helpers with ids the verifier has no prototype for)."""
    return ebpfvm.Program.from_asm(text).load(verify=verify, **load_args).run(mem)


def asm_lines(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Error hierarchy and the attributes errors carry
# ---------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(ebpfvm.Error, Exception)
    for cls in (
        ebpfvm.AssemblerError,
        ebpfvm.ProgramError,
        ebpfvm.ExecutionError,
        ebpfvm.VerifierError,
        ebpfvm.ElfError,
        ebpfvm.MapError,
    ):
        assert issubclass(cls, ebpfvm.Error), cls
        assert cls is not ebpfvm.Error


def test_assembler_error_line() -> None:
    text = "# a comment line\n\nmov %r0, 1\nfrobnicate %r0, 2\nexit\n"
    with pytest.raises(ebpfvm.AssemblerError) as info:
        ebpfvm.assemble(text)
    assert info.value.line == 4


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("mov %r0, 1\nja nowhere\nexit\n", 2),  # undefined label
        ("ldxb %r0, [%r1+40000]\nexit\n", 1),  # offset beyond 16 bits
        ("mov %r0, 1\nexit\nmov %r99, 1\n", 3),  # no such register
        ("mov %r0\nexit\n", 1),  # missing operand
    ],
)
def test_assembler_errors(text: str, line: int) -> None:
    with pytest.raises(ebpfvm.AssemblerError) as info:
        ebpfvm.assemble(text)
    assert info.value.line == line
    assert isinstance(info.value, ebpfvm.Error)


def test_assembler_accepts_invalid_registers_for_error_tests() -> None:
    # FORMAT.md §4: %r11..%r15 assemble, so that invalid-register tests can be written.
    assert ebpfvm.assemble("mov %r11, 1\n") == insn(0xB7, dst=11, imm=1)
    assert ebpfvm.assemble("mov %r0, %r11\n") == insn(0xBF, dst=0, src=11)


def test_assemble_disassemble() -> None:
    code = ebpfvm.assemble(asm_lines("mov %r0, 1", "add %r0, 2", "exit"))
    assert code == insn(0xB7, imm=1) + insn(0x07, imm=2) + EXIT
    text = ebpfvm.disassemble(code)
    assert isinstance(text, str)
    assert "exit" in text and "mov" in text and "add" in text


# ---------------------------------------------------------------------------
# Program: structural checks at construction
# ---------------------------------------------------------------------------


def test_program_basics() -> None:
    code = insn(0xB7, imm=7) + insn(0x18, imm=1) + insn(0) + EXIT
    program = ebpfvm.Program(code)
    assert len(program) == 4  # slots: lddw takes two
    assert program.code == code
    assert isinstance(program.code, bytes)
    from_asm = ebpfvm.Program.from_asm("mov %r0, 7\nlddw %r0, 1\nexit\n")
    assert from_asm.code == code
    assert ebpfvm.MAX_PROGRAM_LEN == 65536


STRUCTURAL_ERRORS: list[tuple[str, bytes, int | None]] = [
    ("unknown opcode", MOV_R0_0 + insn(0xFF) + EXIT, 1),
    ("bad destination register", insn(0xB7, dst=11, imm=1) + EXIT, 0),
    ("bad source register", insn(0xBF, dst=0, src=12) + EXIT, 0),
    ("write to r10 (mov)", insn(0xB7, dst=10, imm=1) + MOV_R0_0 + EXIT, 0),
    ("write to r10 (ldx)", MOV_R0_0 + insn(0x79, dst=10, src=1) + EXIT, 1),
    ("lddw in the last slot", MOV_R0_0 + EXIT + insn(0x18, imm=1), 2),
    ("jump out of range forward", insn(0x05, off=5) + EXIT, 0),
    ("jump out of range backward", MOV_R0_0 + insn(0x05, off=-3) + EXIT, 1),
    ("jump into lddw second half", insn(0x05, off=1) + insn(0x18, imm=1) + insn(0) + EXIT, 0),
    ("ja -1", MOV_R0_0 + insn(0x05, off=-1) + EXIT, 1),
    ("invalid endian width", insn(0xDC, imm=48) + EXIT, 0),
    ("local call out of range", insn(0x85, src=1, imm=100) + EXIT, 0),
]


@pytest.mark.parametrize(
    ("code", "pc"), [pytest.param(code, pc, id=name) for name, code, pc in STRUCTURAL_ERRORS]
)
def test_program_structural_errors(code: bytes, pc: int | None) -> None:
    with pytest.raises(ebpfvm.ProgramError) as info:
        ebpfvm.Program(code)
    assert info.value.pc == pc
    assert isinstance(info.value.reason, str) and info.value.reason


@pytest.mark.parametrize("src", [1, 2, 3, 4, 5, 6])
def test_map_lddw_without_maps(src: int) -> None:
    # The contract lists this among Program()'s checks; rejecting it at load() (where
    # the maps would be bound) is accepted too.  It must never run.
    code = MOV_R0_0 + insn(0x18, dst=1, src=src, imm=0) + insn(0) + EXIT
    with pytest.raises(ebpfvm.ProgramError) as info:
        ebpfvm.Program(code).load()
    assert info.value.pc == 1


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            insn(0x18, imm=1) + insn(0x07, imm=1) + EXIT, id="lddw second slot not zero opcode"
        ),
        pytest.param(insn(0x18, imm=1) + insn(0, dst=1) + EXIT, id="lddw second slot has dst"),
        pytest.param(insn(0x18, imm=1) + insn(0, off=1) + EXIT, id="lddw second slot has offset"),
    ],
)
def test_invalid_lddw_second_half(code: bytes) -> None:
    with pytest.raises(ebpfvm.ProgramError) as info:
        ebpfvm.Program(code)
    assert info.value.pc in (0, 1)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(b"", id="empty"),
        pytest.param(EXIT[:5], id="not whole instructions"),
        pytest.param(MOV_R0_0 + EXIT + b"\x95", id="trailing byte"),
        pytest.param(MOV_R0_0, id="does not end in exit"),
        pytest.param(insn(0x15, imm=0, off=1) + MOV_R0_0, id="conditional jump falls off the end"),
    ],
)
def test_program_rejects_malformed(code: bytes) -> None:
    with pytest.raises(ebpfvm.ProgramError):
        ebpfvm.Program(code)


def test_jump_across_functions() -> None:
    text = asm_lines("mov %r0, 0", "call local f", "exit", "f:", "ja -3", "exit")
    with pytest.raises(ebpfvm.ProgramError) as info:
        ebpfvm.Program.from_asm(text)
    assert info.value.pc == 3


def test_loop_that_is_not_a_self_jump_is_accepted() -> None:
    program = ebpfvm.Program.from_asm(asm_lines("mov %r0, 0", "add %r0, 1", "ja -2"))
    assert len(program) == 3


def test_program_length_limit() -> None:
    limit = ebpfvm.MAX_PROGRAM_LEN
    ok = MOV_R0_0 * (limit - 1) + EXIT
    assert len(ebpfvm.Program(ok)) == limit
    with pytest.raises(ebpfvm.ProgramError):
        ebpfvm.Program(MOV_R0_0 * limit + EXIT)


# ---------------------------------------------------------------------------
# load(): options
# ---------------------------------------------------------------------------


def test_load_unknown_helper_is_a_program_error_at_load() -> None:
    program = ebpfvm.Program.from_asm(asm_lines("mov %r0, 0", "call 42", "exit"))
    with pytest.raises(ebpfvm.ProgramError) as info:
        program.load()
    assert info.value.pc == 1
    with pytest.raises(ebpfvm.ProgramError):
        program.load(helpers={41: lambda *a: 0})
    assert program.load(helpers={42: lambda *a: 9}).run(None) == 9


@pytest.mark.parametrize("engine", ["interpreter", "jit", "auto"])
def test_verify_true_proves_or_refuses(engine: str) -> None:
    safe = ebpfvm.Program.from_asm("ldxw %r0, [%r1+4]\nexit\n")
    exe = safe.load(engine=engine, verify=True, input_size=8)
    assert exe.verified
    assert exe.run(bytes(range(8))) == 0x07060504
    # Proven for 8 bytes: a shorter input is refused, not run unchecked.
    with pytest.raises(ebpfvm.ExecutionError, match="verified for"):
        exe.run(bytes(4))
    with pytest.raises(ebpfvm.ExecutionError, match="verified for"):
        exe.run_batch([bytes(8), bytes(4)])
    # Reading past what the verifier may assume is refused at load.
    unsafe = ebpfvm.Program.from_asm("ldxw %r0, [%r1+8]\nexit\n")
    with pytest.raises(ebpfvm.VerifierError) as info:
        unsafe.load(engine=engine, verify=True, input_size=8)
    assert info.value.pc == 0
    assert not unsafe.load(engine=engine, verify=False).verified


@pytest.mark.parametrize("engine", ["interpreter", "jit", "auto"])
def test_verify_true_raw_input_is_bounded_by_its_length(engine: str) -> None:
    # Reads guarded by a length check are proven for any input length.
    guarded = ebpfvm.Program.from_asm("mov %r0, 0\njlt %r2, 8, +1\nldxdw %r0, [%r1+0]\nexit\n")
    exe = guarded.load(engine=engine, verify=True)
    assert exe.run(bytes(range(8))) == 0x0706050403020100
    assert exe.run(bytes(3)) == 0
    assert exe.run(bytes(range(100))) == 0x0706050403020100
    # The same read without the check is refused, naming the length.
    unguarded = ebpfvm.Program.from_asm("ldxdw %r0, [%r1+0]\nexit\n")
    with pytest.raises(ebpfvm.VerifierError, match="the input may be only 0 bytes long"):
        unguarded.load(engine=engine, verify=True)
    # A loop over the whole input: summing its bytes up to r1 + r2.
    loop = ebpfvm.Program.from_asm(
        "\n".join(
            [
                "mov %r0, 0",
                "mov %r3, %r1",
                "add %r3, %r2",  # r3 = end of input
                "mov %r4, %r1",
                "mov %r5, %r4",  # loop: r5 = r4 + 1
                "add %r5, 1",
                "jgt %r5, %r3, +4",
                "ldxb %r6, [%r4+0]",
                "add %r0, %r6",
                "add %r4, 1",
                "ja -7",
                "exit",
            ]
        )
        + "\n"
    )
    # Unbounded inputs: the loop cannot be proven to end.
    with pytest.raises(ebpfvm.VerifierError, match="too large"):
        loop.verify(max_insns=20_000)
    exe = loop.load(engine=engine, verify=True, max_input_size=64)
    assert exe.run(bytes(range(64))) == sum(range(64))
    assert exe.run(b"") == 0
    with pytest.raises(ebpfvm.ExecutionError, match="longer than the 64 bytes"):
        exe.run(bytes(65))
    with pytest.raises(ebpfvm.ExecutionError, match="longer than the 64 bytes"):
        exe.run_batch([bytes(10), bytes(65)])
    with pytest.raises(ValueError, match="larger than max_input_size"):
        loop.load(engine=engine, verify=True, input_size=65, max_input_size=64)


@pytest.mark.parametrize("engine", ["interpreter", "jit", "auto"])
def test_load_verifies_by_default(engine: str) -> None:
    guarded = ebpfvm.Program.from_asm("mov %r0, 0\njlt %r2, 4, +1\nldxw %r0, [%r1+0]\nexit\n")
    exe = guarded.load(engine=engine)
    assert exe.verified
    assert exe.run(bytes([1, 0, 0, 0])) == 1
    assert exe.run(bytes(2)) == 0
    # A program the verifier refuses is refused at load, and the error says how
    # to run it anyway; .message stays the verifier's own.
    unguarded = ebpfvm.Program.from_asm("ldxw %r0, [%r1+0]\nexit\n")
    with pytest.raises(ebpfvm.VerifierError, match="load it with verify=False") as info:
        unguarded.load(engine=engine)
    assert info.value.pc == 0
    assert "the input may be only 0 bytes long" in info.value.message
    assert "verify=False" not in info.value.message
    assert "checked mode" in str(info.value)
    # verify=False is checked mode, as before.
    exe = unguarded.load(engine=engine, verify=False)
    assert not exe.verified
    assert exe.run(bytes([2, 0, 0, 0])) == 2
    with pytest.raises(ebpfvm.ExecutionError) as fault:
        exe.run(bytes(2))
    assert fault.value.kind == "out_of_bounds"
    # Program.verify() is for asking, not loading: no advice in its errors.
    with pytest.raises(ebpfvm.VerifierError) as asked:
        unguarded.verify()
    assert "verify=False" not in str(asked.value)


def test_unwind_helper_without_verify_means_checked_mode() -> None:
    program = ebpfvm.Program.from_asm("mov %r1, 0\ncall 5\nmov %r0, 2\nexit\n")
    helpers = {5: lambda *a: a[0]}
    exe = program.load(helpers=helpers, unwind_helper=5)
    assert not exe.verified
    assert exe.run(None) == 0
    assert not program.load(helpers=helpers, unwind_helper=5, verify=False).verified
    with pytest.raises(ValueError, match="load with verify=False"):
        program.load(helpers=helpers, unwind_helper=5, verify=True)
    with pytest.raises(ValueError, match="no use with verify=False"):
        program.load(helpers=helpers, unwind_helper=5, input_size=4)


def test_custom_helpers_under_the_verifier() -> None:
    # A custom helper replaces the kernel helper of its id and is checked against
    # that prototype: a number-returning one (7: get_prandom_u32) is verified.
    exe = ebpfvm.Program.from_asm("call 7\nexit\n").load(helpers={7: lambda *a: 41})
    assert exe.verified and exe.run(None) == 41
    refusals = [
        # No prototype: nothing to check the call against.
        ("call 3000", 3000, "has no prototype the verifier knows"),
        # bpf_map_lookup_elem: compiled code would dereference what it returns.
        ("mov %r1, 0\nmov %r2, 0\ncall 1", 1, "bpf_map_lookup_elem, whose result the verifier"),
        # bpf_msg_pull_data: not for raw programs.
        ("call 63", 63, "bpf_msg_pull_data, which raw programs may not call"),
    ]
    for call, helper_id, why in refusals:
        program = ebpfvm.Program.from_asm(f"mov %r0, 0\n{call}\nexit\n")
        calls_at = len(program) - 2
        with pytest.raises(ebpfvm.VerifierError, match=why) as info:
            program.load(helpers={helper_id: lambda *a: 9})
        assert info.value.pc == calls_at
        assert f"helper #{helper_id} given with helpers=" in info.value.message or (
            f"helper #{helper_id} was given with helpers=" in info.value.message
        )
        assert "load it with verify=False" in str(info.value)
        exe = program.load(helpers={helper_id: lambda *a: 9}, verify=False)
        assert not exe.verified and exe.run(None) == 9
    # A call the kernel prototype refuses names the prototype it was checked
    # against (4: probe_read takes a bounded size in r2).
    program = ebpfvm.Program.from_asm("mov %r1, 0\ncall 4\nexit\n")
    with pytest.raises(ebpfvm.VerifierError, match="prototype of the kernel's bpf_probe_read"):
        program.load(helpers={4: lambda *a: 0})


def test_unknown_engine() -> None:
    program = ebpfvm.Program.from_asm("mov %r0, 1\nexit\n")
    with pytest.raises(ebpfvm.Error):
        program.load(engine="no-such-engine")
    assert program.load(engine="interpreter").run(None) == 1


def test_executable_is_reusable_and_independent() -> None:
    program = ebpfvm.Program.from_asm(
        asm_lines("ldxb %r0, [%r1]", "add %r0, 1", "stb [%r1], 0", "exit")
    )
    first = program.load(verify=False)
    second = program.load(verify=False)
    for executable in (first, second, first):
        buf = bytearray([41])
        assert executable.run(buf) == 42
        assert buf == bytearray([0])


# ---------------------------------------------------------------------------
# run(): memory conventions
# ---------------------------------------------------------------------------

STORE_AND_LEN = asm_lines("stb [%r1+2], 0x55", "mov %r0, %r2", "exit")


def test_bytearray_is_modified_in_place() -> None:
    buf = bytearray(8)
    assert run_asm(STORE_AND_LEN, buf) == 8
    assert buf == bytearray([0, 0, 0x55, 0, 0, 0, 0, 0])


def test_bytes_are_copied() -> None:
    data = bytes(8)
    assert run_asm(STORE_AND_LEN, data) == 8
    assert data == bytes(8)
    # The program may scribble on its copy and read it back.
    assert run_asm(asm_lines("stb [%r1+3], 0x77", "ldxb %r0, [%r1+3]", "exit"), b"\x00" * 4) == 0x77


def test_none_memory_gives_zero_r1_r2() -> None:
    assert run_asm("mov %r0, %r1\nexit\n", None) == 0
    assert run_asm("mov %r0, %r2\nexit\n", None) == 0


def test_r1_is_the_buffer_address() -> None:
    buf = bytearray(16)
    view = (ctypes.c_char * len(buf)).from_buffer(buf)
    address = ctypes.addressof(view)
    try:
        assert run_asm("mov %r0, %r1\nexit\n", buf) == address
    finally:
        del view


def test_memoryview_slice_in_place() -> None:
    buf = bytearray(16)
    view = memoryview(buf)[4:12]
    assert run_asm(STORE_AND_LEN, view) == 8
    assert buf[6] == 0x55 and buf.count(0) == 15


def test_numpy_arrays_in_place() -> None:
    arr = np.zeros(8, dtype=np.uint8)
    assert run_asm(STORE_AND_LEN, arr) == 8
    assert arr[2] == 0x55
    words = np.zeros(4, dtype=np.uint32)
    assert run_asm(asm_lines("stw [%r1+4], 7", "mov %r0, %r2", "exit"), words) == words.nbytes == 16
    assert words.tolist() == [0, 7, 0, 0]


def test_array_module_buffer_in_place() -> None:
    arr = array.array("B", bytes(8))
    assert run_asm(STORE_AND_LEN, arr) == 8
    assert arr[2] == 0x55


def test_result_is_unsigned_64() -> None:
    assert run_asm("lddw %r0, 0xffffffffffffffff\nexit\n") == U64_MASK
    assert run_asm("mov %r0, -1\nexit\n") == U64_MASK
    assert run_asm("mov32 %r0, -1\nexit\n") == 0xFFFF_FFFF


def test_run_rejects_non_buffers() -> None:
    executable = ebpfvm.Program.from_asm("mov %r0, 1\nexit\n").load()
    with pytest.raises((TypeError, ebpfvm.Error)):
        executable.run(12345)


# ---------------------------------------------------------------------------
# Runtime faults (checked mode)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mem", "pc"),
    [
        (asm_lines("mov %r0, 0", "stb [%r1+8], 1", "exit"), bytearray(8), 1),
        (asm_lines("ldxw %r0, [%r1+6]", "exit"), bytearray(8), 0),  # straddles the end
        (asm_lines("ldxb %r0, [%r1-1]", "exit"), bytearray(8), 0),
        (asm_lines("ldxb %r0, [%r1]", "exit"), None, 0),  # no memory: r1 = 0
        (
            asm_lines("mov %r0, 0", "mov %r1, 0", "stdw [%r10-520], 1", "exit"),
            None,
            2,
        ),  # below the stack
        (asm_lines("stb [%r10], 0", "exit"), None, 0),  # just above the stack
    ],
)
def test_out_of_bounds(text: str, mem: bytearray | None, pc: int) -> None:
    snapshot = bytes(mem) if mem is not None else None
    with pytest.raises(ebpfvm.ExecutionError) as info:
        run_asm(text, mem)
    error = info.value
    assert error.kind == "out_of_bounds"
    assert error.pc == pc
    assert isinstance(error.reason, str) and error.reason
    if mem is not None:
        assert bytes(mem) == snapshot  # the faulting store wrote nothing


def test_stack_is_512_bytes() -> None:
    text = asm_lines("stdw [%r10-512], 456", "ldxdw %r0, [%r10-512]", "exit")
    assert run_asm(text) == 456


def test_budget_exhausted() -> None:
    program = ebpfvm.Program.from_asm(asm_lines("mov %r0, 0", "add %r0, 1", "ja -2"))
    executable = program.load(verify=False, max_instructions=1000)
    with pytest.raises(ebpfvm.ExecutionError) as info:
        executable.run(None)
    assert info.value.kind == "budget_exhausted"
    assert info.value.pc in (0, 1, 2)


def test_budget_is_a_maximum() -> None:
    text = asm_lines("mov %r0, 0", "add %r0, 1", "jne %r0, 10, -2", "exit")
    program = ebpfvm.Program.from_asm(text)
    r0, executed = program.load(verify=False).run_counted(None)
    assert (r0, executed) == (10, 1 + 10 * 2 + 1)
    assert program.load(verify=False, max_instructions=executed).run(None) == 10
    # The budget may be checked at branches rather than on every instruction, so
    # a budget just below the count can still let the program finish; half of it
    # cannot.
    with pytest.raises(ebpfvm.ExecutionError) as info:
        program.load(verify=False, max_instructions=executed // 2).run(None)
    assert info.value.kind == "budget_exhausted"


def test_default_budget_stops_infinite_loop() -> None:
    executable = ebpfvm.Program.from_asm(asm_lines("mov %r0, 0", "add %r0, 1", "ja -2")).load(
        verify=False
    )
    with pytest.raises(ebpfvm.ExecutionError) as info:
        executable.run(None)
    assert info.value.kind == "budget_exhausted"


def test_call_depth() -> None:
    text = asm_lines(
        "mov %r0, 0", "call local f", "exit", "f:", "add %r0, 1", "call local f", "exit"
    )
    with pytest.raises(ebpfvm.ExecutionError) as info:
        run_asm(text)
    assert info.value.kind == "call_depth"
    assert info.value.pc == 4  # the recursive `call local f`


def test_local_calls_work_below_the_limit() -> None:
    text = asm_lines(
        "mov %r6, 6",
        "mov %r1, 20",
        "call local f",
        "add %r0, %r6",
        "exit",
        "f:",
        "mov %r6, %r1",  # clobbers the caller's r6, which the call must restore
        "call local g",
        "add %r0, %r6",
        "exit",
        "g:",
        "mov %r0, 100",
        "exit",
    )
    assert run_asm(text) == 100 + 20 + 6


def test_callx_unknown_helper_at_runtime() -> None:
    program = ebpfvm.Program.from_asm(asm_lines("mov %r2, 99", "call %r2", "exit"))
    executable = program.load(verify=False, helpers={5: lambda *a: a[0]})
    with pytest.raises(ebpfvm.ExecutionError) as info:
        executable.run(None)
    assert info.value.kind == "unknown_helper"
    assert info.value.pc == 1


def test_executable_survives_a_fault() -> None:
    executable = ebpfvm.Program.from_asm(asm_lines("ldxb %r0, [%r1+3]", "exit")).load(verify=False)
    with pytest.raises(ebpfvm.ExecutionError):
        executable.run(bytearray(2))
    assert executable.run(bytearray([0, 0, 0, 9])) == 9


# ---------------------------------------------------------------------------
# Arithmetic edge cases (RFC 9669 semantics)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (asm_lines("mov %r0, 7", "div %r0, 0", "exit"), 0),
        (asm_lines("mov %r0, 7", "mov %r1, 0", "div %r0, %r1", "exit"), 0),
        (asm_lines("mov %r0, 7", "mov %r1, 0", "div32 %r0, %r1", "exit"), 0),
        (asm_lines("mov %r0, 7", "mod %r0, 0", "exit"), 7),
        (asm_lines("mov %r0, 7", "mov %r1, 0", "mod %r0, %r1", "exit"), 7),
        # 32-bit modulo by zero keeps dst but zero-extends it
        (asm_lines("lddw %r0, 0x100000007", "mov %r1, 0", "mod32 %r0, %r1", "exit"), 7),
        (asm_lines("mov %r0, -7", "mov %r1, 0", "sdiv %r0, %r1", "exit"), 0),
        (asm_lines("mov %r0, -7", "mov %r1, 0", "smod %r0, %r1", "exit"), U64_MASK - 6),
        (asm_lines("lddw %r0, 0x8000000000000000", "sdiv %r0, -1", "exit"), INT64_MIN),
        (asm_lines("lddw %r0, 0x8000000000000000", "smod %r0, -1", "exit"), 0),
        (asm_lines("mov32 %r0, 0x80000000", "sdiv32 %r0, -1", "exit"), 0x8000_0000),
        (asm_lines("mov32 %r0, 0x80000000", "smod32 %r0, -1", "exit"), 0),
        (asm_lines("mov %r0, -7", "sdiv %r0, 2", "exit"), U64_MASK - 2),  # truncates: -3
        (asm_lines("mov %r0, -7", "smod %r0, 2", "exit"), U64_MASK),  # -1
        (asm_lines("mov %r0, 1", "lsh32 %r0, 60", "exit"), 1 << 28),  # shift count masked
    ],
)
def test_arithmetic_semantics(text: str, expected: int) -> None:
    assert run_asm(text) == expected


# ---------------------------------------------------------------------------
# run_counted
# ---------------------------------------------------------------------------


def test_run_counted() -> None:
    assert ebpfvm.Program.from_asm("mov %r0, 1\nexit\n").load().run_counted(None) == (1, 2)
    # lddw is one instruction although it takes two slots
    assert ebpfvm.Program.from_asm("lddw %r0, 5\nexit\n").load().run_counted(None) == (5, 2)
    executable = ebpfvm.Program.from_asm(asm_lines("ldxb %r0, [%r1]", "exit")).load(verify=False)
    buf = bytearray([3])
    assert executable.run_counted(buf) == (3, 2)
    assert executable.run(buf) == 3


def test_run_counted_counts_taken_branches() -> None:
    text = asm_lines(
        "mov %r0, 0", "mov %r1, 5", "add %r0, %r1", "sub %r1, 1", "jne %r1, 0, -3", "exit"
    )
    r0, executed = ebpfvm.Program.from_asm(text).load().run_counted(None)
    assert r0 == 5 + 4 + 3 + 2 + 1
    assert executed == 2 + 5 * 3 + 1


# ---------------------------------------------------------------------------
# Python helpers
# ---------------------------------------------------------------------------

CALL_7_WITH_ARGS = asm_lines(
    "mov %r1, 1", "mov %r2, 2", "mov %r3, 3", "mov %r4, 4", "mov %r5, -1", "call 7", "exit"
)


def test_python_helper_arguments_and_result() -> None:
    seen: list[tuple[int, ...]] = []

    def helper(*args: int) -> int:
        seen.append(args)
        return 1234

    assert run_asm(CALL_7_WITH_ARGS, helpers={7: helper}) == 1234
    assert seen == [(1, 2, 3, 4, U64_MASK)]


@pytest.mark.parametrize(
    ("value", "expected"), [(-1, U64_MASK), (-2, U64_MASK - 1), ((1 << 64) + 5, 5), (0, 0)]
)
def test_python_helper_result_is_masked(value: int, expected: int) -> None:
    assert run_asm(CALL_7_WITH_ARGS, helpers={7: lambda *a: value}) == expected


def test_helper_preserves_callee_saved_registers() -> None:
    text = asm_lines(
        "mov %r6, 6",
        "mov %r7, 7",
        "mov %r8, 8",
        "mov %r9, 9",
        "call 1",
        "mov %r0, %r6",
        "add %r0, %r7",
        "add %r0, %r8",
        "add %r0, %r9",
        "exit",
    )
    assert run_asm(text, helpers={1: lambda *a: 1000}) == 30


def test_helper_exception_propagates_as_itself() -> None:
    class Boom(Exception):
        pass

    boom = Boom("from the helper")

    def helper(*args: int) -> int:
        raise boom

    executable = ebpfvm.Program.from_asm(CALL_7_WITH_ARGS).load(helpers={7: helper})
    with pytest.raises(Boom) as info:
        executable.run(None)
    assert info.value is boom
    # Built-in exception types too, and the executable still works afterwards.
    calls = []

    def flaky(*args: int) -> int:
        calls.append(args)
        if len(calls) == 1:
            raise KeyError("first call")
        return 5

    executable = ebpfvm.Program.from_asm(CALL_7_WITH_ARGS).load(helpers={7: flaky})
    with pytest.raises(KeyError):
        executable.run(None)
    assert executable.run(None) == 5


def test_helper_returning_non_int() -> None:
    executable = ebpfvm.Program.from_asm(CALL_7_WITH_ARGS).load(helpers={7: lambda *a: "nope"})
    with pytest.raises((TypeError, ebpfvm.Error)):
        executable.run(None)


def test_unwind_helper() -> None:
    stop = asm_lines("mov %r1, 0", "call 5", "mov %r0, 2", "exit")
    go_on = asm_lines("mov %r1, 3", "call 5", "mov %r0, 2", "exit")
    helpers: dict[int, Callable[..., int]] = {5: lambda r1, r2, r3, r4, r5: r1}
    assert run_asm(stop, helpers=helpers, unwind_helper=5) == 0
    assert run_asm(go_on, helpers=helpers, unwind_helper=5) == 2
    assert run_asm(stop, helpers=helpers) == 2  # without the rule, 0 is just a value


# ---------------------------------------------------------------------------
# Memory helpers (ebpfvm.Helper(func, memory=True)) and VMMemory
# ---------------------------------------------------------------------------


def test_memory_helper_reads_and_writes_input_buffer() -> None:
    def frob(mem: ebpfvm.VMMemory, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        data = mem.read(r1, r2)
        mem.write(r1, bytes(b ^ 0xFF for b in data))
        return sum(data)

    buf = bytearray([1, 2, 3])
    result = run_asm("call 9\nexit\n", buf, helpers={9: ebpfvm.Helper(frob, memory=True)})
    assert result == 6
    assert buf == bytearray([0xFE, 0xFD, 0xFC])


def test_memory_helper_on_the_stack() -> None:
    text = asm_lines(
        "mov %r1, 0x44434241",
        "stxw [%r10-8], %r1",
        "stw [%r10-4], 0",
        "mov %r1, %r10",
        "add %r1, -8",
        "mov %r2, 8",
        "call 9",
        "ldxdw %r0, [%r10-8]",
        "exit",
    )
    seen: list[bytes] = []

    def helper(mem: ebpfvm.VMMemory, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        seen.append(mem.read(r1, r2))
        seen.append(mem.read_cstr(r1))
        mem.write(r1, b"\x11" * 8)
        return 0

    assert run_asm(text, helpers={9: ebpfvm.Helper(helper, memory=True)}) == 0x1111_1111_1111_1111
    assert seen == [b"ABCD\x00\x00\x00\x00", b"ABCD"]


def test_memory_helper_read_cstr_max() -> None:
    seen: list[bytes] = []

    def helper(mem: ebpfvm.VMMemory, r1: int, *rest: int) -> int:
        seen.append(mem.read_cstr(r1, max=3))
        return 0

    run_asm(
        "call 9\nexit\n", bytearray(b"hello\x00"), helpers={9: ebpfvm.Helper(helper, memory=True)}
    )
    assert len(seen) == 1 and seen[0] in (b"hel", b"he")


@pytest.mark.parametrize(
    "access",
    [
        pytest.param(lambda mem, r1, r2: mem.read(0, 1), id="read null"),
        pytest.param(lambda mem, r1, r2: mem.read(r1, r2 + 1), id="read past end"),
        pytest.param(lambda mem, r1, r2: mem.read(r1 - 1, 1), id="read before start"),
        pytest.param(lambda mem, r1, r2: mem.write(r1 + r2, b"x"), id="write past end"),
        pytest.param(lambda mem, r1, r2: mem.read(r1, 1 << 62), id="huge read"),
        pytest.param(lambda mem, r1, r2: mem.read((1 << 64) - 1, 2), id="wrapping read"),
        pytest.param(lambda mem, r1, r2: mem.read_cstr(r1), id="unterminated string"),
    ],
)
def test_memory_helper_bad_address(access: Callable[[Any, int, int], object]) -> None:
    def helper(mem: ebpfvm.VMMemory, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        access(mem, r1, r2)
        return 0

    buf = bytearray(b"abcd")
    executable = ebpfvm.Program.from_asm("call 9\nexit\n").load(
        verify=False, helpers={9: ebpfvm.Helper(helper, memory=True)}
    )
    with pytest.raises(ebpfvm.ExecutionError):
        executable.run(buf)
    assert buf == bytearray(b"abcd")


def test_memory_helper_can_catch_bad_address() -> None:
    def helper(mem: ebpfvm.VMMemory, r1: int, *rest: int) -> int:
        try:
            mem.read(0, 8)
        except ebpfvm.ExecutionError:
            return 7
        return 0

    assert (
        run_asm("call 9\nexit\n", bytearray(4), helpers={9: ebpfvm.Helper(helper, memory=True)})
        == 7
    )


def test_vm_memory_unusable_after_call() -> None:
    kept: list[ebpfvm.VMMemory] = []
    address: list[int] = []

    def helper(mem: ebpfvm.VMMemory, r1: int, *rest: int) -> int:
        kept.append(mem)
        address.append(r1)
        return mem.read(r1, 1)[0]

    buf = bytearray(b"\x05\x06")
    assert run_asm("call 9\nexit\n", buf, helpers={9: ebpfvm.Helper(helper, memory=True)}) == 5
    (mem,) = kept
    with pytest.raises(ebpfvm.Error):
        mem.read(address[0], 1)
    with pytest.raises(ebpfvm.Error):
        mem.write(address[0], b"\x00")
    with pytest.raises(ebpfvm.Error):
        mem.read_cstr(address[0])
    assert buf == bytearray(b"\x05\x06")


# ---------------------------------------------------------------------------
# Native helpers (ebpfvm.NativeHelper)
# ---------------------------------------------------------------------------

NATIVE_SOURCE = """
#include <stdint.h>
uint64_t weighted(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
    return a + 2 * b + 3 * c + 4 * d + 5 * e;
}
"""
NATIVE_SIGNATURE = "uint64_t weighted(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);"
CALL_NATIVE = asm_lines(
    "mov %r1, 1", "mov %r2, 2", "mov %r3, 3", "mov %r4, 4", "mov %r5, 5", "call 11", "exit"
)
NATIVE_EXPECTED = 1 + 4 + 9 + 16 + 25


def _weighted(a: int, b: int, c: int, d: int, e: int) -> int:
    return (a + 2 * b + 3 * c + 4 * d + 5 * e) & U64_MASK


@pytest.fixture(scope="module")
def native_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("native")
    source = directory / "weighted.c"
    source.write_text(NATIVE_SOURCE)
    library = directory / "libweighted.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)], check=True)
    return library


def test_native_helper_cffi(native_library: Path) -> None:
    ffi = cffi.FFI()
    ffi.cdef(NATIVE_SIGNATURE)
    lib = ffi.dlopen(str(native_library))
    helper = ebpfvm.NativeHelper(lib.weighted)
    assert run_asm(CALL_NATIVE, helpers={11: helper}) == NATIVE_EXPECTED
    # u64 arithmetic wraps in C: r1 = -1 is 2**64 - 1
    text = CALL_NATIVE.replace("mov %r1, 1", "mov %r1, -1")
    assert run_asm(text, helpers={11: helper}) == _weighted(U64_MASK, 2, 3, 4, 5)


def test_native_helper_int_address(native_library: Path) -> None:
    ffi = cffi.FFI()
    ffi.cdef(NATIVE_SIGNATURE)
    lib = ffi.dlopen(str(native_library))
    address = int(ffi.cast("uintptr_t", lib.weighted))
    assert address != 0
    assert run_asm(CALL_NATIVE, helpers={11: ebpfvm.NativeHelper(address)}) == NATIVE_EXPECTED


def test_native_helper_ctypes_function(native_library: Path) -> None:
    lib = ctypes.CDLL(str(native_library))
    function = lib.weighted
    function.restype = ctypes.c_uint64
    function.argtypes = [ctypes.c_uint64] * 5
    assert run_asm(CALL_NATIVE, helpers={11: ebpfvm.NativeHelper(function)}) == NATIVE_EXPECTED


def test_native_helper_ctypes_callback() -> None:
    prototype = ctypes.CFUNCTYPE(ctypes.c_uint64, *([ctypes.c_uint64] * 5))
    callback = prototype(_weighted)
    assert run_asm(CALL_NATIVE, helpers={11: ebpfvm.NativeHelper(callback)}) == NATIVE_EXPECTED


def test_native_helper_cffi_callback() -> None:
    ffi = cffi.FFI()
    callback = ffi.callback("uint64_t(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t)", _weighted)
    assert run_asm(CALL_NATIVE, helpers={11: ebpfvm.NativeHelper(callback)}) == NATIVE_EXPECTED


def test_native_helper_rejects_non_pointers() -> None:
    with pytest.raises((TypeError, ValueError, ebpfvm.Error)):
        ebpfvm.NativeHelper("not a pointer")  # type: ignore[arg-type]
