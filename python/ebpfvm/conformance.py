"""Reader for the eBPF conformance ``.data`` test format, and the uBPF test helpers.

The format is described in ``shared/conformance/FORMAT.md``.  This module follows
the rules of **uBPF's Python reader** (FORMAT.md §2.1 and the second list of §2.2),
which is the more capable of the two upstream parsers:

* a section starts with a line whose first non-blank characters are ``--``; any
  section name is accepted, and a name may not repeat within one file;
* ``#`` starts a comment anywhere on a line, blank lines are ignored, and a
  trailing ``\\r`` is removed;
* ``-- name @ file`` takes the section's contents from ``file``, relative to the
  ``.data`` file's folder;
* ``mem``: on each line everything up to the last ``:`` is dropped (hexdump
  offsets such as ``0x0010:``), then every pair of hex digits is one byte;
* ``raw``: one 64-bit integer per instruction (``0x`` hex or decimal), stored
  little-endian;
* ``result``: the last non-empty line, ``0x`` hex or decimal, as an unsigned
  64-bit value;
* ``error`` is compared exactly, ``error pattern`` is a regular expression.

Every other section (``no jit``, ``no register offset``, ``pyelf``, ``reload``,
``unload``, ``c``, ``description`` ...) is reported by name in
:attr:`ConformanceTest.flags`, its text in :attr:`ConformanceTest.sections`.

The six helpers the uBPF tests call by index (FORMAT.md §5) are provided as
:data:`UBPF_TEST_HELPERS`; register them with ``unwind_helper=5``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import Helper, NativeHelper, VMMemory, assemble

__all__ = [
    "DATA_SECTIONS",
    "UBPF_TEST_HELPERS",
    "UBPF_UNWIND_HELPER",
    "ConformanceFormatError",
    "ConformanceTest",
    "HelperLike",
    "gather_bytes",
    "iter_tests",
    "load_test",
    "memfrob",
    "no_op",
    "parse_test",
    "program_code",
    "sqrti",
    "strcmp_ext",
    "unwind",
]

U64_MASK = (1 << 64) - 1

#: Section names that carry test data; every other section name is a flag.
DATA_SECTIONS = frozenset({"asm", "raw", "mem", "result", "error", "error pattern"})

_PC_RE = re.compile(r"\bat PC (\d+)\b")


class ConformanceFormatError(ValueError):
    """A ``.data`` file does not follow the format."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line
        self.message = message


@dataclass
class ConformanceTest:
    """One conformance test, as read from a ``.data`` file."""

    #: Name of the test: the file name, or its path relative to the folder given
    #: to :func:`iter_tests` (always with ``/`` separators).
    name: str
    #: Path of the ``.data`` file.
    path: Path
    #: Assembly text of the ``asm`` section, or None.
    asm: str | None
    #: Bytecode of the ``raw`` section (8 bytes per instruction), or None.
    raw: bytes | None
    #: Input buffer of the ``mem`` section, or None when the test has no memory.
    mem: bytes | None
    #: Expected final r0 as an unsigned 64-bit value, or None.
    result: int | None
    #: Expected error text (exact), or None.
    error: str | None
    #: Expected error as a regular expression, or None.
    error_pattern: str | None
    #: Names of all sections that are not data sections (``no jit``, ``pyelf`` ...).
    flags: set[str]
    #: Text of every section, includes resolved (lines joined with newlines).
    sections: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def expects_error(self) -> bool:
        """True if the test expects an error (exact text or pattern)."""
        return self.error is not None or self.error_pattern is not None

    @property
    def needs_elf(self) -> bool:
        """True for uBPF ELF-loader tests, which cannot run from the ``.data`` alone."""
        return "pyelf" in self.flags

    @property
    def has_program(self) -> bool:
        """True if the file contains a program (``raw`` or ``asm``)."""
        return self.raw is not None or self.asm is not None

    @property
    def error_pc(self) -> int | None:
        """The ``at PC N`` index named in the expected error text, if any."""
        text = self.error if self.error is not None else self.error_pattern
        if text is None:
            return None
        match = _PC_RE.search(text)
        return int(match.group(1)) if match else None


