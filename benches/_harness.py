"""Shared machinery of the benchmark suite.

The benchmark programs, their inputs and expected results live in the shared
data folder, ``<repo root>/../shared/bench`` (see its README.md). This module
knows where they are, builds the native baseline with cffi, loads the eBPF
bytecode into ebpfvm, checks results, and times calls in a way whose
per-call harness cost is small enough for a ~50 ns call to be measured.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Final

import ebpfvm
import pytest

#: Root of the repository: the parent of benches/.
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
#: Shared data next to the repository: ../shared from the repository root.
SHARED: Final = (REPO_ROOT / ".." / "shared").resolve()
#: The benchmark programs (C sources, prebuilt bytecode, inputs).
BENCH_DIR: Final = SHARED / "bench"
#: Where the cffi-built native baseline is cached (ignored by git).
BUILD_DIR: Final = REPO_ROOT / "benches" / ".build"

#: The seven programs of ../shared/bench, in the order of its README.
PROGRAMS: Final = ("noop", "csum", "parse", "xorshift", "fnv1a", "jhash", "helpers")
#: Bytecode flavours in prebuilt/: v3 uses 32-bit ALU and JMP32, v1 does not.
ISAS: Final = ("v3", "v1")

#: Input vector (inputs/<name>.bin) -> (program, expected r0), as listed in the
#: table of ../shared/bench/README.md. The vector named like its program is
#: the one that is timed; the others are only checked.
VECTORS: Final[dict[str, tuple[str, int]]] = {
    "noop": ("noop", 0x40),
    "csum": ("csum", 0xC99E),
    "parse": ("parse", 0x000205B401BB0602),
    "parse_udp_vlan": ("parse", 0x0000000000071103),
    "parse_telnet": ("parse", 0x0010000000170601),
    "xorshift": ("xorshift", 0xDC028FBE76AF704B),
    "fnv1a": ("fnv1a", 0x8368214F77995EE5),
    "jhash": ("jhash", 0x000000009FF036CC),
    "helpers": ("helpers", 0xB63FB926244B33F8),
}

#: Helper ids used by helpers.c (README: "Calling convention and helpers").
HELPER_MIX: Final = 1
HELPER_COOKIE: Final = 2
#: helpers.c calls cookie() twice and mix() eight times per run.
HELPER_CALLS_PER_RUN: Final = 10

#: Project goals the summary checks.
GOAL_NS_PER_INSN: Final = 3.0
GOAL_EMPTY_RUN_NS: Final = 60.0
#: JIT goals (issue 3), all judged on medians of this run, in checked mode.
GOAL_JIT_NATIVE_GMEAN: Final = 1.3  # JIT/native, geometric mean of COMPUTE_PROGRAMS
GOAL_JIT_NATIVE_EACH: Final = 2.0  # JIT/native, every compute program
GOAL_HELPER_EXTRA_NS: Final = 2.0  # per helper call, above a native call
GOAL_COMPILE_MS: Final = 1.0  # compile time of a 1,000-instruction program
#: The JIT tiers whose compile time is measured: a default (tiered) load
#: returns with the baseline tier's code, so the goal is judged on it; the
#: optimizing (Cranelift) compile that replaces it in the background is shown
#: beside it.
JIT_TIERS: Final = ("baseline", "optimized")
GOAL_COMPILE_TIER: Final = "baseline"
GOAL_BATCH_RATIO: Final = 1.3  # run_batch per packet / in-Rust time per packet
GOAL_PARSE_RUN_NS: Final = 90.0  # exe.run() of parse on its 74-byte packet
#: The ns/insn goal is judged only on programs executing at least this many
#: instructions per run, where the fixed cost of a Python call (< 100 ns) is
#: at most a few percent of the run.
LONG_PROGRAM_INSNS: Final = 5000

#: A program of two instructions: ``mov %r0, 0; exit``.
EMPTY_PROGRAM: Final = bytes.fromhex("b7000000000000009500000000000000")

M64: Final = (1 << 64) - 1


# --------------------------------------------------------------------------
# Shared data


def check_shared_data() -> None:
    """Raise ``pytest.UsageError`` unless every file the suite needs is there."""
    needed = [BENCH_DIR / "README.md", BENCH_DIR / "bench.h", BENCH_DIR / "helpers_native.c"]
    for program in PROGRAMS:
        needed.append(BENCH_DIR / f"{program}.c")
        for isa in ISAS:
            needed.append(BENCH_DIR / "prebuilt" / isa / f"{program}.text")
    needed.extend(BENCH_DIR / "inputs" / f"{vector}.bin" for vector in VECTORS)
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise pytest.UsageError(
            f"benchmark data not found under {BENCH_DIR} (../shared/bench from the "
            f"repository root {REPO_ROOT}); missing:\n  {shown}{more}"
        )


def read_input(vector: str) -> bytes:
    return (BENCH_DIR / "inputs" / f"{vector}.bin").read_bytes()


def read_bytecode(program: str, isa: str) -> bytes:
    return (BENCH_DIR / "prebuilt" / isa / f"{program}.text").read_bytes()


def vectors_of(program: str) -> Iterator[tuple[str, int]]:
    """(vector name, expected r0) for every input of ``program``."""
    for vector, (prog, expected) in VECTORS.items():
        if prog == program:
            yield vector, expected


def expected_result(program: str) -> int:
    return VECTORS[program][1]


# --------------------------------------------------------------------------
# Helpers, in Python (ebpfvm passes five u64 arguments to every helper)


def py_mix(r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Helper 1: ``(a ^ b) * 0x9E3779B97F4A7C15 + 1`` mod 2**64."""
    return ((r1 ^ r2) * 0x9E3779B97F4A7C15 + 1) & M64


