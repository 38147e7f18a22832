"""A tour of ebpfvm.

1. A real XDP program written in C for the kernel (examples/bpf/xdp_parser.c,
   compiled with clang -target bpf; the object is committed): the verifier
   proves it safe, then it runs on packets with its maps read from Python.
2. A packet classifier assembled by hand, run with a Python helper in the
   interpreter and the JIT (unverified, in checked mode: the verifier cannot
   check a Python helper); the verifier refuses a buggy program at load, and
   checked mode stops it safely when it runs anyway.

Run:  python examples/demo.py
"""

from __future__ import annotations

import runpy
import struct
import sys
from pathlib import Path

import ebpfvm

HERE = Path(__file__).resolve().parent

# Returns the TCP destination port of an Ethernet/IPv4/TCP packet, 0 for
# anything else, and reports every port it sees to helper 1.
CLASSIFIER = """
    mov %r6, %r1              # r6 = packet start
    mov %r7, %r2              # r7 = packet length
    mov %r0, 0
    jlt %r7, 34, out          # Ethernet (14) + minimal IPv4 (20)
    ldxh %r3, [%r6+12]        # EtherType, network byte order
    be16 %r3
    jne %r3, 0x0800, out      # IPv4 only
    ldxb %r4, [%r6+14]
    and %r4, 0x0f
    lsh %r4, 2                # IPv4 header length in bytes
    ldxb %r5, [%r6+23]
    jne %r5, 6, out           # TCP only
    mov %r8, %r4
    add %r8, 18               # 14 + IHL + 4 bytes of ports must fit
    jgt %r8, %r7, out
    mov %r9, %r6
    add %r9, 14
    add %r9, %r4              # r9 = TCP header
    ldxh %r1, [%r9+2]
    be16 %r1                  # destination port
    call 1                    # report(port)
    ldxh %r0, [%r9+2]
    be16 %r0
out:
    exit
"""


def packet(dport: int, proto: int = 6, ethertype: int = 0x0800) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, proto, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    )
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 0, 0, 0x50, 0x02, 65535, 0, 0)
    return eth + ip + tcp


def kernel_program() -> None:
    print("== 1. an XDP program compiled from C for the kernel ==")
    obj = ebpfvm.Object.open(HERE / "bpf" / "xdp_parser.o")
    prog = obj.programs["xdp_parser"]
    stats = prog.verify()
    print(
        f"verifier: {prog.name} is safe ({stats['insns_processed']} instructions "
        f"processed in {stats['time'] * 1e3:.2f} ms)"
    )
    # The full firewall example: packets in, verdicts and map contents out
    # (it imports its packet builders from examples/).
    sys.path.insert(0, str(HERE))
    runpy.run_path(str(HERE / "xdp_firewall.py"), run_name="__main__")


def main() -> None:
    kernel_program()
    print()
    print("== 2. a hand-assembled classifier with a Python helper ==")
    prog = ebpfvm.Program.from_asm(CLASSIFIER)
    print(f"assembled {len(prog)} instructions:")
    print(prog.disassemble())

    seen: list[int] = []

    def report(port: int, *_: int) -> int:
        seen.append(port)
        return 0

    # The verifier cannot check what a Python helper does with its arguments
    # (id 1 is the kernel's map lookup): run it in checked mode.
    exe = prog.load(engine="interpreter", verify=False, helpers={1: report})
    for name, pkt in [
        ("HTTPS", packet(443)),
        ("SSH", packet(22)),
        ("UDP", packet(53, proto=17)),
        ("ARP", packet(0, ethertype=0x0806)),
        ("runt", packet(80)[:20]),
    ]:
        r0, executed = exe.run_counted(pkt)
        print(f"{name:6s} -> {r0:5d}   ({executed} instructions)")
    print(f"ports reported to the Python helper: {seen}")
    assert seen == [443, 22]

    # The same program compiled to machine code gives the same answers; here
    # the Python helper call dominates the time of a run.
    jit = prog.load(engine="jit", verify=False, helpers={1: report})
    assert jit.run(packet(443)) == 443
    per_run = jit.timeit(packet(443), 100_000) / 100_000
    interp_per_run = exe.timeit(packet(443), 100_000) / 100_000
    print(
        f"JIT: compiled {jit.code_size} bytes in {jit.compile_time * 1e3:.2f} ms; "
        f"{per_run * 1e9:.0f} ns per run in Rust (interpreter {interp_per_run * 1e9:.0f} ns), "
        "Python helper calls included"
    )

    # A buggy variant that forgets the length check: loading it verifies it
    # (the default), and the verifier refuses it; in checked mode it runs, and
    # is stopped at the faulting instruction instead of reading past the packet.
    buggy = ebpfvm.Program.from_asm("ldxdw %r0, [%r1+64]\nexit")
    try:
        buggy.load()
    except ebpfvm.VerifierError as e:
        print(f"verifier refused the buggy program at instruction {e.pc}: {e.message}")
    else:
        raise SystemExit("the verifier accepted an unchecked read")
    try:
        buggy.load(verify=False).run(packet(443)[:40])
    except ebpfvm.ExecutionError as e:
        print(f"buggy program stopped: {e.kind} at instruction {e.pc}: {e.reason.split(';')[0]}")
    else:
        raise SystemExit("the out-of-bounds read was not caught")


if __name__ == "__main__":
    main()