def _clean_line(line: str) -> str:
    """Cut a comment and trailing whitespace (including ``\\r``) from a line."""
    return line.split("#", 1)[0].rstrip()


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    # splitlines() would also split on form feeds and the like; only newlines count.
    return text.split("\n")


def _parse_int(token: str, path: Path, line: int | None, what: str) -> int:
    text = token.strip()
    try:
        if text.lower().startswith(("0x", "-0x", "+0x")):
            value = int(text, 16)
        else:
            value = int(text, 10)
    except ValueError:
        raise ConformanceFormatError(path, line, f"invalid {what} {token!r}") from None
    if not -(1 << 63) <= value <= U64_MASK:
        raise ConformanceFormatError(path, line, f"{what} {token!r} does not fit in 64 bits")
    return value & U64_MASK


def _parse_mem(text: str, path: Path) -> bytes:
    out = bytearray()
    for number, line in enumerate(text.split("\n"), 1):
        digits = "".join(line.rsplit(":", 1)[-1].split())
        if len(digits) % 2:
            raise ConformanceFormatError(
                path, None, f"mem line {number}: odd number of hex digits in {line!r}"
            )
        try:
            out += bytes.fromhex(digits)
        except ValueError:
            raise ConformanceFormatError(
                path, None, f"mem line {number}: invalid hex in {line!r}"
            ) from None
    return bytes(out)


def _parse_raw(text: str, path: Path) -> bytes:
    out = bytearray()
    for token in text.split():
        out += _parse_int(token, path, None, "raw instruction").to_bytes(8, "little")
    return bytes(out)


def _parse_result(text: str, path: Path) -> int | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return None
    return _parse_int(lines[-1], path, None, "result")


def parse_test(text: str, path: Path | str, name: str | None = None) -> ConformanceTest:
    """Parse the text of a ``.data`` file.

    ``path`` is used for error messages and to resolve ``@ file`` includes.
    """
    path = Path(path)
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw_line in enumerate(text.split("\n"), 1):
        line = _clean_line(raw_line)
        if not line.strip():
            continue
        stripped = line.lstrip()
        if stripped.startswith("--"):
            header = stripped[2:]
            section_name, at, include = header.partition("@")
            section_name = " ".join(section_name.split())
            include = include.strip()
            if not section_name:
                raise ConformanceFormatError(path, number, "section without a name")
            if section_name in sections:
                raise ConformanceFormatError(
                    path, number, f"section {section_name!r} appears twice"
                )
            current = sections[section_name] = []
            if at:
                if not include:
                    raise ConformanceFormatError(path, number, "'@' without a file name")
                include_path = path.parent / include
                try:
                    included = _read_lines(include_path)
                except OSError as exc:
                    raise ConformanceFormatError(
                        path, number, f"cannot read included file {include!r}: {exc}"
                    ) from None
                for included_line in included:
                    cleaned = _clean_line(included_line)
                    if cleaned.strip():
                        current.append(cleaned)
            continue
        if current is None:
            raise ConformanceFormatError(path, number, "text before the first section")
        current.append(line)

    joined = {key: "\n".join(lines) for key, lines in sections.items()}
    asm = joined.get("asm")
    raw_text = joined.get("raw")
    mem_text = joined.get("mem")
    result_text = joined.get("result")
    error = joined.get("error")
    error_pattern = joined.get("error pattern")
    if error_pattern is not None:
        try:
            re.compile(error_pattern)
        except re.error as exc:
            raise ConformanceFormatError(path, None, f"invalid error pattern: {exc}") from None
    return ConformanceTest(
        name=name if name is not None else path.name,
        path=path,
        asm=asm,
        raw=_parse_raw(raw_text, path) if raw_text is not None else None,
        mem=_parse_mem(mem_text, path) if mem_text is not None else None,
        result=_parse_result(result_text, path) if result_text is not None else None,
        error=error.strip() if error is not None else None,
        error_pattern=error_pattern.strip() if error_pattern is not None else None,
        flags={key for key in joined if key not in DATA_SECTIONS},
        sections=joined,
    )


