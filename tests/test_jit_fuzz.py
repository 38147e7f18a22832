"""Property tests for the JIT: random bytecode either runs or raises an ebpfvm.Error
(never anything else, never a crash), and the JIT agrees with the interpreter on
the outcome (r0 and instruction count, or fault kind and pc), on the memory after
the run and on the helper calls made.

Each property runs half of ``EBPFVM_FUZZ_EXAMPLES`` examples (the variable test_fuzz.py
reads; default 300, so 150 here and the file stays fast); set it higher for long
runs, e.g. ``EBPFVM_FUZZ_EXAMPLES=200000 pytest tests/test_jit_fuzz.py``.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import ebpfvm
import pytest
from ebpfvm.conformance import UBPF_TEST_HELPERS, UBPF_UNWIND_HELPER
from engine_support import MISSING, NATIVE_WEIGHTED, U64_MASK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import fuzz_properties

EXAMPLES = max(1, int(os.environ.get("EBPFVM_FUZZ_EXAMPLES", "300")) // 2)
MAX_INSTRUCTIONS = 2_000
MEM_LEN = 64

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------
# Running a program in both engines
# ---------------------------------------------------------------------------


def _outcome(
    exe: ebpfvm.Executable, buf: bytearray | None, max_instructions: int
) -> tuple[Any, ...]:
    try:
        r0, executed = exe.run_counted(buf)
    except ebpfvm.ExecutionError as exc:
        return ("error", getattr(exc, "kind", MISSING), getattr(exc, "pc", MISSING))
    assert 0 <= r0 <= U64_MASK
    # The budget is checked on back edges and calls, so a run may exceed it by
    # less than one straight-line stretch.
    assert 1 <= executed <= max_instructions + 70_000
    return ("ok", r0, executed)


#: The runs compared: the interpreter and each JIT tier on its own.
ENGINE_TIERS: dict[str, str | None] = {
    "interpreter": None,
    "jit-baseline": "baseline",
    "jit-optimized": "optimized",
}


def differential(
    code: bytes,
    mem: bytes | None,
    helpers: dict[int, Any],
    log: list[Any] | None = None,
    unwind_helper: int | None = None,
    max_instructions: int = MAX_INSTRUCTIONS,
) -> tuple[Any, ...] | None:
    """Runs ``code`` in the interpreter and in both JIT tiers on the same
    buffer (same addresses, reset in between) and asserts the runs are
    indistinguishable. Returns the outcome, or None when the program does
    not load."""
    try:
        program = ebpfvm.Program(code)
    except ebpfvm.Error:
        return None
    loaded = {}
    for engine, tier in ENGINE_TIERS.items():
        try:
            loaded[engine] = program.load(
                engine="interpreter" if tier is None else "jit",
                jit_tier=tier or "tiered",
                verify=False,  # random programs: compared in checked mode
                helpers=helpers,
                unwind_helper=unwind_helper,
                max_instructions=max_instructions,
            )
        except ebpfvm.Error as exc:
            loaded[engine] = exc
    if any(isinstance(exe, ebpfvm.Error) for exe in loaded.values()):
        # Loading checks are shared: all engines accept or reject a program.
        assert len({type(exe) for exe in loaded.values()}) == 1, loaded
        return None
    buf = None if mem is None else bytearray(mem)
    seen = {}
    for engine, exe in loaded.items():
        assert isinstance(exe, ebpfvm.Executable)
        if buf is not None:
            buf[:] = mem or b""
        if log is not None:
            log.clear()
        result = _outcome(exe, buf, max_instructions)
        seen[engine] = (
            result,
            None if buf is None else bytes(buf),
            None if log is None else tuple(log),
        )
    for engine in ENGINE_TIERS:
        assert seen[engine] == seen["interpreter"], f"{engine}: code={code.hex()} mem={mem!r}"
    return seen["interpreter"]


def without_pointer_values(code: bytes) -> bytes:
    """Rewrites r10 to r9 wherever it is read as a value (not as a memory base).

    The stack's address may differ between engines, so a program that computes
    with r10 itself may legitimately differ; everything else must not."""
    out = bytearray(code)
    for at in range(0, len(out) - 7, 8):
        op = out[at]
        dst, src = out[at + 1] & 0x0F, out[at + 1] >> 4
        cls = op & 0x07
        reads_src = (
            (cls in (0x04, 0x07, 0x05, 0x06) and op & 0x08)
            or cls == 0x03
            or (cls == 0x00 and op & 0xE0 == 0x40)
        )
        if reads_src and src == 10:
            src = 9
        if cls in (0x05, 0x06) and dst == 10:
            dst = 9
        out[at + 1] = (src << 4) | dst
    return bytes(out)


# ---------------------------------------------------------------------------
# Unstructured input (the strategies of test_fuzz.py) through the JIT
# ---------------------------------------------------------------------------


def exercise_jit(code: bytes, mem: bytes | None) -> None:
    """Only ebpfvm.Error may escape building, loading or running in the JIT; when
    both engines load the program they must agree."""
    try:
        program = ebpfvm.Program(code)
    except ebpfvm.Error:
        return
    try:
        exe = program.load(
            engine="jit",
            helpers=dict(UBPF_TEST_HELPERS),
            verify=False,  # uBPF's convention: unverified programs
            unwind_helper=UBPF_UNWIND_HELPER,
            max_instructions=MAX_INSTRUCTIONS,
        )
    except ebpfvm.Error:
        pass
    else:
        assert exe.compiled
        try:
            exe.run_counted(None if mem is None else bytearray(mem))
        except ebpfvm.Error:
            pass
    differential(
        without_pointer_values(code),
        mem,
        dict(UBPF_TEST_HELPERS),
        unwind_helper=UBPF_UNWIND_HELPER,
    )


(
    test_jit_random_bytes,
    test_jit_random_whole_instructions,
    test_jit_random_plausible_programs,
    test_jit_bit_flipped_conformance_programs,
    test_jit_conformance_programs_on_random_memory,
) = fuzz_properties(exercise_jit)


# ---------------------------------------------------------------------------
# Structured programs: valid control flow, every kind of instruction
# ---------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 7, 8, 31, 32, 63, 64, 255, -1, -2, -8, 0x7FFF_FFFF, -(1 << 31), 0x8000]
ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0]
JMP_OPS = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
ATOMIC_OPS = [0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xA0, 0xA1, 0xE1, 0xF1]
HELPER_IDS = [1, 2, 3]
UNREGISTERED_ID = 9

imm32 = st.one_of(st.sampled_from(INTERESTING), st.integers(-(1 << 31), (1 << 31) - 1))
value_reg = st.integers(0, 9)
#: Destinations: r1 (the input pointer) is overwritten rarely.
dst_reg = st.sampled_from([0, 2, 3, 4, 5, 6, 7, 8, 9] * 4 + [1])
#: Jump distances in body operations: mostly short, forward more often than back.
jump_delta = st.one_of(
    st.integers(1, 3), st.integers(1, 3), st.integers(-8, 8), st.integers(-20, 40)
)


@st.composite
def memory_operand(draw: st.DrawFn, size: int) -> tuple[int, int]:
    """(base register, offset): usually inside the input or the stack frame."""
    kind = draw(st.sampled_from(["input"] * 4 + ["stack"] * 4 + ["edge", "wild"]))
    if kind == "input":
        return 1, draw(st.integers(0, MEM_LEN - size))
    if kind == "stack":
        return 10, draw(st.integers(-512, -size))
    if kind == "edge":  # just inside or just outside a region
        base = draw(st.sampled_from([1, 10]))
        low, high = (0, MEM_LEN - size) if base == 1 else (-512, -size)
        return base, draw(st.sampled_from([low - 1, low, high, high + 1]))
    return draw(value_reg), draw(st.integers(-0x8000, 0x7FFF))


@st.composite
def body_op(draw: st.DrawFn, n_functions: int) -> tuple[Any, ...]:
    """One instruction (or a short fixed sequence) of a function body; jump
    targets are distances in body operations, resolved later."""
    kind = draw(
        st.sampled_from(
            ["alu"] * 8
            + ["mov", "small mov", "small mov", "countdown", "countdown"]
            + ["load"] * 3
            + ["store"] * 3
            + ["atomic"] * 2
            + ["jump"] * 3
            + ["ja", "lddw", "end", "movsx", "helper", "callx", "local", "packet", "exit"]
        )
    )
    dst = draw(dst_reg)
    if kind == "alu":
        cls = draw(st.sampled_from([0x04, 0x07]))
        op = draw(st.sampled_from(ALU_OPS))
        if op == 0x80:  # neg has no operand
            return ("insn", cls | op, dst, 0, 0, 0)
        signed = op in (0x30, 0x90) and draw(st.booleans())
        if draw(st.booleans()):
            return ("insn", cls | op | 0x08, dst, draw(value_reg), int(signed), 0)
        return ("insn", cls | op, dst, 0, int(signed), draw(imm32))
    if kind == "mov":
        return ("insn", 0xB7, dst, 0, 0, draw(imm32))
    if kind == "small mov":
        return ("insn", 0xB7, dst, 0, 0, draw(st.integers(0, 12)))
    if kind == "countdown":  # add %rX, -1; jsgt %rX, 0, <back>
        return ("countdown", dst, draw(st.integers(-10, -1)))
    if kind == "lddw":
        return ("lddw", dst, draw(st.integers(0, U64_MASK)))
    if kind == "end":
        opc = draw(st.sampled_from([0xD4, 0xDC, 0xD7]))
        return ("insn", opc, dst, 0, 0, draw(st.sampled_from([16, 32, 64])))
    if kind == "movsx":
        cls = draw(st.sampled_from([0x04, 0x07]))
        width = draw(st.sampled_from([8, 16, 32] if cls == 0x07 else [8, 16]))
        return ("insn", cls | 0xB8, dst, draw(value_reg), width, 0)
    if kind == "load":
        size = draw(st.sampled_from([1, 2, 4, 8]))
        mode = 0x80 if size != 8 and draw(st.booleans()) else 0x60
        base, off = draw(memory_operand(size))
        return ("insn", 0x01 | mode | SIZES[size], dst, base, off, 0)
    if kind == "store":
        size = draw(st.sampled_from([1, 2, 4, 8]))
        base, off = draw(memory_operand(size))
        if draw(st.booleans()):
            return ("insn", 0x03 | 0x60 | SIZES[size], base, draw(value_reg), off, 0)
        return ("insn", 0x02 | 0x60 | SIZES[size], base, 0, off, draw(imm32))
    if kind == "atomic":
        size = draw(st.sampled_from([4, 8]))
        base, off = draw(memory_operand(size))
        if draw(st.integers(0, 3)):
            off -= off % size  # mostly aligned (the input and the stack are)
        opc = 0xC3 if size == 4 else 0xDB
        return ("insn", opc, base, draw(value_reg), off, draw(st.sampled_from(ATOMIC_OPS)))
    if kind == "jump":
        cls = draw(st.sampled_from([0x05, 0x06]))
        op = draw(st.sampled_from(JMP_OPS))
        target = draw(jump_delta)
        if draw(st.booleans()):
            return ("jump", cls | op | 0x08, dst, draw(value_reg), 0, target)
        return ("jump", cls | op, dst, 0, draw(imm32), target)
    if kind == "ja":
        return ("ja", draw(st.booleans()), draw(jump_delta))
    if kind == "helper":
        return ("insn", 0x85, 0, 0, 0, draw(st.sampled_from(HELPER_IDS)))
    if kind == "callx":
        helper = draw(st.sampled_from([*HELPER_IDS, UNREGISTERED_ID]))
        return ("callx", dst, helper)
    if kind == "local" and n_functions > 1:
        return ("local", draw(st.integers(0, n_functions - 1)))
    if kind == "packet":
        size = draw(st.sampled_from([1, 2, 4]))
        if draw(st.booleans()):
            return ("insn", 0x20 | SIZES[size], 0, 0, 0, draw(st.integers(-4, MEM_LEN + 4)))
        return ("insn", 0x40 | SIZES[size], 0, draw(value_reg), 0, draw(st.integers(-8, 8)))
    if kind == "exit":
        return ("exit",)
    return ("insn", 0xB7, 0, 0, 0, draw(imm32))  # mov %r0, imm


def _slots(op: tuple[Any, ...]) -> int:
    return {"lddw": 2, "callx": 2, "countdown": 2}.get(op[0], 1)


def _encode(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhI", op, (src << 4) | dst, off, imm & 0xFFFF_FFFF)


def assemble_program(functions: list[list[tuple[Any, ...]]]) -> bytes:
    """Lays out the functions (each followed by an exit) and resolves jumps."""
    bodies = [[*body, ("exit",)] for body in functions]
    starts: list[int] = []
    offsets: list[list[int]] = []
    slot = 0
    for body in bodies:
        starts.append(slot)
        mine = []
        for op in body:
            mine.append(slot)
            slot += _slots(op)
        offsets.append(mine)
    code = bytearray()
    for body, mine in zip(bodies, offsets, strict=True):
        n = len(body)
        for index, op in enumerate(body):
            here = mine[index]

            def target_of(delta: int, index: int = index, n: int = n) -> int:
                t = min(max(index + delta, 0), n - 1)
                return t + 1 if t == index else t  # never a jump to itself

            if op[0] == "insn":
                code += _encode(*op[1:])
            elif op[0] == "lddw":
                value = op[2]
                code += _encode(0x18, op[1], 0, 0, value) + _encode(0, 0, 0, 0, value >> 32)
            elif op[0] == "jump":
                opc, dst, src, imm, delta = op[1:]
                rel = mine[target_of(delta)] - (here + 1)
                code += _encode(opc, dst, src, rel, imm)
            elif op[0] == "ja":
                wide, delta = op[1:]
                rel = mine[target_of(delta)] - (here + 1)
                code += _encode(0x06, imm=rel) if wide else _encode(0x05, off=rel)
            elif op[0] == "countdown":
                reg, delta = op[1:]
                rel = mine[target_of(delta)] - (here + 2)
                code += _encode(0x07, reg, imm=-1) + _encode(0x65, reg, 0, rel, 0)
            elif op[0] == "callx":
                code += _encode(0xB7, op[1], imm=op[2]) + _encode(0x8D, op[1])
            elif op[0] == "local":
                code += _encode(0x85, 0, 1, 0, starts[op[1]] - (here + 1))
            else:
                code += _encode(0x95)
    return bytes(code)


@st.composite
def generated_programs(draw: st.DrawFn) -> bytes:
    n_functions = draw(st.integers(1, 3))
    functions = [
        draw(st.lists(body_op(n_functions), min_size=6 if k == 0 else 1, max_size=40))
        for k in range(n_functions)
    ]
    return assemble_program(functions)


def _structured_helpers(log: list[Any]) -> dict[int, Any]:
    def plain(a: int, b: int, c: int, d: int, e: int) -> int:
        log.append((1, a, b, c, d, e))
        return (a * 0x9E37_79B9 ^ b ^ (c << 7) ^ d ^ e) & U64_MASK

    def memory(mem: ebpfvm.VMMemory, a: int, b: int, c: int, d: int, e: int) -> int:
        try:
            data = mem.read(a, 8)
        except ebpfvm.ExecutionError:
            log.append((2, "bad address"))
            return 1
        mem.write(a, bytes(x ^ (b & 0xFF) for x in data))
        log.append((2, data))
        return int.from_bytes(data, "little")

    return {
        1: plain,
        2: ebpfvm.Helper(memory, memory=True),
        3: ebpfvm.NativeHelper(NATIVE_WEIGHTED),
    }


input_memory = st.binary(min_size=MEM_LEN, max_size=MEM_LEN)


@FUZZ
@given(
    code=generated_programs(), mem=st.one_of(input_memory, input_memory, input_memory, st.none())
)
def test_jit_matches_interpreter_on_generated_programs(code: bytes, mem: bytes | None) -> None:
    program = ebpfvm.Program(code)  # the generator only makes valid programs
    assert len(program) == len(code) // 8
    log: list[Any] = []
    outcome = differential(code, mem, _structured_helpers(log), log)
    assert outcome is not None


def test_generator_covers_instruction_kinds() -> None:
    # A guard against a generator that quietly stops producing interesting runs:
    # over a fixed sample, runs finish, fault in several ways and call helpers.
    results: set[str] = set()
    calls = 0

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(code=generated_programs(), mem=st.binary(min_size=MEM_LEN, max_size=MEM_LEN))
    def sample(code: bytes, mem: bytes) -> None:
        nonlocal calls
        log: list[Any] = []
        outcome = differential(code, mem, _structured_helpers(log), log)
        assert outcome is not None
        result, _, logged = outcome
        results.add(result[0] if result[0] == "ok" else result[1])
        calls += len(logged)

    sample()
    assert {"ok", "out_of_bounds", "budget_exhausted"} <= results, results
    assert calls > 0


# ---------------------------------------------------------------------------
# Large programs: many blocks, long live ranges, high register pressure
# ---------------------------------------------------------------------------


def _random_body(rng: random.Random, length: int) -> list[tuple[Any, ...]]:
    """Random operations; r9 is reserved for loop counters, and every loop jumps
    back to just after the `mov %r9` that starts it, so all loops end."""
    body: list[tuple[Any, ...]] = []
    loop_start = 0
    for _ in range(length):
        dst = rng.choice([0, 2, 3, 4, 5, 6, 7, 8])
        roll = rng.random()
        if roll < 0.45:
            cls = rng.choice([0x04, 0x07])
            op = rng.choice([op for op in ALU_OPS if op != 0x80])
            signed = int(op in (0x30, 0x90) and rng.random() < 0.5)
            if rng.random() < 0.5:
                body.append(("insn", cls | op | 0x08, dst, rng.randrange(10), signed, 0))
            else:
                body.append(("insn", cls | op, dst, 0, signed, rng.choice(INTERESTING)))
        elif roll < 0.55:
            size = rng.choice([1, 2, 4, 8])
            if rng.random() < 0.5:
                base, off = 1, rng.randrange(MEM_LEN - size + 1)
            else:
                base, off = 10, -rng.randrange(size, 513)
            body.append(("insn", 0x01 | 0x60 | SIZES[size], dst, base, off, 0))
        elif roll < 0.65:
            size = rng.choice([1, 2, 4, 8])
            if rng.random() < 0.5:
                base, off = 1, rng.randrange(MEM_LEN - size + 1)
            else:
                base, off = 10, -rng.randrange(size, 513)
            body.append(("insn", 0x03 | 0x60 | SIZES[size], base, rng.randrange(10), off, 0))
        elif roll < 0.70:
            size = rng.choice([4, 8])
            off = rng.randrange(0, MEM_LEN - size + 1, size)
            opc = 0xC3 if size == 4 else 0xDB
            # Fetching atomics write their source register: never r1 or r9.
            body.append(("insn", opc, 1, dst, off, rng.choice(ATOMIC_OPS)))
        elif roll < 0.85:
            opc = rng.choice([0x05, 0x06]) | rng.choice(JMP_OPS) | rng.choice([0, 0x08])
            src = rng.randrange(10) if opc & 0x08 else 0
            imm = 0 if opc & 0x08 else rng.choice(INTERESTING)
            body.append(("jump", opc, dst, src, imm, rng.randint(1, 12)))
        elif roll < 0.87:
            body.append(("insn", 0xB7, 9, 0, 0, rng.randint(1, 6)))
            loop_start = len(body)
        elif roll < 0.90 and len(body) > loop_start:
            back = max(-rng.randint(1, 30), loop_start - len(body))
            body.append(("countdown", 9, back))
        elif roll < 0.95:
            body.append(("lddw", dst, rng.getrandbits(64)))
        else:
            body.append(
                ("insn", rng.choice([0xD4, 0xDC, 0xD7]), dst, 0, 0, rng.choice([16, 32, 64]))
            )
    return body


@pytest.mark.parametrize("seed", range(6))
def test_large_programs_match(seed: int) -> None:
    rng = random.Random(seed)
    functions = [_random_body(rng, 1_500), _random_body(rng, 300)]
    functions[0].insert(rng.randrange(len(functions[0])), ("local", 1))
    code = assemble_program(functions)
    mem = rng.randbytes(MEM_LEN)
    outcome = differential(code, mem, {}, max_instructions=1_000_000)
    assert outcome is not None
    result = outcome[0]
    assert result[0] == "ok" or result[1] == "budget_exhausted", result
