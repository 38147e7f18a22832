"""Unit tests of the .data reader (ebpfvm.conformance) on small synthetic files."""

from __future__ import annotations

from pathlib import Path

import ebpfvm
import pytest
from ebpfvm.conformance import (
    UBPF_TEST_HELPERS,
    ConformanceFormatError,
    gather_bytes,
    iter_tests,
    load_test,
    parse_test,
    program_code,
    sqrti,
    unwind,
)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sections_comments_and_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.data",
        "# licence header\n"
        "# more\n"
        "-- asm\n"
        "mov %r0, 1 # trailing comment\n"
        "\n"
        "exit\r\n"
        "   -- result\n"
        "0x10\n"
        "\n"
        "-- no jit\n"
        "reason text\n"
        "-- description\n",
    )
    test = load_test(path)
    assert test.name == "t.data" and test.path == path
    assert test.asm == "mov %r0, 1\nexit"
    assert test.result == 0x10
    assert test.raw is None and test.mem is None
    assert test.error is None and test.error_pattern is None
    assert test.flags == {"no jit", "description"}
    assert test.sections["no jit"] == "reason text"
    assert test.sections["description"] == ""
    assert not test.expects_error and not test.needs_elf and test.has_program


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x10", 16),
        ("16", 16),
        ("1\n2\n\n0xffffffffffffffff", (1 << 64) - 1),
        ("-1", (1 << 64) - 1),
    ],
)
def test_result_is_last_line_u64(text: str, expected: int) -> None:
    assert parse_test(f"-- result\n{text}\n", "x.data").result == expected


def test_raw_little_endian() -> None:
    test = parse_test("-- raw\n0x5566778800000018\n149\n", "x.data")
    assert test.raw == bytes.fromhex("1800000088776655") + (149).to_bytes(8, "little")
    assert program_code(test) == test.raw


def test_mem_hexdump_rules() -> None:
    text = "-- mem\n0x0000:  0026 622f\n0x0010: ab\n00 01 02\n"
    assert parse_test(text, "x.data").mem == bytes.fromhex("0026622fab000102")
    assert parse_test("-- mem\n", "x.data").mem == b""


def test_errors_and_error_pc() -> None:
    test = parse_test(
        "-- asm\nexit\n-- error pattern\nuBPF error: .* at PC 3\n-- result\n0x0\n", "x.data"
    )
    assert test.error_pattern == "uBPF error: .* at PC 3"
    assert test.expects_error and test.error_pc == 3
    exact = parse_test("-- error\nFailed to load code: oops at PC 12\n", "x.data")
    assert exact.error == "Failed to load code: oops at PC 12" and exact.error_pc == 12


def test_includes_are_relative_to_the_file(tmp_path: Path) -> None:
    write(tmp_path, "sub/prog.asm", "# comment\nmov %r0, %r2\n\nexit\n")
    write(tmp_path, "sub/pkt.hex", "0x0000:  0102 0304\n")
    write(tmp_path, "sub/t.data", "-- asm @ prog.asm\n-- mem @ pkt.hex\n-- result\n4\n")
    (test,) = iter_tests(tmp_path)
    assert test.name == "sub/t.data"
    assert test.asm == "mov %r0, %r2\nexit"
    assert test.mem == b"\x01\x02\x03\x04"
    code = program_code(test)
    assert ebpfvm.Program(code).load().run(bytearray(test.mem)) == 4


def test_iter_tests_recursion_and_order(tmp_path: Path) -> None:
    write(tmp_path, "b.data", "-- result\n1\n")
    write(tmp_path, "a.data", "-- result\n2\n")
    write(tmp_path, "d/c.data", "-- result\n3\n")
    write(tmp_path, "notes.txt", "ignored")
    assert [t.name for t in iter_tests(tmp_path)] == ["a.data", "b.data", "d/c.data"]
    assert [t.name for t in iter_tests(tmp_path, recursive=False)] == ["a.data", "b.data"]
    with pytest.raises(FileNotFoundError):
        list(iter_tests(tmp_path / "missing"))


@pytest.mark.parametrize(
    "text",
    [
        "-- asm\nexit\n-- asm\nexit\n",  # a section name may not repeat
        "mov %r0, 1\n-- asm\nexit\n",  # text before the first section
        "-- mem\n0 1 2\n",  # odd number of hex digits
        "-- mem\nzz\n",
        "-- raw\nnot-a-number\n",
        "-- result\n0x1ffffffffffffffff\n",  # beyond 64 bits
        "-- error pattern\n(unclosed\n",
        "-- asm @ missing.asm\n",
        "--\nexit\n",
    ],
)
def test_format_errors(text: str) -> None:
    with pytest.raises(ConformanceFormatError):
        parse_test(text, "/nonexistent/x.data")


def test_program_code_without_program() -> None:
    with pytest.raises(ValueError):
        program_code(parse_test("-- pyelf\nx = 1\n-- result\n0x2a\n", "x.data"))


def test_plain_helpers() -> None:
    assert gather_bytes(1, 2, 3, 4, 0x105) == 0x0102030405
    assert sqrti(1764, 0, 0, 0, 0) == 42
    assert sqrti((1 << 64) - 1, 0, 0, 0, 0) == (1 << 32) - 1
    assert unwind(7, 0, 0, 0, 0) == 7
    assert set(UBPF_TEST_HELPERS) == {0, 1, 2, 3, 4, 5}


def test_memory_helpers_in_a_program() -> None:
    # memfrob (1) on 4 stack bytes, then strcmp_ext (4) of "ab" with "ac" (negative) and
    # with itself (0).
    text = "\n".join(
        [
            "mov %r1, 0x00636261",  # "abc\0"
            "stxw [%r10-8], %r1",
            "mov %r1, %r10",
            "add %r1, -8",
            "mov %r2, 3",
            "call 1",  # frob "abc" -> each byte ^ 42
            "ldxw %r6, [%r10-8]",
            "mov %r1, 0x00006261",  # "ab\0"
            "stxw [%r10-16], %r1",
            "mov %r1, 0x00006361",  # "ac\0"
            "stxw [%r10-24], %r1",
            "mov %r1, %r10",
            "add %r1, -16",
            "mov %r2, %r10",
            "add %r2, -24",
            "call 4",
            "mov %r7, %r0",
            "mov %r1, %r10",
            "add %r1, -16",
            "mov %r2, %r1",
            "call 4",
            "mov %r8, %r0",
            "mov %r0, %r6",
            "exit",
        ]
    )
    kept: dict[str, int] = {}

    helpers = dict(UBPF_TEST_HELPERS)
    executable = ebpfvm.Program.from_asm(text + "\n").load(
        verify=False, helpers=helpers, unwind_helper=5
    )
    frobbed = executable.run(None)
    assert frobbed == int.from_bytes(bytes([0x61 ^ 42, 0x62 ^ 42, 0x63 ^ 42, 0]), "little")
    # r7 / r8 are not observable from r0: rerun returning them.
    for register, expected_sign in (("%r7", -1), ("%r8", 0)):
        program = text.replace("mov %r0, %r6", f"mov %r0, {register}")
        # uBPF's helpers have no kernel prototypes: checked mode.
        value = (
            ebpfvm.Program.from_asm(program + "\n").load(helpers=helpers, verify=False).run(None)
        )
        signed = value - (1 << 64) if value >= 1 << 63 else value
        kept[register] = signed
        assert (signed > 0) - (signed < 0) == expected_sign
    assert kept["%r7"] == ord("b") - ord("c")