def load_test(path: str | os.PathLike[str], name: str | None = None) -> ConformanceTest:
    """Read one ``.data`` file.  ``name`` defaults to the file name."""
    p = Path(path)
    return parse_test("\n".join(_read_lines(p)), p, name)


def iter_tests(
    directory: str | os.PathLike[str], recursive: bool = True
) -> Iterator[ConformanceTest]:
    """Yield every ``*.data`` test under ``directory``, sorted by relative path.

    Each test is named by its path relative to ``directory``
    (for example ``errors/err-call0.data``).
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    files = root.rglob("*.data") if recursive else root.glob("*.data")
    for file in sorted(
        (f for f in files if f.is_file()), key=lambda f: f.relative_to(root).as_posix()
    ):
        yield load_test(file, file.relative_to(root).as_posix())


def program_code(test: ConformanceTest) -> bytes:
    """The bytecode a test runs: its ``raw`` section if present, else its assembled ``asm``."""
    if test.raw is not None:
        return test.raw
    if test.asm is not None:
        return assemble(test.asm)
    raise ValueError(f"{test.name}: the test has no program (no 'raw' or 'asm' section)")


# --------------------------------------------------------------------------
# The helpers uBPF's test plugin registers by index (FORMAT.md §5).
# --------------------------------------------------------------------------


def gather_bytes(a: int, b: int, c: int, d: int, e: int) -> int:
    """Helper 0: the low byte of each argument, packed as ``a b c d e`` (a highest)."""
    return (a & 0xFF) << 32 | (b & 0xFF) << 24 | (c & 0xFF) << 16 | (d & 0xFF) << 8 | (e & 0xFF)


def memfrob(mem: VMMemory, ptr: int, length: int, _r3: int, _r4: int, _r5: int) -> int:
    """Helper 1: XOR ``length`` bytes at VM address ``ptr`` with 42, in place; returns 0."""
    if length == 0:
        return 0
    data = mem.read(ptr, length)
    mem.write(ptr, bytes(byte ^ 42 for byte in data))
    return 0


def no_op(_r1: int, _r2: int, _r3: int, _r4: int, _r5: int) -> int:
    """Helper 2: does nothing, returns 0."""
    return 0


def sqrti(x: int, _r2: int, _r3: int, _r4: int, _r5: int) -> int:
    """Helper 3: ``floor(sqrt(x))`` of the unsigned 64-bit argument."""
    return math.isqrt(x & U64_MASK)


def strcmp_ext(mem: VMMemory, a: int, b: int, _r3: int, _r4: int, _r5: int) -> int:
    """Helper 4: C ``strcmp`` of the NUL-terminated strings at VM addresses ``a`` and ``b``.

    Returns the difference of the first differing bytes (as unsigned chars), so
    the sign follows C's ``strcmp``; the runtime widens it to u64.
    """
    left = mem.read_cstr(a)
    right = mem.read_cstr(b)
    for x, y in zip(left + b"\0", right + b"\0", strict=False):
        if x != y:
            return x - y
        if x == 0:
            break
    return 0


def unwind(x: int, _r2: int, _r3: int, _r4: int, _r5: int) -> int:
    """Helper 5: returns its argument.  Registered as the unwind helper: a 0 stops the program."""
    return x


#: What ``Executable`` accepts as a helper.
HelperLike = Callable[[int, int, int, int, int], int] | Helper | NativeHelper

#: Helper id that uBPF's plugin marks as the unwind function.
UBPF_UNWIND_HELPER = 5

#: The six helpers uBPF's test plugin registers, by id.  Load with ``unwind_helper=5``.
UBPF_TEST_HELPERS: dict[int, HelperLike] = {
    0: gather_bytes,
    1: Helper(memfrob, memory=True),
    2: no_op,
    3: sqrti,
    4: Helper(strcmp_ext, memory=True),
    5: unwind,
}
