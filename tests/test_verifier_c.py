"""The verifier on unsafe C programs and their fixed twins.

tests/c_programs/unsafe/*.c each hold one classic bug (rebuilt with
tests/c_programs/build.sh; the objects are committed), and
tests/c_programs/fixed/*.c the same program with the bug fixed. The unsafe
ones must be rejected with ``ebpfvm.VerifierError`` at the instruction the
kernel's verifier would name, with a message naming the register at fault;
the fixed ones must be accepted and then behave as written.

The failing instruction and its register are found in each compiled program
here (not hard-coded), so the tests keep holding when a different clang lays
the code out differently. Where the running kernel can be asked (see
kernel_bpf.py), its verifier is the oracle too: it rejects the same
programs at the same instructions. One difference is deliberate: a privileged
kernel loader lets programs read uninitialised stack (uninit_stack.c loads as
root), while ebpfvm, like the kernel's unprivileged verifier, refuses it.
"""

from __future__ import annotations

import functools
import json
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ebpfvm
import pytest
from elf_packets import ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, ethernet, ipv4, ipv4_key, tcp, udp
from engine_support import ENGINES
from kernel_bpf import failing_pc, kernel_unavailable, kernel_verdict

C_PROGRAMS = Path(__file__).resolve().parent / "c_programs"
BUGS = ("packet_oob", "map_null", "uninit_stack", "unbounded_loop", "wrong_key_size")
XDP_DROP, XDP_PASS = 1, 2

BPF_LDX, BPF_ST, BPF_STX, BPF_JMP, BPF_JMP32 = 0x01, 0x02, 0x03, 0x05, 0x06
BPF_CALL, BPF_EXIT, BPF_JA = 0x80, 0x90, 0x00


class Insn:
    def __init__(self, pc: int, raw: bytes) -> None:
        self.pc = pc
        self.opcode, regs, self.off, self.imm = struct.unpack("<BBhi", raw)
        self.dst, self.src = regs & 0xF, regs >> 4
        self.cls = self.opcode & 0x07

    @property
    def is_helper_call(self) -> bool:
        return self.opcode == (BPF_JMP | BPF_CALL) and self.src == 0

    @property
    def is_jump(self) -> bool:
        op = self.opcode & 0xF0
        return self.cls in (BPF_JMP, BPF_JMP32) and op not in (BPF_CALL, BPF_EXIT)


def program(kind: str, bug: str) -> Any:
    obj = ebpfvm.Object.open(str(C_PROGRAMS / kind / f"{bug}.o"))
    return obj, obj.programs[bug]


# --- where each bug is, found in the compiled code ----------------------------


def packet_oob_site(code: list[Insn]) -> tuple[int, int]:
    """The load of iphdr->protocol (packet offset 14 + 9): its base register."""
    loads = [i for i in code if i.cls == BPF_LDX and i.off == 14 + 9]
    assert len(loads) == 1
    return loads[0].pc, loads[0].src


def map_null_site(code: list[Insn]) -> tuple[int, int]:
    """The first access through r0 after bpf_map_lookup_elem returns."""
    call = next(i for i in code if i.is_helper_call and i.imm == 1)
    for insn in code[call.pc + 1 :]:
        if insn.cls == BPF_LDX and insn.src == 0:
            return insn.pc, 0
        if insn.cls in (BPF_ST, BPF_STX) and insn.dst == 0:
            return insn.pc, 0
    raise AssertionError("no access through r0 after the lookup")


def lookup_key_site(code: list[Insn]) -> tuple[int, int]:
    """The bpf_map_lookup_elem call: its key argument is r2."""
    calls = [i for i in code if i.is_helper_call and i.imm == 1]
    assert len(calls) == 1
    return calls[0].pc, 2


BUG_SITES: dict[str, Callable[[list[Insn]], tuple[int, int]]] = {
    "packet_oob": packet_oob_site,
    "map_null": map_null_site,
    "uninit_stack": lookup_key_site,
    "wrong_key_size": lookup_key_site,
}


