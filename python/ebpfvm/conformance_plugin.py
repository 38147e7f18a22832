"""bpf_conformance plugin: run one eBPF program the way the upstream runner expects.

Usage (FORMAT.md §3.3)::

    python -m ebpfvm.conformance_plugin [MEM] [--interpret | --jit] [--debug]
                                        [--max-instructions N] [--program HEX] [--elf]

* ``MEM`` (optional, only if the first argument does not start with ``--``) is the
  input buffer as hex bytes, e.g. ``"00  01  02  "``.
* The program is read as hex bytes from the first line of stdin (or from
  ``--program HEX``).
* On success the final ``r0`` is printed in hex on stdout and the exit status is 0.
* A program that cannot be loaded prints one line on stdout and exits with 1.
* A runtime fault prints one line on stderr and exits with 1.
* Bad command-line usage prints one line on stderr and exits with 2.

The six uBPF test helpers (:data:`ebpfvm.conformance.UBPF_TEST_HELPERS`) are
registered, helper 5 being the unwind helper.  An instruction budget stops any
program that would otherwise run forever.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import ebpfvm
from ebpfvm.conformance import UBPF_TEST_HELPERS, UBPF_UNWIND_HELPER

#: Default instruction budget: far above what any conformance test needs, small
#: enough that a runaway program stops within seconds.
DEFAULT_MAX_INSTRUCTIONS = 50_000_000

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_ENGINES = {"--interpret": "interpreter", "--jit": "jit"}


class UsageError(Exception):
    """Bad command line."""


@dataclass
class Options:
    memory: bytes | None = None
    engine: str = "interpreter"
    debug: bool = False
    elf: bool = False
    program: bytes | None = None
    max_instructions: int = DEFAULT_MAX_INSTRUCTIONS


def _one_line(text: str) -> str:
    """Collapse a message to a single line (the runner compares one line)."""
    return " ".join(text.split())


def parse_hex(text: str, what: str) -> bytes:
    """Decode hex bytes separated by any whitespace (``"b7  00  01  "`` or ``"b70001"``)."""
    digits = "".join(text.split())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if len(digits) % 2:
        raise UsageError(f"{what}: odd number of hex digits")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise UsageError(f"{what}: not hex bytes") from None


def parse_args(argv: Sequence[str]) -> Options:
    """Parse the plugin's command line (without the program name)."""
    opts = Options()
    args = list(argv)
    if args and not args[0].startswith("--"):
        opts.memory = parse_hex(args.pop(0), "memory argument")
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "":
            # The runner splits --plugin_options on single spaces: tolerate empties.
            continue
        if arg in _ENGINES:
            opts.engine = _ENGINES[arg]
        elif arg == "--debug":
            opts.debug = True
        elif arg == "--elf":
            opts.elf = True
        elif arg in ("--program", "--max-instructions"):
            if i >= len(args):
                raise UsageError(f"option {arg} needs a value")
            value = args[i]
            i += 1
            if arg == "--program":
                opts.program = parse_hex(value, "--program")
            else:
                try:
                    opts.max_instructions = int(value, 0)
                except ValueError:
                    raise UsageError(f"--max-instructions: not an integer: {value!r}") from None
                if opts.max_instructions <= 0:
                    raise UsageError("--max-instructions must be positive")
        else:
            raise UsageError(f"unknown option {arg!r}")
    return opts


def _describe(exc: ebpfvm.Error) -> str:
    """``<reason> at PC <n>``: uBPF's wording, which the runner compares exactly."""
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str) or not reason:
        return _one_line(str(exc) or type(exc).__name__)
    pc = getattr(exc, "pc", None)
    return _one_line(reason if pc is None else f"{reason} at PC {pc}")


def run_plugin(argv: Sequence[str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Run the plugin and return its exit status."""
    try:
        opts = parse_args(argv)
        if opts.elf:
            print("ELF input not supported yet", file=stdout)
            return EXIT_FAILURE
        if opts.program is not None:
            code = opts.program
        else:
            code = parse_hex(stdin.readline(), "program on stdin")
    except UsageError as exc:
        print(f"usage error: {_one_line(str(exc))}", file=stderr)
        return EXIT_USAGE

    try:
        program = ebpfvm.Program(code)
        if opts.debug:
            try:
                print(ebpfvm.disassemble(code), file=stderr)
            except ebpfvm.Error as exc:
                print(f"(disassembly failed: {_describe(exc)})", file=stderr)
        executable = program.load(
            engine=opts.engine,
            helpers=dict(UBPF_TEST_HELPERS),
            verify=False,  # uBPF's convention: unverified programs
            unwind_helper=UBPF_UNWIND_HELPER,
            max_instructions=opts.max_instructions,
        )
    except ebpfvm.Error as exc:
        print(f"Failed to load code: {_describe(exc)}", file=stdout)
        return EXIT_FAILURE

    memory = bytearray(opts.memory) if opts.memory is not None else None
    try:
        r0 = executable.run(memory)
    except ebpfvm.Error as exc:
        print(f"ebpfvm error: {_describe(exc)}", file=stderr)
        return EXIT_FAILURE
    except Exception as exc:  # e.g. a helper failing: still one line, never a traceback
        print(f"ebpfvm error: {type(exc).__name__}: {_one_line(str(exc))}", file=stderr)
        return EXIT_FAILURE
    print(format(r0 & 0xFFFF_FFFF_FFFF_FFFF, "x"), file=stdout)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_plugin(sys.argv[1:] if argv is None else argv, sys.stdin, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
