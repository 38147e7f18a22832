"""The bpf_conformance suite (313 tests), run through ebpfvm.

For every ``shared/conformance/bpf_conformance/*.data`` file:

(a) assemble its ``-- asm`` with ebpfvm's own assembler and run it,
(b) run the bytecode the upstream assembler produced
    (``bpf_conformance.assembled.json``), independently of our assembler,
(c) check our assembler's output equals that bytecode byte for byte,
(d) check our reader agrees with the upstream parser on ``mem`` and ``result``.

Every run gets a fresh bytearray copy of the test's memory (r1 = its address,
r2 = its length; no memory means r1 = r2 = 0) and must return exactly the
expected r0 as an unsigned 64-bit value.  All tests run, whatever their CPU
version (v1..v4) or group (callx included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import ebpfvm
import pytest
from conftest import CONFORMANCE
from ebpfvm.conformance import (
    UBPF_TEST_HELPERS,
    UBPF_UNWIND_HELPER,
    ConformanceTest,
    iter_tests,
    program_code,
)

#: Engines every test runs on.  Append "jit" once the JIT exists.
ENGINES = ["interpreter", "jit", "auto"]

#: Far more than any conformance test executes; keeps a broken jump from hanging the run.
MAX_INSTRUCTIONS = 1_000_000

U64_MASK = (1 << 64) - 1
TEST_DIR = CONFORMANCE / "bpf_conformance"
ASSEMBLED_JSON = CONFORMANCE / "bpf_conformance.assembled.json"
EXPECTED_COUNT = 313
CPU_VERSIONS = {"v1", "v2", "v3", "v4"}


@dataclass(frozen=True)
class Assembled:
    """One entry of bpf_conformance.assembled.json."""

    code: bytes
    mem: bytes
    result: int
    cpu_version: str
    groups: int


def _load_assembled() -> dict[str, Assembled]:
    """Read the JSON file, checking its structure as we go (fails collection loudly)."""
    with open(ASSEMBLED_JSON, encoding="utf-8") as f:
        data: Any = json.load(f)
    if not isinstance(data, dict) or not {"source", "group_bits", "tests"} <= data.keys():
        raise RuntimeError(f"{ASSEMBLED_JSON}: unexpected top-level structure")
    group_bits = data["group_bits"]
    if not isinstance(group_bits, dict) or not all(isinstance(v, int) for v in group_bits.values()):
        raise RuntimeError(f"{ASSEMBLED_JSON}: group_bits must map names to ints")
    all_groups = 0
    for bit in group_bits.values():
        all_groups |= bit
    entries: dict[str, Assembled] = {}
    for item in data["tests"]:
        name = item["test"]
        if not (isinstance(name, str) and name.startswith("bpf_conformance/")):
            raise RuntimeError(f"{ASSEMBLED_JSON}: bad test name {name!r}")
        name = name.removeprefix("bpf_conformance/")
        code = bytes.fromhex(item["code"])
        result = item["result"]
        if name in entries:
            raise RuntimeError(f"{ASSEMBLED_JSON}: {name} appears twice")
        if not code or len(code) % 8:
            raise RuntimeError(f"{ASSEMBLED_JSON}: {name}: code is not whole instructions")
        if not (isinstance(result, int) and 0 <= result <= U64_MASK):
            raise RuntimeError(f"{ASSEMBLED_JSON}: {name}: result {result!r} is not a u64")
        if item["cpu_version"] not in CPU_VERSIONS:
            raise RuntimeError(f"{ASSEMBLED_JSON}: {name}: bad cpu_version")
        if not (isinstance(item["groups"], int) and item["groups"] & ~all_groups == 0):
            raise RuntimeError(f"{ASSEMBLED_JSON}: {name}: bad groups")
        entries[name] = Assembled(
            code=code,
            mem=bytes.fromhex(item["mem"]),
            result=result,
            cpu_version=item["cpu_version"],
            groups=item["groups"],
        )
    return entries


TESTS: dict[str, ConformanceTest] = {t.name: t for t in iter_tests(TEST_DIR, recursive=False)}
ASSEMBLED = _load_assembled()

if len(TESTS) != EXPECTED_COUNT:
    raise RuntimeError(
        f"expected {EXPECTED_COUNT} bpf_conformance tests in {TEST_DIR}, found {len(TESTS)}"
    )
if set(TESTS) != set(ASSEMBLED):
    raise RuntimeError(
        "bpf_conformance files and assembled JSON disagree: "
        f"only files {sorted(set(TESTS) - set(ASSEMBLED))}, "
        f"only JSON {sorted(set(ASSEMBLED) - set(TESTS))}"
    )

NAMES = sorted(TESTS)


def run_program(code: bytes, mem: bytes | None, engine: str) -> int:
    """Load ``code`` with the uBPF test helpers and run it on a fresh copy of ``mem``."""
    executable = ebpfvm.Program(code).load(
        engine=engine,
        helpers=dict(UBPF_TEST_HELPERS),
        verify=False,  # uBPF's convention: unverified programs
        unwind_helper=UBPF_UNWIND_HELPER,
        max_instructions=MAX_INSTRUCTIONS,
    )
    buffer = bytearray(mem) if mem is not None else None
    return executable.run(buffer)


def test_suite_is_complete() -> None:
    assert len(NAMES) == EXPECTED_COUNT
    # Every test expects a result and none expects an error (FORMAT.md §2.5).
    assert all(t.result is not None and not t.expects_error for t in TESTS.values())
    # The suite spans all CPU versions and the callx group (run regardless).
    assert {a.cpu_version for a in ASSEMBLED.values()} == CPU_VERSIONS


@pytest.mark.parametrize("name", NAMES)
def test_reader_matches_upstream_parser(name: str) -> None:
    test, upstream = TESTS[name], ASSEMBLED[name]
    assert test.result == upstream.result
    assert (test.mem if test.mem is not None else b"") == upstream.mem
    assert test.asm is not None
    if test.raw is not None:
        # A `raw` section replaces `asm`: it is what the upstream runner executed.
        assert test.raw == upstream.code


@pytest.mark.parametrize("name", NAMES)
def test_assembler_matches_upstream(name: str) -> None:
    test, upstream = TESTS[name], ASSEMBLED[name]
    assert test.asm is not None
    code = ebpfvm.assemble(test.asm)
    assert isinstance(code, bytes)
    if test.raw is not None:
        # lddw.data carries both; the upstream bytecode is the raw section.
        assert code == test.raw
    assert code.hex() == upstream.code.hex()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", NAMES)
def test_run_from_our_assembler(name: str, engine: str) -> None:
    test = TESTS[name]
    assert test.asm is not None and test.result is not None
    code = ebpfvm.assemble(test.asm)
    result = run_program(code, test.mem, engine)
    assert result == test.result, f"r0 = {result:#x}, expected {test.result:#x}"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", NAMES)
def test_run_from_upstream_bytecode(name: str, engine: str) -> None:
    upstream = ASSEMBLED[name]
    mem = upstream.mem if TESTS[name].mem is not None else None
    result = run_program(upstream.code, mem, engine)
    assert result == upstream.result, f"r0 = {result:#x}, expected {upstream.result:#x}"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", [n for n in NAMES if TESTS[n].mem])
def test_memory_runs_are_independent(name: str, engine: str) -> None:
    """Two runs of one executable on fresh copies give the same result."""
    upstream = ASSEMBLED[name]
    executable = ebpfvm.Program(upstream.code).load(
        engine=engine,
        helpers=dict(UBPF_TEST_HELPERS),
        verify=False,  # uBPF's convention: unverified programs
        unwind_helper=UBPF_UNWIND_HELPER,
        max_instructions=MAX_INSTRUCTIONS,
    )
    first = executable.run(bytearray(upstream.mem))
    second = executable.run(bytearray(upstream.mem))
    # Passing bytes: the runtime works on a private copy, the caller's bytes stay intact.
    original = bytes(upstream.mem)
    third = executable.run(original)
    assert first == second == third == upstream.result
    assert original == upstream.mem


def test_program_code_prefers_raw() -> None:
    test = TESTS["lddw.data"]
    assert test.raw is not None
    assert program_code(test) == test.raw
    add = TESTS["add.data"]
    assert add.raw is None
    assert program_code(add) == ASSEMBLED["add.data"].code