def loop_body(code: list[Insn]) -> range:
    """The instructions of the program's one loop (from the back-edge's
    target to the back-edge)."""
    back_edges = [i for i in code if i.is_jump and i.off < 0]
    assert len(back_edges) == 1
    edge = back_edges[0]
    return range(edge.pc + 1 + edge.off, edge.pc + 1)


# --- unsafe programs are rejected where the bug is ---------------------------

needs_kernel = pytest.mark.skipif(
    kernel_unavailable() is not None, reason=f"no kernel oracle: {kernel_unavailable()}"
)
#: Bugs the kernel rejects even for a privileged loader.
KERNEL_REJECTS = ("packet_oob", "map_null", "unbounded_loop", "wrong_key_size")


def object_path(kind: str, bug: str) -> Path:
    return C_PROGRAMS / kind / f"{bug}.o"


def code_of(kind: str, bug: str) -> list[Insn]:
    """The program's instructions straight from the ELF section (no loader)."""
    data = object_path(kind, bug).read_bytes()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for name_off, _type, flags, _addr, offset, size, *_ in headers:
        name = data[names_at + name_off : data.index(b"\0", names_at + name_off)]
        if name == b"xdp" and flags & 0x4:  # SHF_EXECINSTR
            raw = data[offset : offset + size]
            return [Insn(pc, raw[pc * 8 : pc * 8 + 8]) for pc in range(len(raw) // 8)]
    raise AssertionError(f"{bug}.o has no xdp section")


@needs_kernel
@pytest.mark.parametrize("bug", KERNEL_REJECTS)
def test_bug_sites_are_where_the_kernel_stops(bug: str) -> None:
    """The expectations below are the kernel's: its verifier stops at the
    instruction each site finder names (and inside the loop for the loop)."""
    accepted, log = kernel_verdict(object_path("unsafe", bug))
    assert not accepted, f"the kernel accepted unsafe/{bug}.o"
    code = code_of("unsafe", bug)
    if bug == "unbounded_loop":
        assert failing_pc(log) in loop_body(code)
    else:
        pc, reg = BUG_SITES[bug](code)
        assert failing_pc(log) == pc
        # The lines after the failing instruction's are the kernel's reason.
        reason = log.rsplit(f"\n{pc}: (", 1)[-1].split("\n", 1)[-1]
        assert re.search(rf"\bR{reg}\b", reason), reason


@needs_kernel
@pytest.mark.parametrize("bug", BUGS)
def test_kernel_accepts_fixed_twins(bug: str) -> None:
    accepted, log = kernel_verdict(object_path("fixed", bug))
    assert accepted, log[-3000:]


# Verification runs in a child process with a time limit: a verifier that
# runs away on a program must fail its test, not hang the whole test suite.
# (The kernel gives up on unbounded_loop after a million instructions in
# about a second; the limit here is generous so that it only catches hangs.)
VERIFY_TIMEOUT = 300.0

_VERIFY_CHILD = """
import json, sys
import ebpfvm
path, name, how, log_level = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
prog = ebpfvm.Object.open(path).programs[name]
try:
    if how == "load":
        prog.load(verify=True)
        stats = None
    else:
        stats = prog.verify(log_level=log_level)
except ebpfvm.VerifierError as e:
    out = {"rejected": True, "pc": e.pc, "message": e.message, "log": e.log}
else:
    out = {"rejected": False, "stats": repr(stats)}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Verdict:
    rejected: bool
    pc: int | None = None
    message: str = ""
    log: str = ""
    stats: str = ""


@functools.cache
def verdict(kind: str, bug: str, *, how: str = "verify", log_level: int = 0) -> Verdict:
    """ebpfvm's verdict on a program: ``prog.verify(log_level)`` or, with
    how="load", ``prog.load(verify=True)``."""
    args = [str(object_path(kind, bug)), bug, how, str(log_level)]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _VERIFY_CHILD, *args],
            capture_output=True,
            text=True,
            timeout=VERIFY_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{how} of {kind}/{bug}.o did not finish in {VERIFY_TIMEOUT:.0f} s")
    assert proc.returncode == 0, f"{how} of {kind}/{bug}.o failed:\n{proc.stderr}"
    return Verdict(**json.loads(proc.stdout.strip().splitlines()[-1]))


def rejection(bug: str, *, how: str = "verify") -> Verdict:
    """Why ebpfvm refuses the unsafe program (verified at log level 1, so one
    verification serves the checks on the verdict and on its log)."""
    v = verdict("unsafe", bug, how=how, log_level=1)
    assert v.rejected, f"unsafe/{bug}.o was accepted ({v.stats})"
    return v


@needs_kernel
@pytest.mark.parametrize("bug", KERNEL_REJECTS)
def test_rejected_where_the_kernel_rejects(bug: str) -> None:
    _accepted, log = kernel_verdict(object_path("unsafe", bug))
    ours = rejection(bug)
    if bug == "unbounded_loop":
        assert ours.pc in loop_body(code_of("unsafe", bug))
    else:
        assert ours.pc == failing_pc(log), ours


@pytest.mark.parametrize("bug", sorted(BUG_SITES))
def test_unsafe_program_rejected_at_the_faulty_instruction(bug: str) -> None:
    pc, reg = BUG_SITES[bug](code_of("unsafe", bug))
    err = rejection(bug)
    assert err.pc == pc, f"{bug}: rejected at {err.pc}, the bug is at {pc}: {err.message}"
    assert re.search(rf"\bR{reg}\b", err.message), (
        f"{bug}: the message should name R{reg}: {err.message!r}"
    )


def test_unbounded_loop_rejected_inside_the_loop() -> None:
    body = loop_body(code_of("unsafe", "unbounded_loop"))
    err = rejection("unbounded_loop")
    assert err.pc in body, f"rejected at {err.pc}, the loop is {body}: {err.message}"
    assert re.search(r"loop|complex|too large|limit", err.message, re.IGNORECASE), err.message


@pytest.mark.parametrize("bug", BUGS)
def test_unsafe_program_log_shows_the_failing_instruction(bug: str) -> None:
    err = rejection(bug)
    # Kernel-style: each instruction is logged as "<pc>: (<opcode>) <insn>".
    assert re.search(rf"^{err.pc}: \([0-9a-f]{{2}}\)", err.log, re.MULTILINE), err.log[-3000:]
    assert err.message in err.log


@pytest.mark.parametrize("bug", BUGS)
def test_unsafe_program_refused_by_verified_load(bug: str) -> None:
    code = code_of("unsafe", bug)
    err = rejection(bug, how="load")
    # Refused for the bug, where verify() finds it (not for any other reason).
    if bug == "unbounded_loop":
        assert err.pc in loop_body(code), err
    else:
        assert err.pc == BUG_SITES[bug](code)[0], err


# --- the bugs are real: checked mode catches them at run time ---------------


@pytest.mark.parametrize("engine", ENGINES)
def test_unsafe_packet_read_faults_in_checked_mode(engine: str) -> None:
    _obj, prog = program("unsafe", "packet_oob")
    exe = prog.load(engine=engine, verify=False)
    whole = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_UDP, udp(1, 2)))
    assert exe.run(whole).retval == XDP_DROP
    with pytest.raises(ebpfvm.ExecutionError):
        exe.run(whole[:14])


@pytest.mark.parametrize("engine", ENGINES)
def test_unsafe_null_map_value_faults_in_checked_mode(engine: str) -> None:
    obj, prog = program("unsafe", "map_null")
    exe = prog.load(engine=engine, verify=False)
    obj.maps["per_ifindex"][3] = 10
    assert exe.run(bytes(60), ctx={"ingress_ifindex": 3}).retval == XDP_PASS
    assert obj.maps["per_ifindex"][3] == 11
    with pytest.raises(ebpfvm.ExecutionError):
        exe.run(bytes(60), ctx={"ingress_ifindex": 4})


def test_unsafe_loop_exhausts_the_budget_in_checked_mode() -> None:
    _obj, prog = program("unsafe", "unbounded_loop")
    exe = prog.load(engine="interpreter", verify=False, max_instructions=100_000)
    with pytest.raises(ebpfvm.ExecutionError):
        exe.run(bytes(14) + struct.pack("<I", 0xFFFFFFFF))


# --- fixed twins are accepted and do their job -------------------------------


@pytest.mark.parametrize("bug", BUGS)
def test_fixed_program_accepted(bug: str) -> None:
    v = verdict("fixed", bug)
    assert not v.rejected, f"fixed/{bug}.o rejected at {v.pc}: {v.message}\n{v.log[-3000:]}"
    assert v.stats not in ("", "None"), "verify() returns the statistics of the verification"


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_packet_read(engine: str) -> None:
    _obj, prog = program("fixed", "packet_oob")
    exe = prog.load(engine=engine, verify=True)
    udp_packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_UDP, udp(1, 2)))
    tcp_packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1, 2)))
    assert exe.run(udp_packet).retval == XDP_DROP
    assert exe.run(tcp_packet).retval == XDP_PASS
    assert exe.run(udp_packet[:33]).retval == XDP_DROP  # one byte short of an IPv4 header
    assert exe.run(b"").retval == XDP_DROP


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_map_null(engine: str) -> None:
    obj, prog = program("fixed", "map_null")
    exe = prog.load(engine=engine, verify=True)
    for ifindex in (3, 3, 5, 3):
        assert exe.run(bytes(60), ctx={"ingress_ifindex": ifindex}).retval == XDP_PASS
    assert dict(obj.maps["per_ifindex"].items()) == {3: 3, 5: 1}


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_uninit_stack(engine: str) -> None:
    obj, prog = program("fixed", "uninit_stack")
    flows = obj.maps["flows"]
    key = {
        "saddr": ipv4_key("10.0.0.1"),
        "daddr": ipv4_key("10.0.0.2"),
        "sport": 0,
        "dport": 0,
        "protocol": IPPROTO_UDP,
    }
    flows[key] = 0
    exe = prog.load(engine=engine, verify=True)
    packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_UDP, udp(1234, 53)))
    other = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1234, 53)))
    for p in (packet, packet, other):
        assert exe.run(p).retval == XDP_PASS
    assert flows[key] == 2
    assert len(flows) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_loop_is_capped(engine: str) -> None:
    # A verifier that ran away on this loop would hang the load below.
    assert not verdict("fixed", "unbounded_loop").rejected
    obj, prog = program("fixed", "unbounded_loop")
    exe = prog.load(engine=engine, verify=True)
    for count, total in ((5, 5), (0, 5), (1000, 21), (0xFFFFFFFF, 37)):
        assert exe.run(bytes(14) + struct.pack("<I", count)).retval == XDP_PASS
        assert obj.maps["work"][0] == total
    assert exe.run(bytes(17)).retval == XDP_PASS  # no room for the count
    assert obj.maps["work"][0] == 37


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_key_size(engine: str) -> None:
    obj, prog = program("fixed", "wrong_key_size")
    by_queue = obj.maps["by_queue"]
    assert by_queue.key_size == 8
    by_queue[2] = 40
    exe = prog.load(engine=engine, verify=True)
    for queue in (2, 1, 2):
        assert exe.run(bytes(60), ctx={"rx_queue_index": queue}).retval == XDP_PASS
    assert dict(by_queue.items()) == {2: 42}
