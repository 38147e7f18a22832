"""The ``ebpfvm`` command line: assemble, disassemble, check and run programs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ebpfvm


def _read_program(path: str, *, asm: bool | None) -> ebpfvm.Program:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    is_asm = asm if asm is not None else path.endswith((".s", ".asm"))
    if is_asm:
        return ebpfvm.Program.from_asm(data.decode())
    return ebpfvm.Program(data)


def _memory(args: argparse.Namespace) -> bytearray | None:
    if args.mem_file:
        return bytearray(Path(args.mem_file).read_bytes())
    if args.mem is not None:
        return bytearray.fromhex(args.mem)
    return None


def _cmd_asm(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    code = ebpfvm.assemble(text)
    if args.output:
        Path(args.output).write_bytes(code)
    else:
        sys.stdout.write(code.hex() + "\n")
    return 0


def _cmd_disasm(args: argparse.Namespace) -> int:
    prog = _read_program(args.file, asm=False)
    sys.stdout.write(prog.disassemble())
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    prog = _read_program(args.file, asm=args.asm)
    print(
        f"ok: {len(prog)} instructions, {len(prog.functions)} functions, "
        f"helpers called: {prog.helper_ids or 'none'}"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    prog = _read_program(args.file, asm=args.asm)
    mem = _memory(args)
    if args.no_verify:
        exe = prog.load(verify=False, max_instructions=args.max_instructions)
    else:
        # The one input the program will see is known: prove it for that size.
        size = 0 if mem is None else len(mem)
        exe = prog.load(
            verify=True,
            max_instructions=args.max_instructions,
            input_size=size,
            max_input_size=size,
        )
    r0, executed = exe.run_counted(mem)
    print(f"r0 = {r0:#x} ({r0})")
    if args.stats:
        print(f"instructions executed: {executed}")
    if mem is not None and args.show_mem:
        print(f"memory after: {mem.hex()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpfvm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("asm", help="assemble text to bytecode")
    a.add_argument("file", help="assembly file, or - for stdin")
    a.add_argument("-o", "--output", help="write raw bytecode here (default: hex to stdout)")
    a.set_defaults(func=_cmd_asm)

    d = sub.add_parser("disasm", help="disassemble raw bytecode")
    d.add_argument("file", help="raw bytecode file (8 bytes per slot), or - for stdin")
    d.set_defaults(func=_cmd_disasm)

    for name, func, text in (
        ("check", _cmd_check, "decode and check a program without running it"),
        (
            "run",
            _cmd_run,
            "verify a program for the input given and run it (--no-verify: run it "
            "unverified in checked mode)",
        ),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("file", help="bytecode, or assembly if it ends in .s/.asm or --asm is given")
        c.add_argument("--asm", action="store_true", default=None, help="the file is assembly")
        c.set_defaults(func=func)
        if name == "run":
            c.add_argument("--mem", help="input memory as hex")
            c.add_argument("--mem-file", help="input memory from a file")
            c.add_argument(
                "--no-verify",
                action="store_true",
                help="do not verify: run in checked mode, bounds-checking every access at run time",
            )
            c.add_argument(
                "--max-instructions",
                type=int,
                default=None,
                help=f"instruction budget (default {ebpfvm.DEFAULT_MAX_INSTRUCTIONS})",
            )
            c.add_argument("--stats", action="store_true", help="print instructions executed")
            c.add_argument("--show-mem", action="store_true", help="print memory after the run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ebpfvm.VerifierError as e:
        print(f"ebpfvm: {type(e).__name__}: {e}", file=sys.stderr)
        print("ebpfvm: (on the command line: ebpfvm run --no-verify ...)", file=sys.stderr)
        return 1
    except ebpfvm.Error as e:
        print(f"ebpfvm: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ebpfvm: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
