"""ebpfvm: a userspace eBPF runtime for Python.

Assemble or load eBPF bytecode, verify it as the kernel does, and run it in an
interpreter or compiled to machine code, with helpers written in Python or C::

    import ebpfvm
    prog = ebpfvm.Program.from_asm("mov %r0, %r2\\nexit")
    exe = prog.load()  # verified; load(verify=False) runs any bytecode, checked
    assert exe.run(b"1234") == 4
"""

from __future__ import annotations

from ebpfvm import maps
from ebpfvm._core import (
    DEFAULT_MAX_INSTRUCTIONS,
    MAX_CALL_FRAMES,
    MAX_PROGRAM_LEN,
    STACK_FRAME_SIZE,
    AssemblerError,
    ElfError,
    Error,
    Executable,
    ExecutionError,
    MapError,
    Program,
    ProgramError,
    RunResult,
    VerifierError,
    VMMemory,
    assemble,
    disassemble,
)
from ebpfvm._helpers import Helper, NativeHelper
from ebpfvm._object import (
    BPF,
    GlobalData,
    Object,
    ObjectProgram,
    TcAction,
    XdpAction,
    read_trace,
)

__all__ = [
    "BPF",
    "DEFAULT_MAX_INSTRUCTIONS",
    "MAX_CALL_FRAMES",
    "MAX_PROGRAM_LEN",
    "STACK_FRAME_SIZE",
    "AssemblerError",
    "ElfError",
    "Error",
    "Executable",
    "ExecutionError",
    "GlobalData",
    "Helper",
    "MapError",
    "NativeHelper",
    "Object",
    "ObjectProgram",
    "Program",
    "ProgramError",
    "RunResult",
    "TcAction",
    "VMMemory",
    "VerifierError",
    "XdpAction",
    "assemble",
    "disassemble",
    "maps",
    "read_trace",
]

__version__ = "0.1.0"
