"""Shared machinery for the engine tests (test_engines*.py, test_batch.py,
test_jit_fuzz.py): run one program in every engine and record everything a run
can be observed by (r0, the instruction count or the fault, memory, helper calls).

Programs load unverified (``verify=False``) unless a test says otherwise: these
tests compare the engines in checked mode, on the faults, budgets and helper
calls that verified programs never reach.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ebpfvm

U64_MASK = (1 << 64) - 1
U32_MASK = (1 << 32) - 1
INT64_MIN = 1 << 63
INT32_MIN = 1 << 31

#: The engines ``Program.load`` accepts.
ENGINES = ("interpreter", "jit", "auto")
#: Stands for an attribute an ExecutionError lacks.
MISSING = "<missing attribute>"
#: Ways of running a program that must all be indistinguishable: the
#: interpreter, each JIT tier on its own (engine="jit" with jit_tier=
#: "baseline" or "optimized"), and "auto" before and once it has become hot
#: and runs compiled code.
VARIANTS = ("interpreter", "jit-baseline", "jit-optimized", "auto", "auto-hot")
#: The variants that load engine="jit" with one tier.
JIT_TIER_VARIANTS = {"jit-baseline": "baseline", "jit-optimized": "optimized"}
#: Runs that certainly make an "auto" executable hot (it compiles after 64).
AUTO_WARMUP_RUNS = 70

#: A helper table factory: given a list to log calls into, returns the helpers.
HelperFactory = Callable[[list[Any]], Mapping[int, Any]]


def asm(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Outcome:
    """Everything observable about one run."""

    #: ("ok", r0, instructions) or ("error", kind, pc)
    result: tuple[Any, ...]
    #: The input buffer after the run (None when the program ran without one).
    memory: bytes | None
    #: What the helpers logged during the run.
    calls: tuple[Any, ...]

    @property
    def ok(self) -> bool:
        return self.result[0] == "ok"

    @property
    def r0(self) -> int:
        assert self.ok, f"the run faulted: {self.result}"
        return self.result[1]

    @property
    def count(self) -> int:
        assert self.ok, f"the run faulted: {self.result}"
        return self.result[2]


def _run_once(exe: ebpfvm.Executable, buf: bytearray | None) -> tuple[Any, ...]:
    try:
        r0, executed = exe.run_counted(buf)
    except ebpfvm.ExecutionError as exc:
        # Attributes are read leniently here so that engines can be compared even
        # where an error lacks them; test_engines checks that they are present.
        return ("error", getattr(exc, "kind", MISSING), getattr(exc, "pc", MISSING))
    assert 0 <= r0 <= U64_MASK
    return ("ok", r0, executed)


def load_variant(
    program: ebpfvm.Program,
    variant: str,
    *,
    warmup_mem: bytes | None = None,
    verify: bool = False,
    **load_args: Any,
) -> ebpfvm.Executable:
    """Load ``program`` for ``variant`` (in checked mode unless ``verify``);
    "auto-hot" is run until it has compiled."""
    engine = "auto" if variant == "auto-hot" else variant
    tier = JIT_TIER_VARIANTS.get(variant)
    if tier is not None:
        engine = "jit"
        load_args["jit_tier"] = tier
    exe = program.load(engine=engine, verify=verify, **load_args)
    assert exe.engine == engine
    if tier is not None:
        assert exe.compiled
        assert exe.jit_tier == tier, variant
    elif variant == "interpreter":
        assert not exe.compiled
    elif variant == "auto":
        assert not exe.compiled
    else:
        for _ in range(AUTO_WARMUP_RUNS):
            try:
                exe.run(None if warmup_mem is None else bytearray(warmup_mem))
            except ebpfvm.Error:
                pass
        assert exe.compiled, exe.compile_error
    return exe


def observe(
    program: ebpfvm.Program,
    variant: str,
    mem: bytes | None = None,
    *,
    helpers: HelperFactory | None = None,
    **load_args: Any,
) -> Outcome:
    """Run ``program`` once under ``variant`` on a fresh copy of ``mem``."""
    log: list[Any] = []
    if helpers is not None:
        load_args["helpers"] = helpers(log)
    exe = load_variant(program, variant, warmup_mem=mem, **load_args)
    log.clear()  # warm-up runs of "auto-hot" call helpers too
    buf = None if mem is None else bytearray(mem)
    result = _run_once(exe, buf)
    if variant == "auto":
        assert not exe.compiled, "auto compiled on its first run"
    return Outcome(result, None if buf is None else bytes(buf), tuple(log))


def observe_all(
    program: ebpfvm.Program | str | bytes,
    mem: bytes | None = None,
    *,
    helpers: HelperFactory | None = None,
    variants: tuple[str, ...] = VARIANTS,
    **load_args: Any,
) -> Outcome:
    """Run ``program`` under every variant, assert that they all agree with the
    interpreter, and return the interpreter's outcome."""
    if isinstance(program, str):
        program = ebpfvm.Program.from_asm(program)
    elif isinstance(program, bytes):
        program = ebpfvm.Program(program)
    outcomes = {v: observe(program, v, mem, helpers=helpers, **load_args) for v in variants}
    reference = outcomes[variants[0]]
    for variant, outcome in outcomes.items():
        assert outcome == reference, (
            f"{variant} differs from {variants[0]}:\n  {outcome}\n  {reference}"
        )
    return reference


# --- helpers used by several test files ---------------------------------------

#: Sums the input bytes: a loop, loads, and a result that depends on them.
LOOP_SUM = asm(
    "mov %r0, 0",
    "mov %r3, %r2",
    "loop:",
    "jeq %r3, 0, out",
    "sub %r3, 1",
    "mov %r4, %r1",
    "add %r4, %r3",
    "ldxb %r5, [%r4]",
    "add %r0, %r5",
    "ja loop",
    "out:",
    "exit",
)

NATIVE_PROTOTYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, *([ctypes.c_uint64] * 5))


def weighted(a: int, b: int, c: int, d: int, e: int) -> int:
    return (a + 2 * b + 3 * c + 4 * d + 5 * e) & U64_MASK


#: A C-callable helper made from a Python function by ctypes; kept alive here.
NATIVE_WEIGHTED = NATIVE_PROTOTYPE(weighted)


def native_helper() -> ebpfvm.NativeHelper:
    return ebpfvm.NativeHelper(NATIVE_WEIGHTED)
