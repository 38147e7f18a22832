"""C library calls clang leaves in an object: memset, memcpy, memmove and
memcmp (emitted as calls when built with -fno-builtin, as falco's probe is),
loaded through ``ebpfvm.Object`` as ebpfvm builtins, verified, and run in
every engine. The object and its source are
rust/core/tests/elf_data/builtins.{c,o}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ebpfvm
import pytest
from engine_support import ENGINES

OBJECT = (
    Path(__file__).resolve().parent.parent / "rust" / "core" / "tests" / "elf_data" / "builtins.o"
)
WORDS = 256
XDP_PASS = 2


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def words(seed: int) -> list[int]:
    return [(i * 0x9E3779B97F4A7C15 + seed) % (1 << 64) for i in range(WORDS)]


def set_blob(obj: Any, slot: int, value: list[int]) -> None:
    obj.maps["blobs"][slot] = {"words": value}


def get_blob(obj: Any, slot: int) -> list[int]:
    return list(obj.maps["blobs"][slot].words)


def run(obj: Any, name: str, engine: str) -> int:
    exe = obj.programs[name].load(engine=engine)
    assert exe.engine == engine
    assert exe.verified  # the default: the builtins' calls are proven safe
    return exe.run(bytes(64)).retval


def test_c_library_calls_load_as_builtins() -> None:
    obj = ebpfvm.Object.open(OBJECT)
    assert set(obj.programs) == {
        "copy_blob",
        "fill_blob",
        "shift_blob",
        "compare_blobs",
        "clear_stack",
    }
    # An extern nothing provides fails only its own program, and says which.
    assert "no_such_function" in obj.load_errors["calls_unknown"]
    for name in obj.programs:
        assert obj.programs[name].verify()["insns_processed"] > 0


def test_memcpy_memset_memmove(engine: str) -> None:
    obj = ebpfvm.Object.open(OBJECT)
    set_blob(obj, 0, words(1))
    assert run(obj, "copy_blob", engine) == XDP_PASS
    assert get_blob(obj, 1) == words(1)
    assert run(obj, "shift_blob", engine) == XDP_PASS
    assert get_blob(obj, 0) == words(1)[:1] + words(1)[:-1]
    assert run(obj, "fill_blob", engine) == XDP_PASS
    assert get_blob(obj, 0) == [0xA5A5A5A5A5A5A5A5] * WORDS


def test_memcmp_orders_bytes_as_unsigned(engine: str) -> None:
    obj = ebpfvm.Object.open(OBJECT)
    a = words(7)
    set_blob(obj, 0, a)
    set_blob(obj, 1, a)
    assert run(obj, "compare_blobs", engine) == 2  # equal
    # Word 100's lowest byte (the first in memory) decides: 0x80 > 0x7f.
    b = list(a)
    a[100] = (a[100] & ~0xFF) | 0x80
    b[100] = (b[100] & ~0xFF) | 0x7F
    set_blob(obj, 0, a)
    set_blob(obj, 1, b)
    assert run(obj, "compare_blobs", engine) == 3  # above
    set_blob(obj, 0, b)
    set_blob(obj, 1, a)
    assert run(obj, "compare_blobs", engine) == 1  # below


@pytest.mark.parametrize("n", [0, 1, 40, 63, 64 + 5])
def test_memset_of_variable_length_on_the_stack(engine: str, n: int) -> None:
    obj = ebpfvm.Object.open(OBJECT)
    set_blob(obj, 0, [n] + [0] * (WORDS - 1))
    # Sums the n & 63 bytes memset to 7.
    assert run(obj, "clear_stack", engine) == 7 * (n & 63)


def test_builtin_fault_in_an_unverified_program_is_an_execution_error(engine: str) -> None:
    # memset(r1, 0, 4096) over a 16-byte input: refused at run time, not a crash.
    prog = ebpfvm.Program.from_asm("mov %r2, 0\nmov %r3, 4096\ncall 1024\nexit", prog_type="raw")
    exe = prog.load(engine=engine, verify=False)
    with pytest.raises(ebpfvm.ExecutionError, match="4096 bytes"):
        exe.run(bytearray(16))
    # The verifier refuses it first.
    refusal = "off=0 size=4096: the input may be only 16 bytes long"
    with pytest.raises(ebpfvm.VerifierError, match=refusal):
        prog.load(engine=engine, verify=True, input_size=16)
