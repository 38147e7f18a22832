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


def load_case(case: InterpCase, native: NativeLib | None) -> ebpfvm.Executable:
    helpers: dict[int, Any] | None = None
    if case.helpers == "python":
        helpers = {HELPER_MIX: py_mix, HELPER_COOKIE: py_cookie}
    elif case.helpers == "native":
        if native is None:
            raise ValueError("native helpers need the native build")
        helpers = {
            HELPER_MIX: native.helper(HELPER_MIX),
            HELPER_COOKIE: native.helper(HELPER_COOKIE),
        }
    program = ebpfvm.Program(read_bytecode(case.program, case.isa))
    return program.load(engine="interpreter", verify=False, helpers=helpers)


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


def measure(
    benchmark: Any, unit: Callable[[int], object], settings: TimingSettings
) -> Timing | None:
    """Time ``unit(k)``, which must perform k runs, with pytest-benchmark.

    k is calibrated so one round lasts about ``settings.round_s``; the stored
    round times are divided by k (and ``iterations`` set to k), so the
    pytest-benchmark table and JSON show time per run. Returns None when
    benchmarks are disabled (then ``unit(1)`` runs once).
    """
    if benchmark.disabled:
        benchmark.pedantic(unit, args=(1,), rounds=1)
        return None
    target_ns = settings.round_s * 1e9
    k = 1
    while True:
        start = time.perf_counter_ns()
        unit(k)
        elapsed = max(time.perf_counter_ns() - start, 1)
        if elapsed >= target_ns or k >= 1 << 32:
            break
        k = min(k * 100, max(k + 1, int(k * target_ns * 1.1 / elapsed)))
    rounds = int(settings.max_time_s * 1e9 / elapsed)
    rounds = max(settings.min_rounds, min(rounds, settings.max_rounds))
    benchmark.pedantic(unit, args=(k,), rounds=rounds, warmup_rounds=1, iterations=1)
    meta = benchmark.stats
    data: list[float] = meta.stats.data
    data[:] = [seconds / k for seconds in data]
    meta.iterations = k
    return Timing(
        median_ns=statistics.median(data) * 1e9,
        min_ns=min(data) * 1e9,
        rounds=len(data),
        runs_per_round=k,
    )


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


@dataclass
class Results:
    interp: dict[InterpCase, InterpResult] = field(default_factory=dict)
    native_call: dict[str, Timing] = field(default_factory=dict)
    native_loop: dict[str, Timing] = field(default_factory=dict)
    #: (argument kind, side) -> timing; side is "noop" or "run".
    calls: dict[tuple[str, str], Timing] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.interp or self.native_call or self.native_loop or self.calls)


#: Argument kinds of the call-overhead benchmark, with their labels.
CALL_KINDS: Final[dict[str, str]] = {
    "empty": "no argument",
    "bytes": "bytes[74] (copied)",
    "bytearray": "bytearray[74] (in place)",
}


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
    if results.calls:
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