def py_cookie(r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Helper 2: the constant cookie."""
    return 0x0123456789ABCDEF


# --------------------------------------------------------------------------
# Native baseline: the same C programs, gcc -O2, called through cffi

_C_SOURCE_HEAD = r"""
#include <stdint.h>
#include "bench.h"
"""

_C_SOURCE_TAIL = r"""
/* ebpfvm.NativeHelper calls uint64_t f(uint64_t x5): adapt the two helpers
 * of helpers_native.c (2 and 0 arguments) to exactly that signature. */
uint64_t mix5(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
    (void)c; (void)d; (void)e;
    return bench_helper_mix(a, b);
}

uint64_t cookie5(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
    (void)a; (void)b; (void)c; (void)d; (void)e;
    return bench_helper_cookie();
}

/* loop_<name>(mem, len, n) runs the program n times and sums the results.
 * The programs are separate translation units (no inlining without LTO);
 * on top of that, the empty asm makes the compiler assume that the pointer
 * and all memory change each iteration, so no call can be hoisted or merged. */
#define BENCH_LOOP(name)                                                  \
    uint64_t loop_##name(void *mem, uint64_t len, uint64_t n)             \
    {                                                                     \
        uint64_t acc = 0;                                                 \
        uint64_t i;                                                       \
        for (i = 0; i < n; i++) {                                         \
            void *m = mem;                                                \
            __asm__ __volatile__("" : "+r"(m) : : "memory");              \
            acc += bench_##name(m, len);                                  \
        }                                                                 \
        return acc;                                                       \
    }
"""

#: Extra compiler flags (last, so they win over Python's own CFLAGS).
NATIVE_CFLAGS: Final = ("-O2",)
#: Bind calls between the programs, helpers and loops directly inside the
#: module (no PLT indirection), as in a statically linked native program.
NATIVE_LDFLAGS: Final = ("-Wl,-Bsymbolic-functions",)


def _native_cdef() -> str:
    lines = [
        "uint64_t mix5(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);",
        "uint64_t cookie5(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);",
    ]
    for program in PROGRAMS:
        lines.append(f"uint64_t bench_{program}(void *mem, uint64_t len);")
        lines.append(f"uint64_t loop_{program}(void *mem, uint64_t len, uint64_t n);")
    return "\n".join(lines) + "\n"


def _native_source() -> str:
    prototypes = "".join(f"ENTRY({program});\n" for program in PROGRAMS)
    loops = "".join(f"BENCH_LOOP({program})\n" for program in PROGRAMS)
    return _C_SOURCE_HEAD + prototypes + _C_SOURCE_TAIL + loops


def _native_sources() -> list[Path]:
    return [BENCH_DIR / f"{program}.c" for program in PROGRAMS] + [BENCH_DIR / "helpers_native.c"]


def _native_module_name(cdef: str, source: str) -> str:
    """A module name that changes whenever anything the build uses changes."""
    import cffi

    digest = hashlib.sha256()
    flags = " ".join(NATIVE_CFLAGS + NATIVE_LDFLAGS)
    for part in (cdef, source, flags, cffi.__version__, sys.version):
        digest.update(part.encode())
        digest.update(b"\0")
    for path in [*_native_sources(), BENCH_DIR / "bench.h"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"_ebpfvm_bench_native_{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class NativeLib:
    """The cffi module holding the native programs, loops and helpers."""

    ffi: Any
    lib: Any
    path: Path

    def program(self, name: str) -> Callable[[Any, int], int]:
        fn: Callable[[Any, int], int] = getattr(self.lib, f"bench_{name}")
        return fn

    def loop(self, name: str) -> Callable[[Any, int, int], int]:
        fn: Callable[[Any, int, int], int] = getattr(self.lib, f"loop_{name}")
        return fn

    def helper(self, helper_id: int) -> ebpfvm.NativeHelper:
        symbol = {HELPER_MIX: "mix5", HELPER_COOKIE: "cookie5"}[helper_id]
        return ebpfvm.NativeHelper(self.ffi.addressof(self.lib, symbol), keepalive=self.lib)

    def pointer(self, buf: bytearray) -> Any:
        """A ``void *`` to ``buf`` (which the caller keeps alive)."""
        return self.ffi.from_buffer(buf)


def build_native(build_dir: Path = BUILD_DIR) -> NativeLib:
    """Compile (or reuse) the native baseline and import it."""
    import cffi

    cdef = _native_cdef()
    source = _native_source()
    name = _native_module_name(cdef, source)
    build_dir.mkdir(parents=True, exist_ok=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    target = build_dir / f"{name}{suffix}"
    if not target.is_file():
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        ffi.set_source(
            name,
            source,
            sources=[str(path) for path in _native_sources()],
            include_dirs=[str(BENCH_DIR)],
            extra_compile_args=list(NATIVE_CFLAGS),
            extra_link_args=list(NATIVE_LDFLAGS),
        )
        tmpdir = build_dir / f"tmp-{name}-{os.getpid()}"
        try:
            built = Path(ffi.compile(tmpdir=str(tmpdir), verbose=False))
            os.replace(built, target)  # atomic: a concurrent run sees all or nothing
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        for stale in build_dir.glob("_ebpfvm_bench_native_*"):
            if stale != target:
                stale.unlink(missing_ok=True)
    spec = importlib.util.spec_from_file_location(name, target)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the native baseline from {target}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return NativeLib(ffi=module.ffi, lib=module.lib, path=target)


def check_native(native: NativeLib) -> None:
    """Every native program (direct and looped) must return the README's values."""
    errors: list[str] = []
    for program in PROGRAMS:
        for vector, expected in vectors_of(program):
            buf = bytearray(read_input(vector))
            ptr = native.pointer(buf)
            got = native.program(program)(ptr, len(buf))
            if got != expected:
                errors.append(f"native {program}({vector}.bin) = {got:#x}, expected {expected:#x}")
            looped = native.loop(program)(ptr, len(buf), 3)
            if looped != (3 * expected) & M64:
                errors.append(f"native loop_{program}({vector}.bin, n=3) = {looped:#x}")
    if errors:
        raise AssertionError("native baseline gives wrong results:\n" + "\n".join(errors))


# --------------------------------------------------------------------------
# ebpfvm


@dataclass(frozen=True)
class InterpCase:
    """One interpreter benchmark: a program, its bytecode flavour, its helpers."""

    program: str
    isa: str
    helpers: str | None = None  # "python" or "native" for helpers.c

    @property
    def variant(self) -> str:
        return self.isa if self.helpers is None else f"{self.isa} {self.helpers}-helpers"

    @property
    def id(self) -> str:
        return f"{self.program}-{self.variant.replace(' ', '-')}"


def interp_cases() -> list[InterpCase]:
    cases: list[InterpCase] = []
    for program in PROGRAMS:
        for isa in ISAS:
            if program == "helpers":
                cases.append(InterpCase(program, isa, "python"))
                cases.append(InterpCase(program, isa, "native"))
            else:
                cases.append(InterpCase(program, isa))
    return cases


def case_helpers(case: InterpCase, native: NativeLib | None) -> dict[int, Any] | None:
    """The ``helpers=`` argument of ``load()`` for ``case``."""
    if case.helpers == "python":
        return {HELPER_MIX: py_mix, HELPER_COOKIE: py_cookie}
    if case.helpers == "native":
        if native is None:
            raise ValueError("native helpers need the native build")
        return {
            HELPER_MIX: native.helper(HELPER_MIX),
            HELPER_COOKIE: native.helper(HELPER_COOKIE),
        }
    return None


def load_case(
    case: InterpCase, native: NativeLib | None, engine: str = "interpreter"
) -> ebpfvm.Executable:
    """The program of ``case`` loaded on ``engine``; ``VERIFIED`` loads the
    JIT with verify=True for inputs from the shortest to the longest of the
    program's vectors (runs outside those sizes are refused), and raises
    ebpfvm.VerifierError when the verifier cannot prove the program."""
    program = ebpfvm.Program(read_bytecode(case.program, case.isa))
    if engine == VERIFIED:
        sizes = [len(read_input(v)) for v, _ in vectors_of(case.program)]
        return program.load(
            engine="jit",
            verify=True,
            input_size=min(sizes),
            max_input_size=max(sizes),
            jit_tier="optimized",
        )
    return program.load(
        engine=engine, verify=False, helpers=case_helpers(case, native), jit_tier="optimized"
    )


def check_executable(exe: ebpfvm.Executable, case: InterpCase) -> int:
    """Check every input vector of the program; return the executed-instruction
    count of the timed vector."""
    errors: list[str] = []
    executed = -1
    for vector, expected in vectors_of(case.program):
        data = read_input(vector)
        got_bytes = exe.run(data)
        got, count = exe.run_counted(bytearray(data))
        for how, value in (("run(bytes)", got_bytes), ("run_counted(bytearray)", got)):
            if value != expected:
                errors.append(
                    f"ebpfvm {case.id} {how} on {vector}.bin = {value:#x}, expected {expected:#x}"
                )
        if vector == case.program:
            executed = count
    if errors:
        raise AssertionError("\n".join(errors))
    if executed <= 0:
        raise AssertionError(f"{case.id}: no executed-instruction count")
    return executed


# --------------------------------------------------------------------------
# The JIT: in-Rust timing, compile time, batches

#: Engines compared in Rust (Executable.timeit), in this order.
ENGINES: Final = ("interpreter", "jit")
#: The engine label of the JIT loaded with verify=True (no bounds checks, no
#: budget), for programs the verifier proves safe on their timed input size.
VERIFIED: Final = "jit-verified"
#: The programs the JIT/native goal is judged on (the issue's "compute programs").
COMPUTE_PROGRAMS: Final = ("csum", "parse", "xorshift", "fnv1a", "jhash")
#: Packets per run_batch call, and the size that is also run on two threads.
BATCH_SIZES: Final = (64, 1024, 65536)
BATCH_THREADS: Final = 2
#: Instruction slots of the generated program whose compile time is judged.
GENERATED_SLOTS: Final = 1000
#: Seed of the generated program (fixed: every run compiles the same code).
GENERATED_SEED: Final = 1


@dataclass(frozen=True)
class RustCase:
    """One in-Rust benchmark: a program, its bytecode flavour and an engine.

    helpers.c gets the native (cffi) helpers: the goal is about the cost of a
    call into C, and a Python helper would measure Python instead.
    """

    program: str
    isa: str
    engine: str

    @property
    def base(self) -> InterpCase:
        return InterpCase(self.program, self.isa, "native" if self.program == "helpers" else None)

    @property
    def variant(self) -> str:
        return self.base.variant

    @property
    def id(self) -> str:
        return f"{self.base.id}-{self.engine}"


def _verifier_verdicts() -> dict[RustCase, str | None]:
    """For every program and flavour on the VERIFIED engine: None when the
    verifier proves it for its inputs, else why not."""
    verdicts: dict[RustCase, str | None] = {}
    for program in PROGRAMS:
        for isa in ISAS:
            case = RustCase(program, isa, VERIFIED)
            try:
                load_case(case.base, None, engine=VERIFIED)
            except ebpfvm.VerifierError as e:
                verdicts[case] = f"insn {e.pc}: {e.message}"
            else:
                verdicts[case] = None
    return verdicts


_VERDICTS: dict[RustCase, str | None] | None = None


def verifier_verdicts() -> dict[RustCase, str | None]:
    global _VERDICTS
    if _VERDICTS is None:
        _VERDICTS = _verifier_verdicts()
    return _VERDICTS


def verified_cases() -> list[RustCase]:
    """The VERIFIED-engine cases the verifier proves (timed like the JIT)."""
    return [case for case, why in verifier_verdicts().items() if why is None]


def unverified_cases() -> list[RustCase]:
    """The VERIFIED-engine cases the verifier refuses (reported, not timed)."""
    return [case for case, why in verifier_verdicts().items() if why is not None]


def rust_cases() -> list[RustCase]:
    """Every program and flavour, the interpreter first (the JIT's extra_info
    then shows interp/JIT)."""
    return [
        RustCase(program, isa, engine) for program in PROGRAMS for isa in ISAS for engine in ENGINES
    ]


def check_same_as_interpreter(
    exe: ebpfvm.Executable, reference: ebpfvm.Executable, inputs: dict[str, bytes], what: str
) -> None:
    """r0, executed-instruction count and memory after the run must equal the
    interpreter's on every input."""
    errors: list[str] = []
    for name, data in inputs.items():
        mem, ref_mem = bytearray(data), bytearray(data)
        got, want = exe.run_counted(mem), reference.run_counted(ref_mem)
        if got != want:
            errors.append(f"{what} on {name}: (r0, insns) = {got}, interpreter {want}")
        if mem != ref_mem:
            errors.append(f"{what} on {name}: memory after the run differs from the interpreter's")
    if errors:
        raise AssertionError("\n".join(errors))


def check_compiled(exe: ebpfvm.Executable, what: str) -> None:
    """``exe`` must be JIT-compiled machine code, with its statistics."""
    if exe.engine != "jit" or not exe.compiled:
        raise AssertionError(f"{what}: engine={exe.engine!r}, compiled={exe.compiled}")
    compile_time, code_size = exe.compile_time, exe.code_size
    if compile_time is None or compile_time <= 0 or code_size is None or code_size <= 0:
        raise AssertionError(f"{what}: compile_time={compile_time}, code_size={code_size}")


def check_rust_case(exe: ebpfvm.Executable, case: RustCase, native: NativeLib | None) -> int:
    """Check ``exe`` as :func:`check_executable` does and, for the JIT, against
    the interpreter; return the executed-instruction count of the timed vector."""
    want = "jit" if case.engine == VERIFIED else case.engine
    if exe.engine != want or exe.verified != (case.engine == VERIFIED):
        raise AssertionError(f"{case.id}: loaded engine {exe.engine!r}, verified {exe.verified}")
    executed = check_executable(exe, case.base)
    if case.engine in ("jit", VERIFIED):
        check_compiled(exe, case.id)
        reference = load_case(case.base, native)
        inputs = {vector: read_input(vector) for vector, _ in vectors_of(case.program)}
        check_same_as_interpreter(exe, reference, inputs, case.id)
    seconds = exe.timeit(read_input(case.program), 1)
    if not (isinstance(seconds, float) and seconds >= 0):
        raise AssertionError(f"{case.id}: timeit() returned {seconds!r}")
    return executed


class _ProgramWriter:
    """Assembly text of a generated program, counting instruction slots."""

    #: r1 keeps the input address and r2 its length, r9 counts loop
    #: iterations, r10 is the frame pointer; the rest compute.
    WORK: Final = ("%r0", "%r3", "%r4", "%r5", "%r6", "%r7", "%r8")
    ALU: Final = ("add", "sub", "mul", "xor", "or", "and", "mov", "lsh", "rsh", "arsh")
    JUMPS: Final = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jslt", "jset")
    SIZES: Final = {"b": 1, "h": 2, "w": 4, "dw": 8}
    INPUT_LEN: Final = 64

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lines: list[str] = []
        self.slots = 0
        self.labels = 0

    def emit(self, line: str, slots: int = 1) -> None:
        self.lines.append(f"    {line}")
        self.slots += slots

    def new_label(self) -> str:
        self.labels += 1
        return f"L{self.labels}"

    def alu(self) -> None:
        rng = self.rng
        op = rng.choice(self.ALU)
        width = "32" if rng.random() < 0.3 else ""
        if op in ("lsh", "rsh", "arsh"):
            src = str(rng.randrange(32 if width else 64))
        elif rng.random() < 0.5:
            src = rng.choice(self.WORK)
        else:
            src = str(rng.randrange(-1000, 100000))
        self.emit(f"{op}{width} {rng.choice(self.WORK)}, {src}")

    def memory(self) -> None:
        rng = self.rng
        size = rng.choice(list(self.SIZES))
        off = rng.randrange(0, self.INPUT_LEN, self.SIZES[size])
        reg = rng.choice(self.WORK)
        slot = 8 * rng.randrange(1, 17)
        roll = rng.random()
        if roll < 0.45:
            self.emit(f"ldx{size} {reg}, [%r1+{off}]")  # input
        elif roll < 0.55:
            self.emit(f"stx{size} [%r1+{off}], {reg}")
        elif roll < 0.8:
            self.emit(f"stxdw [%r10-{slot}], {reg}")  # stack
        else:
            self.emit(f"ldxdw {reg}, [%r10-{slot}]")

    def straight(self, count: int) -> None:
        for _ in range(count):
            roll = self.rng.random()
            if roll < 0.6:
                self.alu()
            elif roll < 0.97:
                self.memory()
            else:
                value = self.rng.getrandbits(64)
                self.emit(f"lddw {self.rng.choice(self.WORK)}, {value:#x}", slots=2)

    def forward_branch(self) -> None:
        rng = self.rng
        op = rng.choice(self.JUMPS) + ("32" if rng.random() < 0.3 else "")
        src = rng.choice(self.WORK) if rng.random() < 0.5 else str(rng.randrange(256))
        target = self.new_label()
        self.emit(f"{op} {rng.choice(self.WORK)}, {src}, {target}")
        self.straight(rng.randrange(1, 8))
        self.lines.append(f"{target}:")

    def counted_loop(self) -> None:
        head = self.new_label()
        self.emit(f"mov %r9, {self.rng.randrange(4, 12)}")
        self.lines.append(f"{head}:")
        for _ in range(self.rng.randrange(3, 6)):
            if self.rng.random() < 0.3:
                self.forward_branch()
            else:
                self.straight(self.rng.randrange(2, 6))
        self.emit("sub %r9, 1")
        self.emit(f"jne %r9, 0, {head}")


def generated_program(slots: int = GENERATED_SLOTS, seed: int = GENERATED_SEED) -> str:
    """Assembly text of a realistic, straight-ish program of exactly ``slots``
    instruction slots, the same for the same seed.

    64- and 32-bit ALU with registers and immediates, loads and stores of
    every size on the input (r1, at least 64 bytes, else r0 = 1) and on the
    stack, a few lddw, forward conditional jumps over short runs of
    instructions, and two counted loops. r0 folds the working registers.
    """
    rng = random.Random(seed)
    w = _ProgramWriter(rng)
    w.emit("mov %r0, 0")
    w.emit(f"jlt %r2, {w.INPUT_LEN}, too_short")
    for reg in w.WORK[1:]:
        w.emit(f"ldxdw {reg}, [%r1+{8 * rng.randrange(w.INPUT_LEN // 8)}]")
    epilogue = len(w.WORK) - 1 + 3  # xor into r0, exit; too_short: mov, exit
    loops_at = [slots // 3, 2 * slots // 3]
    while w.slots < slots - epilogue - 40:
        if loops_at and w.slots >= loops_at[0]:
            loops_at.pop(0)
            w.counted_loop()
        elif rng.random() < 0.25:
            w.forward_branch()
        else:
            w.straight(rng.randrange(1, 6))
    while w.slots < slots - epilogue:
        w.alu()
    for reg in w.WORK[1:]:
        w.emit(f"xor %r0, {reg}")
    w.emit("exit")
    w.lines.append("too_short:")
    w.emit("mov %r0, 1")
    w.emit("exit")
    return "\n".join(w.lines) + "\n"


def generated_input() -> bytes:
    """The input the generated program is checked on: byte i = i."""
    return bytes(range(_ProgramWriter.INPUT_LEN))


def batch_records(packet: bytes, count: int) -> Any:
    """A C-contiguous 2-D ``uint8`` array: ``count`` copies of ``packet``."""
    import numpy as np

    row = np.frombuffer(packet, dtype=np.uint8)
    return np.ascontiguousarray(np.tile(row, (count, 1)))


@dataclass(frozen=True)
class BatchCase:
    """parse.c on the JIT: one ``run_batch`` call over ``size`` packets."""

    size: int
    threads: int = 1

    @property
    def id(self) -> str:
        return f"{self.size}" + (f"-{self.threads}threads" if self.threads > 1 else "")


def batch_cases() -> list[BatchCase]:
    return [BatchCase(size) for size in BATCH_SIZES] + [BatchCase(BATCH_SIZES[-1], BATCH_THREADS)]


# --------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Timing:
    """Per-run time of one benchmark, in nanoseconds."""

    median_ns: float
    min_ns: float
    rounds: int
    runs_per_round: int


@dataclass(frozen=True)
class TimingSettings:
    max_time_s: float = 1.0  # --benchmark-max-time: time budget per benchmark
    min_rounds: int = 5  # --benchmark-min-rounds
    round_s: float = 0.002  # aim for rounds this long (calibrated)
    max_rounds: int = 2000


def call_loop(fn: Callable[..., object], *args: object) -> Callable[[int], None]:
    """``loop(k)`` calls ``fn(*args)`` k times with a timeit-like inner loop.

    pytest-benchmark's own runner calls ``fn(*args, **kwargs)`` per iteration,
    which costs ~30 ns more than a plain call here: too much next to a 50 ns
    call. This loop costs ~5 ns per step, the same for every measured call.
    """
    if len(args) == 0:

        def loop0(k: int) -> None:
            f = fn
            for _ in repeat(None, k):
                f()

        return loop0
    if len(args) == 1:

        def loop1(k: int) -> None:
            f, a = fn, args[0]
            for _ in repeat(None, k):
                f(a)

        return loop1
    if len(args) == 2:

        def loop2(k: int) -> None:
            f, a, b = fn, args[0], args[1]
            for _ in repeat(None, k):
                f(a, b)

        return loop2
    raise ValueError("call_loop takes at most two arguments")


def _calibrate(run_round: Callable[[int], int], settings: TimingSettings) -> tuple[int, int]:
    """(k, rounds): k steps make a round of about ``settings.round_s`` by the
    clock of ``run_round(k)`` (which returns the ns it measured), and as many
    rounds as ``settings`` allows."""
    target_ns = settings.round_s * 1e9
    k = 1
    while True:
        elapsed = max(run_round(k), 1)
        if elapsed >= target_ns or k >= 1 << 32:
            break
        k = min(k * 100, max(k + 1, int(k * target_ns * 1.1 / elapsed)))
    rounds = int(settings.max_time_s * 1e9 / elapsed)
    return k, max(settings.min_rounds, min(rounds, settings.max_rounds))


def _per_run_timing(benchmark: Any, runs_per_round: int, data: list[float]) -> Timing:
    """Store ``data`` (seconds per round) as time per run in pytest-benchmark."""
    meta = benchmark.stats
    stored: list[float] = meta.stats.data
    stored[:] = [seconds / runs_per_round for seconds in data]
    meta.iterations = runs_per_round
    return Timing(
        median_ns=statistics.median(stored) * 1e9,
        min_ns=min(stored) * 1e9,
        rounds=len(stored),
        runs_per_round=runs_per_round,
    )


def measure(
    benchmark: Any, unit: Callable[[int], object], settings: TimingSettings, *, scale: int = 1
) -> Timing | None:
    """Time ``unit(k)``, which must perform k runs, with pytest-benchmark.

    k is calibrated so one round lasts about ``settings.round_s``; the stored
    round times are divided by k (and ``iterations`` set to k), so the
    pytest-benchmark table and JSON show time per run. When each of the k
    steps performs ``scale`` runs (a batch of ``scale`` records), the times
    are divided by k * scale instead. Returns None when benchmarks are
    disabled (then ``unit(1)`` runs once).
    """
    if benchmark.disabled:
        benchmark.pedantic(unit, args=(1,), rounds=1)
        return None

    def wall_ns(k: int) -> int:
        start = time.perf_counter_ns()
        unit(k)
        return time.perf_counter_ns() - start

    k, rounds = _calibrate(wall_ns, settings)
    benchmark.pedantic(unit, args=(k,), rounds=rounds, warmup_rounds=1, iterations=1)
    return _per_run_timing(benchmark, k * scale, list(benchmark.stats.stats.data))


def measure_reported(
    benchmark: Any, unit: Callable[[int], float], settings: TimingSettings, *, scale: int = 1
) -> Timing | None:
    """Like :func:`measure`, but a round lasts what ``unit(k)`` *returns* (in
    seconds), not the wall time of the Python call around it.

    For ``Executable.timeit``, which runs the program k times inside Rust and
    returns the time of that loop alone, and for ``compile_time``. The
    pytest-benchmark table and JSON show these reported times per run.
    """
    if benchmark.disabled:
        benchmark.pedantic(unit, args=(1,), rounds=1)
        return None
    k, rounds = _calibrate(lambda k: int(unit(k) * 1e9), settings)
    reported: list[float] = []

    def recorded(k: int) -> None:
        reported.append(unit(k))

    benchmark.pedantic(recorded, args=(k,), rounds=rounds, warmup_rounds=1, iterations=1)
    # The first recorded round is the warm-up, which pytest-benchmark drops.
    return _per_run_timing(benchmark, k * scale, reported[-rounds:])


def wall_clock(unit: Callable[[int], object]) -> Callable[[int], float]:
    """``unit`` as a function returning the seconds its call took."""

    def timed(k: int) -> float:
        start = time.perf_counter_ns()
        unit(k)
        return (time.perf_counter_ns() - start) / 1e9

    return timed


def measure_paired(
    benchmark: Any,
    unit: Callable[[int], float],
    baseline: Callable[[int], float],
    settings: TimingSettings,
    *,
    scale: int = 1,
    baseline_scale: int = 1,
) -> tuple[Timing, Timing] | None:
    """Time ``unit`` and ``baseline`` in alternating rounds: (unit, baseline).

    Both return the seconds their k runs took (``Executable.timeit``, or
    :func:`wall_clock`), each calibrated to rounds of about
    ``settings.round_s``. A baseline round runs just before every round of
    ``unit`` (in pytest-benchmark's untimed setup), so both sides see the
    same load on a shared machine and their ratio is steadier than that of
    two benchmarks timed a minute apart. pytest-benchmark stores ``unit``.
    """
    if benchmark.disabled:
        baseline(1)
        benchmark.pedantic(unit, args=(1,), rounds=1)
        return None
    k_base, _ = _calibrate(lambda k: int(baseline(k) * 1e9), settings)
    k, rounds = _calibrate(lambda k: int(unit(k) * 1e9), settings)
    rounds = max(settings.min_rounds, rounds // 2)  # two rounds per round
    reported: list[float] = []
    base: list[float] = []

    def recorded(k: int) -> None:
        reported.append(unit(k))

    def run_baseline() -> None:
        base.append(baseline(k_base))

    benchmark.pedantic(
        recorded, args=(k,), setup=run_baseline, rounds=rounds, warmup_rounds=1, iterations=1
    )
    timing = _per_run_timing(benchmark, k * scale, reported[-rounds:])
    per_run = [seconds / (k_base * baseline_scale) for seconds in base[-rounds:]]
    base_timing = Timing(
        median_ns=statistics.median(per_run) * 1e9,
        min_ns=min(per_run) * 1e9,
        rounds=len(per_run),
        runs_per_round=k_base * baseline_scale,
    )
    return timing, base_timing


# --------------------------------------------------------------------------
# Results of the current run, for the terminal summary


@dataclass(frozen=True)
class InterpResult:
    case: InterpCase
    executed: int
    timing: Timing

    @property
    def ns_per_insn(self) -> float:
        return self.timing.median_ns / self.executed

    @property
    def long(self) -> bool:
        return self.executed >= LONG_PROGRAM_INSNS


@dataclass(frozen=True)
class RustResult:
    """In-Rust time per run (``Executable.timeit``) of one case, and for the
    JIT the native C loop timed in alternation with it."""

    case: RustCase
    executed: int
    timing: Timing
    native: Timing | None = None


@dataclass(frozen=True)
class CompileResult:
    """JIT compile time of one program: ``timing`` holds ``exe.compile_time``
    per compile; ``load_ns`` is the median wall time of the whole ``load()``."""

    slots: int
    timing: Timing
    load_ns: float
    code_size: int


@dataclass
class Results:
    interp: dict[InterpCase, InterpResult] = field(default_factory=dict)
    native_call: dict[str, Timing] = field(default_factory=dict)
    native_loop: dict[str, Timing] = field(default_factory=dict)
    #: (argument kind, side) -> timing; side is "noop" or "run" (interpreter)
    #: or "jit"; the kinds are those of CALL_KINDS and JIT_CALL_KINDS.
    calls: dict[tuple[str, str], Timing] = field(default_factory=dict)
    in_rust: dict[RustCase, RustResult] = field(default_factory=dict)
    #: RustCase (jit-verified) -> why the verifier refused the program.
    unverified: dict[RustCase, str] = field(default_factory=dict)
    #: tier -> InterpCase.id of a benchmark program, or GENERATED_KEY ->
    #: compile time.
    compile: dict[str, dict[str, CompileResult]] = field(
        default_factory=lambda: {tier: {} for tier in JIT_TIERS}
    )
    #: BatchCase -> (run_batch, timeit(packet, N) in alternation), per packet.
    batch: dict[BatchCase, tuple[Timing, Timing]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (
            self.interp
            or self.native_call
            or self.native_loop
            or self.calls
            or self.in_rust
            or any(self.compile.values())
            or self.batch
        )


#: Argument kinds of the call-overhead benchmark, with their labels.
CALL_KINDS: Final[dict[str, str]] = {
    "empty": "no argument",
    "bytes": "bytes[74] (copied)",
    "bytearray": "bytearray[74] (in place)",
}

#: Programs and arguments of exe.run() on the JIT, with their labels. The
#: kinds shared with CALL_KINDS have the same argument, hence the same _noop.
JIT_CALL_KINDS: Final[dict[str, str]] = {
    "empty": "empty program, no argument",
    "noop64": "noop.c, bytearray[64]",
    "bytes": "parse.c, bytes[74] (copied)",
    "bytearray": "parse.c, bytearray[74] (in place)",
}


def time_call(
    benchmark: Any,
    kind: str,
    side: str,
    fn: Callable[..., object],
    args: tuple[object, ...],
    label: str,
    goal_ns: float | None,
    results: Results,
    settings: TimingSettings,
) -> None:
    """Times ``fn(*args)`` from Python as side ``side`` ("noop", "run" or
    "jit") of argument kind ``kind``, and reports it next to the _noop
    baseline of the same kind when that has been timed."""
    benchmark.group = f"call-overhead-{kind}"
    timing = measure(benchmark, call_loop(fn, *args), settings)
    if timing is None:
        return
    results.calls[(kind, side)] = timing
    info: dict[str, object] = {"ns_per_call": timing.median_ns, "call": label}
    baseline = results.calls.get((kind, "noop"))
    if side != "noop" and baseline is not None:
        info["noop_ns_per_call"] = baseline.median_ns
        info["overhead_ns"] = timing.median_ns - baseline.median_ns
        info["ratio_to_noop"] = timing.median_ns / baseline.median_ns
    if side != "noop" and goal_ns is not None:
        info.update(goal_ns=goal_ns, goal_met=timing.median_ns < goal_ns)
    benchmark.extra_info.update(info)


#: Results.compile key of the generated program.
GENERATED_KEY: Final = "generated"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def summary_lines(results: Results) -> list[str]:
    """The summary table and goal lines for the terminal."""
    lines: list[str] = []
    if results.interp or results.native_loop or results.native_call:
        header = (
            f"{'program':<9} {'variant':<22} {'insns':>9} {'interp ns/run':>14} "
            f"{'ns/insn':>8} {'native ns/run':>14} {'cffi ns/call':>13} {'interp/native':>14}"
        )
        lines.append(header)
        lines.append("-" * len(header))
        order = {case: i for i, case in enumerate(interp_cases())}
        shown_native: set[str] = set()
        for case in sorted(results.interp, key=lambda c: order.get(c, len(order))):
            res = results.interp[case]
            native = results.native_loop.get(case.program)
            call = results.native_call.get(case.program)
            ratio = res.timing.median_ns / native.median_ns if native else None
            mark = "*" if res.long else " "
            lines.append(
                f"{case.program:<9} {case.variant:<22} {res.executed:>9,} "
                f"{_fmt(res.timing.median_ns):>14} {_fmt(res.ns_per_insn, 2):>7}{mark} "
                f"{_fmt(native.median_ns if native else None, 2):>14} "
                f"{_fmt(call.median_ns if call else None):>13} "
                f"{_fmt(ratio):>13}x"
            )
            shown_native.add(case.program)
        for program in PROGRAMS:  # native-only results (interpreter deselected)
            if program in shown_native:
                continue
            native = results.native_loop.get(program)
            call = results.native_call.get(program)
            if native or call:
                lines.append(
                    f"{program:<9} {'native only':<22} {'-':>9} {'-':>14} {'-':>8} "
                    f"{_fmt(native.median_ns if native else None, 2):>14} "
                    f"{_fmt(call.median_ns if call else None):>13} {'-':>14}"
                )
        lines.extend(
            [
                "All times are medians over rounds, in ns; goals are judged on medians.",
                "interp = exe.run(bytearray) through the Python API (interpreter, verify=False).",
                "ns/insn = full run() time / executed insns, Python call included; "
                f"* = long program (>= {LONG_PROGRAM_INSNS:,}",
                "  executed insns), where that call is negligible: the ns/insn goal applies there.",
                "native = the same C built with gcc -O2, timed in a C loop (loop_<name>); "
                "cffi ns/call = one",
                "  lib.bench_<name>() call from Python; interp/native = interp ns/run / "
                "native ns/run.",
            ]
        )
        for isa in ISAS:
            py = results.interp.get(InterpCase("helpers", isa, "python"))
            nat = results.interp.get(InterpCase("helpers", isa, "native"))
            if py is not None and nat is not None:
                extra = (py.timing.median_ns - nat.timing.median_ns) / HELPER_CALLS_PER_RUN
                lines.append(
                    f"helpers {isa}: {HELPER_CALLS_PER_RUN} helper calls per run; a Python helper "
                    f"costs {extra:,.1f} ns more per call than a NativeHelper (cffi)"
                )
        long_rows = [res for res in results.interp.values() if res.long]
        if long_rows:
            worst = max(long_rows, key=lambda res: res.ns_per_insn)
            ok = worst.ns_per_insn <= GOAL_NS_PER_INSN
            best_case = worst.timing.min_ns / worst.executed
            lines.append(
                f"goal <= {GOAL_NS_PER_INSN:g} ns per executed instruction (long programs, "
                f"full run() time): worst {worst.ns_per_insn:.2f} ns/insn median "
                f"({best_case:.2f} fastest round), {worst.case.program} {worst.case.variant} "
                f"-> {_met(ok)}"
            )
        else:
            lines.append(
                f"goal <= {GOAL_NS_PER_INSN:g} ns per executed instruction: not measured "
                "(no long program ran)"
            )
    # The interpreter's rows; a JIT-only run fills only the _noop side.
    if any(side == "run" for _, side in results.calls):
        if lines:
            lines.append("")
        lines.append(
            "call overhead (median ns per call; both sides include the same ~5 ns "
            "Python loop step):"
        )
        for kind, label in CALL_KINDS.items():
            run = results.calls.get((kind, "run"))
            noop = results.calls.get((kind, "noop"))
            if run is None and noop is None:
                continue
            overhead = run.median_ns - noop.median_ns if run and noop else None
            ratio = run.median_ns / noop.median_ns if run and noop else None
            lines.append(
                f"  {label:<26} exe.run {_fmt(run.median_ns if run else None):>8} ns   "
                f"_noop {_fmt(noop.median_ns if noop else None):>7} ns   "
                f"overhead {_fmt(overhead):>7} ns   ratio {_fmt(ratio, 2):>6}x"
            )
        empty = results.calls.get(("empty", "run"))
        if empty is not None:
            lines.append(
                f"goal empty run() < {GOAL_EMPTY_RUN_NS:g} ns: {empty.median_ns:.1f} ns median "
                f"({empty.min_ns:.1f} fastest round) "
                f"-> {_met(empty.median_ns < GOAL_EMPTY_RUN_NS)}"
            )
    return lines


def _ratio(num: Timing | None, den: Timing | None) -> float | None:
    return num.median_ns / den.median_ns if num and den else None


def _native_of(results: Results, res: RustResult | None) -> Timing | None:
    """The native time a JIT result is compared with: the C loop timed in
    alternation with it, else the one of this run's native benchmark."""
    if res is None:
        return None
    return res.native or results.native_loop.get(res.case.program)


def _jit_table_lines(results: Results) -> list[str]:
    header = (
        f"{'program':<9} {'variant':<22} {'insns':>11} {'interp ns/run':>14} "
        f"{'jit ns/run':>12} {'native ns/run':>14} {'jit/native':>11} {'interp/jit':>11} "
        f"{'compile ms':>11} {'code B':>7}"
    )
    lines = [
        "JIT vs interpreter vs native C, in-Rust time per run, CHECKED mode (every "
        "load/store bounds-checked,",
        "instruction budget counted on back edges; verified-mode ratios follow the table):",
        header,
        "-" * len(header),
    ]
    for program in PROGRAMS:
        for isa in ISAS:
            interp = results.in_rust.get(RustCase(program, isa, "interpreter"))
            jit = results.in_rust.get(RustCase(program, isa, "jit"))
            some = jit or interp
            if some is None:
                continue
            base, executed = some.case.base, some.executed
            native = _native_of(results, jit)
            jit_t = jit.timing if jit else None
            interp_t = interp.timing if interp else None
            compiled = results.compile["optimized"].get(base.id)
            jit_native = _ratio(jit_t, native)
            interp_jit = _ratio(interp_t, jit_t)
            lines.append(
                f"{program:<9} {base.variant:<22} {executed:>11,} "
                f"{_fmt(interp_t.median_ns if interp_t else None):>14} "
                f"{_fmt(jit_t.median_ns if jit_t else None):>12} "
                f"{_fmt(native.median_ns if native else None, 2):>14} "
                f"{_fmt(jit_native, 2):>10}x {_fmt(interp_jit, 1):>10}x "
                f"{_fmt(compiled.timing.median_ns / 1e6 if compiled else None, 3):>11} "
                f"{compiled.code_size if compiled else '-':>7}"
            )
    lines.extend(
        [
            "interp, jit = exe.timeit(input, k): the program run k times inside Rust on a "
            "private copy of the input",
            "  (no Python per run); native = loop_<name> (gcc -O2, C loop), timed in rounds "
            "alternating with the",
            "  JIT's (so v3 and v1 rows have their own native time). Medians over rounds, in ns.",
            "compile ms = median exe.compile_time of load(engine='jit', "
            "jit_tier='optimized') (Cranelift);",
            "  code B = its exe.code_size. helpers.c uses cffi NativeHelpers.",
        ]
    )
    jit_noop = results.in_rust.get(RustCase("noop", "v3", "jit"))
    native_noop = _native_of(results, jit_noop)
    if jit_noop and native_noop:
        lines.append(
            f"fixed cost of one in-Rust run (noop v3, 2 insns): JIT {jit_noop.timing.median_ns:.1f}"
            f" ns, native C {native_noop.median_ns:.2f} ns; it is part of every JIT time above"
        )
    for isa, shape in [(isa, shape) for shape in ("verified", "checked") for isa in ISAS]:
        # The goal is judged on the verified code shape where the verifier
        # proves the program, and on checked code where it cannot; the
        # checked-only line shows what bounds checks and budget cost.
        ratios: dict[str, float] = {}
        used: dict[str, str] = {}
        for program in COMPUTE_PROGRAMS:
            engines = [VERIFIED, "jit"] if shape == "verified" else ["jit"]
            for engine in engines:
                jit = results.in_rust.get(RustCase(program, isa, engine))
                ratio = _ratio(jit.timing if jit else None, _native_of(results, jit))
                if ratio is not None:
                    ratios[program] = ratio
                    used[program] = "verified" if engine == VERIFIED else "checked"
                    break
        label = (
            "verified where proven, else checked ("
            + ", ".join(f"{p} {used[p]}" for p in COMPUTE_PROGRAMS if p in used)
            + ")"
            if shape == "verified"
            else "checked mode only"
        )
        head = (
            f"goal JIT/native <= {GOAL_JIT_NATIVE_GMEAN:g}x geometric mean over "
            f"{', '.join(COMPUTE_PROGRAMS)} and <= {GOAL_JIT_NATIVE_EACH:g}x each, {isa}, "
            f"{label}:"
        )
        missing = [p for p in COMPUTE_PROGRAMS if p not in ratios]
        if missing:
            lines.append(f"{head} not measured (missing {', '.join(missing)})")
            continue
        gmean = statistics.geometric_mean(ratios.values())
        worst = max(ratios, key=lambda p: ratios[p])
        over = [p for p in COMPUTE_PROGRAMS if ratios[p] > GOAL_JIT_NATIVE_EACH]
        ok = gmean <= GOAL_JIT_NATIVE_GMEAN and not over
        lines.append(
            f"{head} mean {gmean:.2f}x ({_met(gmean <= GOAL_JIT_NATIVE_GMEAN)}), worst "
            f"{ratios[worst]:.2f}x {worst}, {len(over)} of {len(ratios)} over "
            f"{GOAL_JIT_NATIVE_EACH:g}x -> {_met(ok)}"
        )
    lines.extend(_verified_lines(results))
    return lines


def _verified_lines(results: Results) -> list[str]:
    """JIT/native of the verified code shape next to the checked one, and
    which programs the verifier could not prove (so have no verified row)."""
    lines: list[str] = []
    for isa in ISAS:
        parts: list[str] = []
        for program in COMPUTE_PROGRAMS:
            case = RustCase(program, isa, VERIFIED)
            res = results.in_rust.get(case)
            checked = results.in_rust.get(RustCase(program, isa, "jit"))
            ratio = _ratio(res.timing if res else None, _native_of(results, res))
            if ratio is not None:
                c = _ratio(checked.timing if checked else None, _native_of(results, checked))
                parts.append(
                    f"{program} {ratio:.2f}x" + (f" (checked {c:.2f}x)" if c is not None else "")
                )
            elif case in results.unverified:
                parts.append(f"{program} not verifiable ({results.unverified[case]})")
        if parts:
            lines.append(f"verified JIT/native, {isa}: " + "; ".join(parts))
    return lines


def _helper_lines(results: Results) -> list[str]:
    lines: list[str] = []
    for isa in ISAS:
        jit = results.in_rust.get(RustCase("helpers", isa, "jit"))
        native = _native_of(results, jit)
        if jit is None or native is None:
            continue
        extra = (jit.timing.median_ns - native.median_ns) / HELPER_CALLS_PER_RUN
        if not lines:
            lines.append(
                f"helper calls: helpers.c ({HELPER_CALLS_PER_RUN} calls per run), cffi "
                "NativeHelpers under the JIT (in Rust) vs native C calling the same C helpers:"
            )
        lines.append(
            f"  {isa}: JIT {jit.timing.median_ns:.1f} ns/run, native {native.median_ns:.2f} "
            f"ns/run: (JIT - native) / {HELPER_CALLS_PER_RUN} = {extra:.2f} ns more per call "
            f"-> goal <= {GOAL_HELPER_EXTRA_NS:g} ns: {_met(extra <= GOAL_HELPER_EXTRA_NS)}"
        )
        jit_noop = results.in_rust.get(RustCase("noop", isa, "jit"))
        native_noop = _native_of(results, jit_noop)
        if jit_noop and native_noop:
            fixed = jit_noop.timing.median_ns - native_noop.median_ns
            net = (jit.timing.median_ns - native.median_ns - fixed) / HELPER_CALLS_PER_RUN
            lines.append(
                f"      less the fixed per-run cost (noop: JIT - native = {fixed:.1f} ns): "
                f"{net:.2f} ns per call (diagnosis only; the goal is judged above)"
            )
    return lines


def _jit_call_lines(results: Results) -> list[str]:
    rows = [
        (kind, label) for kind, label in JIT_CALL_KINDS.items() if (kind, "jit") in results.calls
    ]
    if not rows:
        return []
    lines = [
        "JIT exe.run() from Python (median ns per call; _noop = ebpfvm._core._noop with the same "
        "argument;",
        "  both include the same ~5 ns Python loop step):",
    ]
    for kind, label in rows:
        run = results.calls[(kind, "jit")]
        noop = results.calls.get((kind, "noop"))
        overhead = run.median_ns - noop.median_ns if noop else None
        lines.append(
            f"  {label:<34} exe.run {run.median_ns:>7.1f} ns   "
            f"_noop {_fmt(noop.median_ns if noop else None):>6} ns   "
            f"overhead {_fmt(overhead):>6} ns   ratio {_fmt(_ratio(run, noop), 2):>5}x"
        )
    empty = results.calls.get(("empty", "jit"))
    if empty is not None:
        lines.append(
            f"goal empty run() < {GOAL_EMPTY_RUN_NS:g} ns (JIT): {empty.median_ns:.1f} ns "
            f"({empty.min_ns:.1f} fastest round) -> {_met(empty.median_ns < GOAL_EMPTY_RUN_NS)}"
        )
    for kind in ("bytes", "bytearray"):
        parse = results.calls.get((kind, "jit"))
        if parse is not None:
            lines.append(
                f"goal parse run() < {GOAL_PARSE_RUN_NS:g} ns (JIT, {JIT_CALL_KINDS[kind]}): "
                f"{parse.median_ns:.1f} ns ({parse.min_ns:.1f} fastest round) "
                f"-> {_met(parse.median_ns < GOAL_PARSE_RUN_NS)}"
            )
    return lines


def _compile_lines(results: Results) -> list[str]:
    lines: list[str] = []
    for tier in JIT_TIERS:
        gen = results.compile[tier].get(GENERATED_KEY)
        if gen is None:
            continue
        ms = gen.timing.median_ns / 1e6
        if not lines:
            lines.append(
                f"JIT compile time, generated program of {gen.slots:,} instruction slots (ALU, "
                "input and stack loads/stores, lddw, forward branches, 2 loops), checked shape:"
            )
        lines.append(
            f"  {tier:<9} tier: exe.compile_time median {ms:.3f} ms "
            f"({gen.timing.min_ns / 1e6:.3f} fastest), whole load() {gen.load_ns / 1e6:.3f} ms, "
            f"{gen.code_size:,} B of code"
        )
    gen = results.compile[GOAL_COMPILE_TIER].get(GENERATED_KEY)
    if gen is not None:
        ms = gen.timing.median_ns / 1e6
        lines.append(
            f"goal compile < {GOAL_COMPILE_MS:g} ms for 1,000 instructions (a default, tiered "
            f"load returns with {GOAL_COMPILE_TIER} code; Cranelift's replaces it in the "
            f"background): {ms:.3f} ms -> {_met(ms < GOAL_COMPILE_MS)}"
        )
    return lines


def _batch_lines(results: Results) -> list[str]:
    if not results.batch:
        return []
    lines = [
        "run_batch on parse v3 (JIT): 2-D uint8 array of N copies of the 74-byte packet, "
        "ns per packet",
        f"  {'N':>7} {'run_batch':>10} {'timeit/N':>9} {'ratio':>7}    "
        f"{f'threads={BATCH_THREADS}':>10} {'timeit/N':>9} {'ratio':>7}",
    ]
    worst: tuple[float, int] | None = None
    for size in BATCH_SIZES:
        one = results.batch.get(BatchCase(size))
        more = results.batch.get(BatchCase(size, BATCH_THREADS))
        if not (one or more):
            continue
        ratio = _ratio(*one) if one else None
        if ratio is not None and (worst is None or ratio > worst[0]):
            worst = (ratio, size)
        lines.append(
            f"  {size:>7,} {_fmt(one[0].median_ns if one else None):>10} "
            f"{_fmt(one[1].median_ns if one else None):>9} {_fmt(ratio, 2):>6}x    "
            f"{_fmt(more[0].median_ns if more else None):>10} "
            f"{_fmt(more[1].median_ns if more else None):>9} "
            f"{_fmt(_ratio(*more) if more else None, 2):>6}x"
        )
    lines.extend(
        [
            "  run_batch = wall time of one exe.run_batch(array) call / N; timeit/N = "
            "exe.timeit(packet, N) / N, the",
            "  one-thread in-Rust time per packet, timed in rounds alternating with "
            "run_batch's; ratio = run_batch / timeit.",
            f"  With threads={BATCH_THREADS} a ratio under 1 is a parallel speedup "
            f"(1/{BATCH_THREADS} at best; {os.cpu_count()} CPUs here, shared with "
            "whatever else runs).",
        ]
    )
    if worst is not None:
        lines.append(
            f"goal run_batch <= {GOAL_BATCH_RATIO:g}x the in-Rust time per packet at N >= "
            f"{BATCH_SIZES[0]} (one thread): worst {worst[0]:.2f}x (N={worst[1]:,}) "
            f"-> {_met(worst[0] <= GOAL_BATCH_RATIO)}"
        )
    return lines


def jit_summary_lines(results: Results) -> list[str]:
    """The JIT sections of the summary (empty when no JIT benchmark ran)."""
    lines: list[str] = []
    sections = [_helper_lines(results), _jit_call_lines(results), _compile_lines(results)]
    if results.in_rust:
        sections.insert(0, _jit_table_lines(results))
    sections.append(_batch_lines(results))
    for section in sections:
        if section:
            if lines:
                lines.append("")
            lines.extend(section)
    return lines
