"""Real C programs compiled with clang, run as the kernel would run them.

The programs are the ones in examples/bpf/ (built by examples/bpf/build.sh
with ``clang -O2 -g -target bpf -mcpu=v3`` and libbpf's headers; the objects
are committed). Every behavioural test runs twice: on the committed objects
and on objects rebuilt from the sources by the clang installed here, so a
source edited without rebuilding, or a clang that compiles differently, shows
up as a behaviour difference. Each test crafts its own packets and computes
what the kernel would answer (verdicts, rewritten packets, map contents) from
what it crafted.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ebpfvm
import pytest
from elf_packets import (
    DST_MAC,
    ETH_HLEN,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SRC_MAC,
    ethernet,
    icmp_echo,
    ipv4,
    ipv4_header_valid,
    ipv4_key,
    ipv6,
    tcp,
    udp,
)
from engine_support import ENGINES

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_BPF = REPO_ROOT / "examples" / "bpf"
C_PROGRAMS = REPO_ROOT / "tests" / "c_programs"
BUILD_SCRIPT = EXAMPLES_BPF / "build.sh"
EXAMPLE_NAMES = (
    "xdp_parser",
    "ringbuf_events",
    "globals_calls",
    "tail_calls",
    "lpm_router",
    "percpu_counter",
)

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
TC_ACT_OK = 0
U32_MASK = (1 << 32) - 1


# --- toolchain and objects ----------------------------------------------------


def clang_available() -> bool:
    return shutil.which("clang") is not None and Path("/usr/include/bpf/bpf_helpers.h").is_file()


def build(sources: list[Path], out_dir: Path) -> None:
    """Compiles ``sources`` into ``out_dir`` with the project's build script."""
    proc = subprocess.run(
        ["sh", str(BUILD_SCRIPT), "-o", str(out_dir), *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"build.sh failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="session")
def rebuilt_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not clang_available():
        pytest.skip("clang and libbpf-dev are not installed: cannot rebuild the objects")
    out = tmp_path_factory.mktemp("examples_bpf")
    build([EXAMPLES_BPF / f"{name}.c" for name in EXAMPLE_NAMES], out)
    return out


@pytest.fixture(scope="session", params=["committed", "rebuilt"])
def objects_dir(request: pytest.FixtureRequest) -> Path:
    """Where the compiled examples are: the committed objects, or objects
    rebuilt from the sources by the clang installed here."""
    if request.param == "committed":
        return EXAMPLES_BPF
    return request.getfixturevalue("rebuilt_examples")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def open_object(objects_dir: Path, name: str) -> Any:
    return ebpfvm.Object.open(str(objects_dir / f"{name}.o"))


def load(obj: Any, prog_name: str, engine: str) -> Any:
    exe = obj.programs[prog_name].load(engine=engine)
    assert exe.engine == engine
    assert exe.verified  # loading verifies unless told verify=False
    return exe


# --- reading results ----------------------------------------------------------


def retval(result: Any) -> int:
    """r0 of a run: packet programs give a RunResult, others an int."""
    return result if isinstance(result, int) else result.retval


def field(value: Any, name: str) -> Any:
    """A member of a decoded struct (a namespace-like object or a dict)."""
    if isinstance(value, dict):
        return value[name]
    return getattr(value, name)


def as_bytes(value: Any) -> bytes:
    """A decoded char/u8 array: bytes, or a list of ints."""
    return bytes(value)


@pytest.fixture
def trace() -> Iterator[None]:
    """Starts a test with an empty trace buffer."""
    ebpfvm.read_trace()
    yield
    ebpfvm.read_trace()


def trace_messages() -> list[str]:
    return [line.rstrip("\n") for line in ebpfvm.read_trace()]


def assert_traced(message: str, lines: list[str]) -> None:
    assert any(line.endswith(message) for line in lines), (
        f"no trace line ends with {message!r}: {lines!r}"
    )


# --- every object: programs and maps as libbpf sees them ---------------------

#: function name -> (section, program type)
EXPECTED_PROGRAMS = {
    "xdp_parser": {"xdp_parser": ("xdp", "xdp")},
    "ringbuf_events": {
        "trace_openat": ("tracepoint/syscalls/sys_enter_openat", "tracepoint"),
        "xdp_sampler": ("xdp", "xdp"),
    },
    "globals_calls": {"count_globals": ("xdp", "xdp")},
    "tail_calls": {
        name: ("xdp", "xdp")
        for name in ("dispatch", "handle_tcp", "handle_udp", "handle_icmp", "account", "spin")
    },
    "lpm_router": {"lpm_router": ("xdp", "xdp")},
    "percpu_counter": {"percpu_counter": ("tc", "sched_cls")},
}

#: static __noinline functions in .text (called, not entry points)
SUBPROGRAMS = {"globals_calls": {"account"}}

#: map name -> (type, key size, value size, max entries), from the C declarations
EXPECTED_MAPS = {
    "xdp_parser": {
        "proto_count": ("array", 4, 8, 8),
        "src_bytes": ("hash", 4, 16, 1024),
        ".rodata": ("array", 4, None, 1),
    },
    "ringbuf_events": {
        "events": ("ringbuf", 0, 0, 4096),
        "stats": ("array", 4, 8, 2),
    },
    "globals_calls": {
        ".rodata": ("array", 4, None, 1),
        ".data": ("array", 4, None, 1),
        ".bss": ("array", 4, None, 1),
        ".data.stats": ("array", 4, 16, 1),
    },
    "tail_calls": {
        "hops": ("array", 4, 8, 7),
        "jump_table": ("prog_array", 4, 4, 32),
    },
    "lpm_router": {
        "routes": ("lpm_trie", 8, 16, 256),
        "hop_packets": ("hash", 4, 8, 256),
        "route_stats": ("array", 4, 8, 3),
    },
    "percpu_counter": {
        "counters": ("percpu_array", 4, 8, 2),
        "runs_on_cpu": ("array", 4, 8, 256),
    },
}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_object_lists_programs_and_maps(objects_dir: Path, name: str) -> None:
    obj = open_object(objects_dir, name)
    programs = {
        prog_name: (prog.section, prog.prog_type) for prog_name, prog in obj.programs.items()
    }
    entry_points = {n: st for n, st in programs.items() if st[0] != ".text"}
    assert entry_points == EXPECTED_PROGRAMS[name]
    # libbpf lists no .text function as a program; ebpfvm may, but only the
    # object's real subprograms, and with no type of their own.
    for prog_name, (section, prog_type) in programs.items():
        if section == ".text":
            assert prog_name in SUBPROGRAMS.get(name, ()), prog_name
            assert prog_type is None
    for prog_name, prog in obj.programs.items():
        assert prog.name == prog_name
    for map_name, (map_type, key_size, value_size, max_entries) in EXPECTED_MAPS[name].items():
        assert map_name in obj.maps, f"{map_name} missing from {sorted(obj.maps)}"
        m = obj.maps[map_name]
        assert m.map_type == map_type, map_name
        assert m.key_size == key_size, map_name
        if value_size is not None:
            assert m.value_size == value_size, map_name
        assert m.max_entries == max_entries, map_name


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_object_from_bytes_matches_open(objects_dir: Path, name: str) -> None:
    data = (objects_dir / f"{name}.o").read_bytes()
    from_file = open_object(objects_dir, name)
    from_bytes = ebpfvm.Object.from_bytes(data)
    assert sorted(from_bytes.programs) == sorted(from_file.programs)
    assert sorted(from_bytes.maps) == sorted(from_file.maps)
    for prog_name in from_file.programs:
        assert from_bytes.programs[prog_name].code == from_file.programs[prog_name].code


def test_program_from_elf_chooses_by_name_or_section(objects_dir: Path) -> None:
    only = ebpfvm.Program.from_elf(str(objects_dir / "xdp_parser.o"))
    assert only.name == "xdp_parser"
    assert only.prog_type == "xdp"
    path = str(objects_dir / "ringbuf_events.o")
    by_section = ebpfvm.Program.from_elf(path, section="tracepoint/syscalls/sys_enter_openat")
    assert by_section.name == "trace_openat"
    by_name = ebpfvm.Program.from_elf(path, name="xdp_sampler")
    assert by_name.section == "xdp"
    # Two programs and no choice, or a name that is not there: an error that
    # lists what the object has, never an arbitrary pick.
    for kwargs in ({}, {"name": "no_such_program"}, {"section": "tc"}):
        with pytest.raises((ebpfvm.Error, KeyError, ValueError)) as info:
            ebpfvm.Program.from_elf(path, **kwargs)
        assert "trace_openat" in str(info.value) and "xdp_sampler" in str(info.value)


# --- xdp_parser: Ethernet / VLAN / IPv4 / IPv6 / TCP / UDP --------------------

# proto_count slots (enum proto_slot in xdp_parser.c)
OTHER, VLAN, IPV4, IPV6, TCP, UDP, MALFORMED, BLOCKED = range(8)
BLOCKED_PORTS = [22, 23, 8080, 0]


def parser_cases() -> list[tuple[str, bytes, int, list[int], str | None]]:
    """(description, packet, verdict, proto_count slots it bumps, IPv4 source
    it is accounted to) with ports 22, 23 and 8080 blocked."""
    v4_tcp = ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(40000, 80, b"GET / HTTP/1.1\r\n"))
    v4_udp = ipv4("10.0.0.1", "10.0.0.9", IPPROTO_UDP, udp(5353, 53, b"\x12\x34" * 6))
    v4_ssh = ipv4("10.0.0.3", "10.0.0.2", IPPROTO_TCP, tcp(50000, 22))
    v4_udp_8080 = ipv4("192.168.1.1", "10.0.0.2", IPPROTO_UDP, udp(1234, 8080, b"x" * 30))
    v6_tcp = ipv6("2001:db8::1", "2001:db8::2", IPPROTO_TCP, tcp(40001, 443))
    v6_udp_22 = ipv6("2001:db8::1", "2001:db8::2", IPPROTO_UDP, udp(40002, 22))
    truncated_tcp = ipv4("10.0.0.4", "10.0.0.2", IPPROTO_TCP, tcp(1, 80))[: 20 + 8]
    fragment = ipv4("10.0.0.4", "10.0.0.2", IPPROTO_UDP, b"\0" * 16, frag_offset=100)
    options_telnet = ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1025, 23), ihl=6)
    bad_ihl = bytearray(ipv4("10.0.0.5", "10.0.0.2", IPPROTO_TCP, tcp(1, 80)))
    bad_ihl[0] = 0x44
    icmp = ipv4("10.0.0.3", "10.0.0.2", IPPROTO_ICMP, icmp_echo())
    return [
        ("IPv4 TCP to 80", ethernet(ETH_P_IP, v4_tcp), XDP_PASS, [IPV4, TCP], "10.0.0.1"),
        ("IPv4 UDP to 53", ethernet(ETH_P_IP, v4_udp), XDP_PASS, [IPV4, UDP], "10.0.0.1"),
        (
            "IPv4 TCP to 22",
            ethernet(ETH_P_IP, v4_ssh),
            XDP_DROP,
            [IPV4, TCP, BLOCKED],
            "10.0.0.3",
        ),
        (
            "802.1Q IPv4 UDP to 8080",
            ethernet(ETH_P_IP, v4_udp_8080, vlans=[(ETH_P_8021Q, 100)]),
            XDP_DROP,
            [VLAN, IPV4, UDP, BLOCKED],
            "192.168.1.1",
        ),
        (
            "QinQ IPv6 TCP to 443",
            ethernet(ETH_P_IPV6, v6_tcp, vlans=[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)]),
            XDP_PASS,
            [VLAN, IPV6, TCP],
            None,
        ),
        (
            "IPv6 UDP to 22",
            ethernet(ETH_P_IPV6, v6_udp_22),
            XDP_DROP,
            [IPV6, UDP, BLOCKED],
            None,
        ),
        ("ARP", ethernet(ETH_P_ARP, b"\0" * 28), XDP_PASS, [OTHER], None),
        (
            "three VLAN tags (more than the parser follows)",
            ethernet(
                ETH_P_IP,
                v4_tcp,
                vlans=[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
            ),
            XDP_PASS,
            [VLAN, OTHER],
            None,
        ),
        ("runt frame", b"\xff" * 10, XDP_DROP, [MALFORMED], None),
        (
            "IPv4 header cut short",
            ethernet(ETH_P_IP, v4_tcp[:10]),
            XDP_DROP,
            [MALFORMED],
            None,
        ),
        (
            "VLAN tag cut short",
            (DST_MAC + SRC_MAC + struct.pack("!HH", ETH_P_8021Q, 7)),
            XDP_DROP,
            [MALFORMED],
            None,
        ),
        (
            "TCP header cut short",
            ethernet(ETH_P_IP, truncated_tcp),
            XDP_DROP,
            [IPV4, MALFORMED],
            "10.0.0.4",
        ),
        (
            "IPv4 non-first fragment",
            ethernet(ETH_P_IP, fragment),
            XDP_PASS,
            [IPV4],
            "10.0.0.4",
        ),
        (
            "IPv4 with options, TCP to 23",
            ethernet(ETH_P_IP, options_telnet),
            XDP_DROP,
            [IPV4, TCP, BLOCKED],
            "10.0.0.1",
        ),
        (
            "IPv4 IHL below 5",
            ethernet(ETH_P_IP, bytes(bad_ihl)),
            XDP_DROP,
            [MALFORMED],
            None,
        ),
        ("IPv4 ICMP", ethernet(ETH_P_IP, icmp), XDP_PASS, [IPV4], "10.0.0.3"),
    ]


def test_xdp_parser_verdicts_and_counters(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "xdp_parser")
    obj.rodata.blocked_ports = BLOCKED_PORTS
    exe = load(obj, "xdp_parser", engine)
    expected_slots: Counter[int] = Counter()
    expected_sources: dict[int, tuple[int, int]] = {}
    for description, packet, verdict, slots, source in parser_cases():
        res = exe.run(packet)
        assert res.retval == verdict, description
        assert res.action == verdict, description
        assert res.data == packet, f"{description}: the parser must not modify packets"
        expected_slots.update(slots)
        if source is not None:
            packets, nbytes = expected_sources.get(ipv4_key(source), (0, 0))
            expected_sources[ipv4_key(source)] = (packets + 1, nbytes + len(packet))

    proto_count = obj.maps["proto_count"]
    assert [proto_count[slot] for slot in range(8)] == [expected_slots[s] for s in range(8)]
    src_bytes = obj.maps["src_bytes"]
    assert len(src_bytes) == len(expected_sources)
    got = {key: (field(v, "packets"), field(v, "bytes")) for key, v in src_bytes.items()}
    assert got == expected_sources


def test_xdp_parser_returns_xdp_action_enum(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "xdp_parser")
    exe = load(obj, "xdp_parser", engine)
    res = exe.run(ethernet(ETH_P_ARP, b"\0" * 28))
    assert isinstance(res.retval, ebpfvm.XdpAction)
    assert res.retval is ebpfvm.XdpAction.PASS
    assert res.retval.name == "PASS"


def test_xdp_parser_blocks_nothing_by_default(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "xdp_parser")
    assert list(obj.rodata.blocked_ports) == [0, 0, 0, 0]
    exe = load(obj, "xdp_parser", engine)
    ssh = ethernet(ETH_P_IP, ipv4("10.0.0.3", "10.0.0.2", IPPROTO_TCP, tcp(50000, 22)))
    assert exe.run(ssh).retval == XDP_PASS
    assert obj.maps["proto_count"][BLOCKED] == 0


def test_xdp_parser_rodata_is_frozen_after_load(objects_dir: Path) -> None:
    obj = open_object(objects_dir, "xdp_parser")
    obj.rodata.blocked_ports = BLOCKED_PORTS
    assert list(obj.rodata.blocked_ports) == BLOCKED_PORTS
    exe = obj.programs["xdp_parser"].load()
    with pytest.raises(ebpfvm.MapError, match="frozen"):
        obj.rodata.blocked_ports = [80, 0, 0, 0]
    assert list(obj.rodata.blocked_ports) == BLOCKED_PORTS
    http = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1, 80)))
    assert exe.run(http).retval == XDP_PASS


def test_xdp_parser_map_values_can_be_written_from_python(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "xdp_parser")
    src_bytes = obj.maps["src_bytes"]
    src_bytes[ipv4_key("10.0.0.1")] = {"packets": 100, "bytes": 6400}
    obj.maps["proto_count"][TCP] = 41
    exe = load(obj, "xdp_parser", engine)
    packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1, 80)))
    exe.run(packet)
    value = src_bytes[ipv4_key("10.0.0.1")]
    assert (field(value, "packets"), field(value, "bytes")) == (101, 6400 + len(packet))
    assert obj.maps["proto_count"][TCP] == 42


def test_xdp_parser_traces_drops(objects_dir: Path, engine: str, trace: None) -> None:
    obj = open_object(objects_dir, "xdp_parser")
    obj.rodata.blocked_ports = BLOCKED_PORTS
    exe = load(obj, "xdp_parser", engine)
    ssh = ethernet(ETH_P_IP, ipv4("10.0.0.3", "10.0.0.2", IPPROTO_TCP, tcp(50000, 22)))
    res = exe.run(ssh, ctx={"ingress_ifindex": 3, "rx_queue_index": 1})
    assert res.retval == XDP_DROP
    http = ethernet(ETH_P_IP, ipv4("10.0.0.3", "10.0.0.2", IPPROTO_TCP, tcp(50000, 80)))
    assert exe.run(http, ctx={"ingress_ifindex": 3}).retval == XDP_PASS
    lines = trace_messages()
    assert len(lines) == 1, lines
    assert_traced("xdp_parser: drop port 22 ifindex 3", lines)


def test_bpf_facade_runs_and_reads_maps(objects_dir: Path, trace: None) -> None:
    b = ebpfvm.BPF(obj_file=str(objects_dir / "xdp_parser.o"))
    fn = b.load_func("xdp_parser", "xdp")
    assert fn.verified
    udp_packet = ethernet(ETH_P_IP, ipv4("10.9.9.9", "10.0.0.2", IPPROTO_UDP, udp(1, 53)))
    for _ in range(3):
        assert fn.run(udp_packet).retval == XDP_PASS
    assert b["proto_count"][UDP] == 3
    assert b["proto_count"][IPV4] == 3
    value = b["src_bytes"][ipv4_key("10.9.9.9")]
    assert (field(value, "packets"), field(value, "bytes")) == (3, 3 * len(udp_packet))

    # trace_fields() reads what bpf_printk wrote, as bcc's does.
    obj = open_object(objects_dir, "xdp_parser")
    obj.rodata.blocked_ports = BLOCKED_PORTS
    ssh = ethernet(ETH_P_IP, ipv4("10.0.0.3", "10.0.0.2", IPPROTO_TCP, tcp(50000, 22)))
    obj.programs["xdp_parser"].run(ssh, ctx={"ingress_ifindex": 7})
    fields = b.trace_fields()
    assert fields[-1].rstrip("\n").endswith("xdp_parser: drop port 22 ifindex 7")


# --- ringbuf_events -----------------------------------------------------------

EVENT_OPEN, EVENT_PACKET = 1, 2
STAT_LOST, STAT_DISCARDED = 0, 1
OPEN_EVENT = struct.Struct("<IIIIQqqQ16s")  # struct open_event
PACKET_EVENT = struct.Struct("<IIIIQ14sH")  # struct packet_event
SYS_ENTER_CTX = struct.Struct("<Qq6Q")  # struct sys_enter_ctx
RINGBUF_HDR = 8  # BPF_RINGBUF_HDR_SZ
NR_OPENAT = 257
AT_FDCWD = -100
O_RDONLY_CLOEXEC = 0o2000000


def openat_ctx(flags: int) -> bytes:
    args = [AT_FDCWD & ((1 << 64) - 1), 0x7FFF0000, flags, 0o644, 0, 0]
    return SYS_ENTER_CTX.pack(0, NR_OPENAT, *args)


def record_bytes(args: tuple[Any, ...]) -> bytes:
    """The record a ring-buffer callback was given: callback(data) with a
    bytes-like object, or bcc's callback(ctx, data, size)."""
    if len(args) == 1:
        return bytes(args[0])
    _ctx, data, size = args
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)[:size]
    import ctypes

    return ctypes.string_at(data, size)


def drain_with_callback(rb: Any) -> list[bytes]:
    records: list[bytes] = []

    def on_record(*args: Any) -> int:
        records.append(record_bytes(args))
        return 0

    rb.open_ring_buffer(on_record)
    consumed = rb.poll(timeout_ms=100)
    assert consumed == len(records)
    return records


def current_comm() -> bytes:
    """What the kernel's bpf_get_current_comm gives for this thread: its
    name, at most 15 bytes, NUL-padded to TASK_COMM_LEN."""
    name = Path("/proc/thread-self/comm").read_bytes().rstrip(b"\n")[:15]
    return name.ljust(16, b"\0")


def test_ringbuf_tracepoint_events(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "ringbuf_events")
    exe = load(obj, "trace_openat", engine)
    rb = obj.maps["events"]
    before = time.monotonic_ns()
    for i in range(5):
        assert retval(exe.run(openat_ctx(O_RDONLY_CLOEXEC | i))) == 0
    after = time.monotonic_ns()

    records = drain_with_callback(rb)
    assert [len(r) for r in records] == [OPEN_EVENT.size] * 5
    timestamps = []
    for i, record in enumerate(records):
        kind, pid, tgid, cpu, ts, nr, dirfd, flags, comm = OPEN_EVENT.unpack(record)
        assert kind == EVENT_OPEN
        assert pid == threading.get_native_id()
        assert tgid == os.getpid()
        assert cpu >= 0
        assert before <= ts <= after
        timestamps.append(ts)
        assert (nr, dirfd, flags) == (NR_OPENAT, AT_FDCWD, O_RDONLY_CLOEXEC | i)
        assert comm == current_comm()
    assert timestamps == sorted(timestamps)
    assert obj.maps["stats"][STAT_LOST] == 0
    assert rb.poll(timeout_ms=0) == 0


def test_ringbuf_xdp_reserve_submit_discard(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "ringbuf_events")
    exe = load(obj, "xdp_sampler", engine)
    packets = [
        ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_UDP, udp(1, 2, b"a" * n)))
        for n in (0, 100, 1000)
    ]
    before = time.monotonic_ns()
    for i, packet in enumerate(packets):
        res = exe.run(packet, ctx={"ingress_ifindex": 4 + i, "rx_queue_index": i})
        assert res.retval == XDP_PASS
    runt = b"\x01\x02\x03"
    assert exe.run(runt, ctx={"ingress_ifindex": 9}).retval == XDP_DROP
    after = time.monotonic_ns()

    records = list(obj.maps["events"])  # iteration: non-blocking, ends when empty
    assert len(records) == len(packets), "the discarded reservation must not be delivered"
    for i, (record, packet) in enumerate(zip(records, packets, strict=True)):
        assert len(record) == PACKET_EVENT.size
        kind, length, ifindex, rx_queue, ts, eth, pad = PACKET_EVENT.unpack(record)
        assert (kind, length, ifindex, rx_queue, pad) == (EVENT_PACKET, len(packet), 4 + i, i, 0)
        assert before <= ts <= after
        assert eth == packet[:ETH_HLEN]
    assert obj.maps["stats"][STAT_DISCARDED] == 1
    assert obj.maps["stats"][STAT_LOST] == 0
    assert list(obj.maps["events"]) == []


def test_ringbuf_full_then_wraps_around(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "ringbuf_events")
    exe = load(obj, "trace_openat", engine)
    rb = obj.maps["events"]
    size = rb.max_entries
    # A record takes its 8-byte header plus the sample, rounded up to 8; the
    # kernel refuses a reservation that would leave no byte of the ring free.
    record_len = (RINGBUF_HDR + OPEN_EVENT.size + 7) // 8 * 8
    capacity = (size - 1) // record_len
    attempts = capacity + 10
    for i in range(attempts):
        exe.run(openat_ctx(i))
    assert obj.maps["stats"][STAT_LOST] == attempts - capacity
    flags = [OPEN_EVENT.unpack(r)[7] for r in drain_with_callback(rb)]
    assert flags == list(range(capacity))

    # Keep producing and consuming well past the end of the ring: records
    # come back whole and in order across the wrap-around.
    sent = 0
    for round_no in range(4):
        batch = [1000 * (round_no + 1) + j for j in range(capacity // 2 + 3)]
        for value in batch:
            exe.run(openat_ctx(value))
        sent += len(batch)
        got = [OPEN_EVENT.unpack(r)[7] for r in iter(rb)]
        assert got == batch
    assert sent * record_len > 2 * size
    assert obj.maps["stats"][STAT_LOST] == attempts - capacity


def test_ringbuf_consume_without_waiting(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "ringbuf_events")
    exe = load(obj, "trace_openat", engine)
    rb = obj.maps["events"]
    seen: list[int] = []
    rb.open_ring_buffer(lambda *args: seen.append(OPEN_EVENT.unpack(record_bytes(args))[7]))
    assert rb.consume() == 0
    for value in (7, 8, 9):
        exe.run(openat_ctx(value))
    assert rb.consume() == 3
    assert seen == [7, 8, 9]


# --- globals_calls: .rodata / .data / .bss / .data.stats and a BPF-to-BPF call ---

LEN_STATS = struct.Struct("<QII")  # struct len_stats


def len_stats(obj: Any) -> tuple[int, int, int]:
    """(calls, min_len, max_len) of the .data.stats section's variable."""
    value = obj.maps[".data.stats"][0]
    if isinstance(value, (bytes, bytearray)):
        return LEN_STATS.unpack(bytes(value)[: LEN_STATS.size])
    stats = field(value, "stats")
    return field(stats, "calls"), field(stats, "min_len"), field(stats, "max_len")


def decode_insns(code: bytes) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, offset, imm) for each 8-byte instruction slot."""
    out = []
    for pc in range(len(code) // 8):
        opcode, regs, off, imm = struct.unpack_from("<BBhi", code, pc * 8)
        out.append((opcode, regs & 0xF, regs >> 4, off, imm))
    return out


def test_globals_initial_values(objects_dir: Path) -> None:
    obj = open_object(objects_dir, "globals_calls")
    assert obj.rodata.scale == 1
    assert obj.rodata.verbose == 0
    assert obj.data.last_len == -1
    assert as_bytes(obj.data.tag) == b"ebpfvm\0\0"
    assert obj.bss.packets == 0
    assert obj.bss.weighted_bytes == 0
    assert len_stats(obj) == (0, U32_MASK, 0)


def test_globals_updated_through_bpf_to_bpf_call(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "globals_calls")
    obj.rodata.scale = 3
    exe = load(obj, "count_globals", engine)
    lengths = [60, 100, 42, 1514]
    for n in lengths:
        assert exe.run(bytes(n)).retval == XDP_PASS
    assert obj.bss.packets == len(lengths)
    assert obj.bss.weighted_bytes == 3 * sum(lengths)
    assert obj.data.last_len == lengths[-1]
    assert len_stats(obj) == (len(lengths), min(lengths), max(lengths))

    # Globals written from Python are what the program sees next.
    obj.bss.packets = 1000
    obj.data.last_len = 7
    exe.run(bytes(64))
    assert obj.bss.packets == 1001
    assert obj.data.last_len == 64


def test_globals_program_makes_a_real_call(objects_dir: Path) -> None:
    prog = open_object(objects_dir, "globals_calls").programs["count_globals"]
    insns = decode_insns(prog.code)
    calls = [
        (pc, imm)
        for pc, (opcode, _dst, src, _off, imm) in enumerate(insns)
        if opcode == 0x85 and src == 1  # BPF_CALL with BPF_PSEUDO_CALL
    ]
    assert len(calls) == 1, "account() must stay a BPF-to-BPF call"
    pc, imm = calls[0]
    target = pc + 1 + imm
    assert pc < target < len(insns), "the callee is linked after the program, as libbpf does"
    assert insns[target - 1][0] == 0x95, "the callee starts after the caller's exit"


def test_globals_rodata_frozen_after_load(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "globals_calls")
    obj.rodata.scale = 5
    exe = load(obj, "count_globals", engine)
    with pytest.raises(ebpfvm.MapError, match="frozen"):
        obj.rodata.scale = 6
    exe.run(bytes(10))
    assert obj.bss.weighted_bytes == 50


def test_globals_trace_printk_with_string_argument(
    objects_dir: Path, engine: str, trace: None
) -> None:
    obj = open_object(objects_dir, "globals_calls")
    obj.rodata.scale = 2
    obj.rodata.verbose = 1
    exe = load(obj, "count_globals", engine)
    exe.run(bytes(60))
    exe.run(bytes(61))
    lines = trace_messages()
    assert len(lines) == 2, lines
    assert_traced("ebpfvm: len=60 weighted=120", lines[:1])
    assert_traced("ebpfvm: len=61 weighted=122", lines[1:])


# --- tail_calls -------------------------------------------------------------

H_DISPATCH, H_TCP, H_UDP, H_ICMP, H_ACCOUNT, H_FALLTHROUGH, H_SPIN = range(7)
MAX_TAIL_CALLS = 33  # the kernel's MAX_TAIL_CALL_CNT


def hop_counts(obj: Any) -> list[int]:
    hops = obj.maps["hops"]
    return [hops[i] for i in range(7)]


def v4_packet(proto: int, l4: bytes) -> bytes:
    return ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", proto, l4))


def test_tail_call_chain_from_object_table(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "tail_calls")
    exe = load(obj, "dispatch", engine)
    expected = [0] * 7

    def run(packet: bytes, verdict: int, *hops: int) -> None:
        res = exe.run(packet)
        assert res.retval == verdict
        assert res.data == packet
        for h in hops:
            expected[h] += 1
        assert hop_counts(obj) == expected

    tcp_packet = v4_packet(IPPROTO_TCP, tcp(1, 80))
    udp_packet = v4_packet(IPPROTO_UDP, udp(1, 53))
    icmp_packet = v4_packet(IPPROTO_ICMP, icmp_echo())
    run(tcp_packet, XDP_TX, H_DISPATCH, H_TCP, H_ACCOUNT)
    run(udp_packet, XDP_TX, H_DISPATCH, H_UDP, H_ACCOUNT)
    # ICMP's slot is empty: the tail call fails and dispatch goes on.
    run(icmp_packet, XDP_PASS, H_DISPATCH, H_FALLTHROUGH)
    # Protocol 47 (GRE) is past the table: dispatch does not even try.
    run(v4_packet(47, b"\0" * 8), XDP_PASS, H_DISPATCH, H_FALLTHROUGH)
    run(ethernet(ETH_P_IPV6, b"\0" * 40), XDP_PASS, H_DISPATCH)


def test_tail_call_slots_set_from_python(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "tail_calls")
    jump_table = obj.maps["jump_table"]
    exe = load(obj, "dispatch", engine)
    icmp_packet = v4_packet(IPPROTO_ICMP, icmp_echo())
    tcp_packet = v4_packet(IPPROTO_TCP, tcp(1, 80))
    udp_packet = v4_packet(IPPROTO_UDP, udp(1, 53))

    assert exe.run(icmp_packet).retval == XDP_PASS
    jump_table[IPPROTO_ICMP] = obj.programs["handle_icmp"]
    assert exe.run(icmp_packet).retval == XDP_DROP
    assert hop_counts(obj)[H_ICMP] == 1

    del jump_table[IPPROTO_TCP]
    assert exe.run(tcp_packet).retval == XDP_PASS
    assert hop_counts(obj)[H_TCP] == 0

    # With the shared stage gone, handle_udp's own tail call falls through.
    del jump_table[0]
    assert exe.run(udp_packet).retval == XDP_ABORTED
    counts = hop_counts(obj)
    assert counts[H_UDP] == 1
    assert counts[H_ACCOUNT] == 0
    assert counts[H_FALLTHROUGH] == 3  # ICMP before it was set, TCP, UDP's stage

    # Point the TCP slot at a program from the table again.
    jump_table[IPPROTO_TCP] = obj.programs["account"]
    assert exe.run(tcp_packet).retval == XDP_TX
    assert hop_counts(obj)[H_ACCOUNT] == 1


def test_tail_call_limit_is_the_kernels(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "tail_calls")
    exe = load(obj, "spin", engine)
    res = exe.run(v4_packet(IPPROTO_UDP, udp(1, 2)))
    assert res.retval == XDP_REDIRECT
    assert hop_counts(obj)[H_SPIN] == 1 + MAX_TAIL_CALLS
    exe.run(bytes(60))
    assert hop_counts(obj)[H_SPIN] == 2 * (1 + MAX_TAIL_CALLS), "the limit is per run"


# --- lpm_router -------------------------------------------------------------

R_HIT, R_MISS, R_TTL = range(3)

#: prefix -> (next hop, ifindex, gateway MAC)
ROUTES = {
    "0.0.0.0/0": ("192.0.2.1", 1, "02aa00000001"),
    "10.0.0.0/8": ("192.0.2.8", 2, "02aa00000008"),
    "10.1.0.0/16": ("192.0.2.16", 3, "02aa00000016"),
    "10.1.2.0/24": ("192.0.2.24", 4, "02aa00000024"),
    "10.1.2.128/25": ("192.0.2.25", 5, "02aa00000025"),
    "172.16.5.7/32": ("192.0.2.32", 6, "02aa00000032"),
}


def route_key(prefix: str) -> dict[str, int]:
    net = ipaddress.ip_network(prefix)
    return {"prefixlen": net.prefixlen, "addr": ipv4_key(str(net.network_address))}


def best_route(dst: str, routes: dict[str, Any]) -> str | None:
    """The longest prefix in ``routes`` containing ``dst``."""
    addr = ipaddress.ip_address(dst)
    matches = [p for p in routes if addr in ipaddress.ip_network(p)]
    return max(matches, key=lambda p: ipaddress.ip_network(p).prefixlen, default=None)


def forwarded(packet: bytes, gateway_mac: bytes) -> bytes:
    """The packet the kernel would transmit: MACs rewritten, TTL decremented
    with an incremental checksum update (ip_decrease_ttl)."""
    out = bytearray(packet)
    out[0:6] = gateway_mac
    out[6:12] = packet[0:6]
    ttl_at = ETH_HLEN + 8
    out[ttl_at] -= 1
    check = int.from_bytes(packet[ETH_HLEN + 10 : ETH_HLEN + 12], "little") + 0x0001
    check = (check + (check >= 0xFFFF)) & 0xFFFF
    out[ETH_HLEN + 10 : ETH_HLEN + 12] = check.to_bytes(2, "little")
    return bytes(out)


def fill_routes(obj: Any) -> None:
    routes = obj.maps["routes"]
    for prefix, (hop, ifindex, mac) in ROUTES.items():
        routes[route_key(prefix)] = {
            "next_hop": ipv4_key(hop),
            "ifindex": ifindex,
            "dmac": bytes.fromhex(mac),
            "flags": 0,
        }


def test_lpm_router_picks_longest_prefix(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "lpm_router")
    fill_routes(obj)
    assert len(obj.maps["routes"]) == len(ROUTES)
    exe = load(obj, "lpm_router", engine)
    destinations = [
        "10.1.2.200",
        "10.1.2.128",
        "10.1.2.127",
        "10.1.2.5",
        "10.1.3.1",
        "10.200.0.1",
        "8.8.8.8",
        "172.16.5.7",
        "172.16.5.8",
        "10.1.2.255",
    ]
    hop_packets: Counter[int] = Counter()
    for i, dst in enumerate(destinations):
        packet = ethernet(
            ETH_P_IP,
            ipv4("198.51.100.7", dst, IPPROTO_UDP, udp(1000 + i, 53, b"q" * i), ident=i * 977),
        )
        prefix = best_route(dst, ROUTES)
        assert prefix is not None
        hop, _ifindex, mac = ROUTES[prefix]
        res = exe.run(packet)
        assert res.retval == XDP_TX, dst
        assert res.data == forwarded(packet, bytes.fromhex(mac)), f"{dst} via {prefix}"
        assert ipv4_header_valid(res.data), dst
        assert res.data[ETH_HLEN + 8] == 63
        hop_packets[ipv4_key(hop)] += 1
    assert dict(obj.maps["hop_packets"].items()) == dict(hop_packets)
    stats = obj.maps["route_stats"]
    assert [stats[i] for i in range(3)] == [len(destinations), 0, 0]


def test_lpm_router_misses_and_expiring_ttl(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "lpm_router")
    fill_routes(obj)
    del obj.maps["routes"][route_key("0.0.0.0/0")]
    exe = load(obj, "lpm_router", engine)

    no_route = ethernet(ETH_P_IP, ipv4("198.51.100.7", "8.8.8.8", IPPROTO_UDP, udp(1, 53)))
    res = exe.run(no_route)
    assert (res.retval, res.data) == (XDP_PASS, no_route)
    expiring = ethernet(ETH_P_IP, ipv4("198.51.100.7", "10.1.2.3", IPPROTO_UDP, udp(1, 53), ttl=1))
    res = exe.run(expiring)
    assert (res.retval, res.data) == (XDP_PASS, expiring)
    arp = ethernet(ETH_P_ARP, b"\0" * 28)
    assert exe.run(arp).retval == XDP_PASS
    assert exe.run(ethernet(ETH_P_IP, b"\x45\0\0")).retval == XDP_DROP
    stats = obj.maps["route_stats"]
    assert [stats[i] for i in range(3)] == [0, 1, 1]
    assert len(obj.maps["hop_packets"]) == 0


def test_lpm_router_checksum_carry(objects_dir: Path, engine: str) -> None:
    """The TTL update must carry around the one's-complement wrap: find the
    IP identification for which the header checksum is 0xfeff (decrementing
    the TTL then overflows the 16-bit sum) and a few ordinary ones."""

    def packet_for(ident: int) -> bytes:
        l3 = ipv4("198.51.100.7", "10.1.2.3", IPPROTO_TCP, tcp(1, 2), ident=ident)
        return ethernet(ETH_P_IP, l3)

    def header_check(packet: bytes) -> int:
        return int.from_bytes(packet[ETH_HLEN + 10 : ETH_HLEN + 12], "big")

    wrapping = [i for i in range(65536) if header_check(packet_for(i)) == 0xFEFF]
    assert wrapping, "some identification gives the checksum 0xfeff"
    obj = open_object(objects_dir, "lpm_router")
    fill_routes(obj)
    exe = load(obj, "lpm_router", engine)
    gateway = bytes.fromhex(ROUTES["10.1.2.0/24"][2])
    for ident in [wrapping[0], 0, 1, 0x7FFF, 0xFFFF]:
        packet = packet_for(ident)
        res = exe.run(packet)
        assert res.retval == XDP_TX
        assert res.data == forwarded(packet, gateway), f"ident {ident}"
        assert ipv4_header_valid(res.data), f"ident {ident}"
    assert header_check(forwarded(packet_for(wrapping[0]), gateway)) == 0


def test_lpm_lookup_from_python_is_longest_prefix(objects_dir: Path) -> None:
    obj = open_object(objects_dir, "lpm_router")
    fill_routes(obj)
    routes = obj.maps["routes"]
    for dst in ("10.1.2.130", "10.1.2.1", "10.9.9.9", "1.1.1.1", "172.16.5.7"):
        prefix = best_route(dst, ROUTES)
        assert prefix is not None
        value = routes[{"prefixlen": 32, "addr": ipv4_key(dst)}]
        assert field(value, "next_hop") == ipv4_key(ROUTES[prefix][0]), dst
        assert field(value, "ifindex") == ROUTES[prefix][1]
        assert as_bytes(field(value, "dmac")) == bytes.fromhex(ROUTES[prefix][2])


# --- percpu_counter -----------------------------------------------------------

C_PACKETS, C_BYTES = 0, 1


def test_percpu_counter_one_thread(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "percpu_counter")
    exe = load(obj, "percpu_counter", engine)
    lengths = [60 + 7 * i for i in range(25)]
    marks = set()
    for n in lengths:
        packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_UDP, udp(1, 2, bytes(n))))
        res = exe.run(packet)
        assert res.retval == TC_ACT_OK
        marks.add(res.ctx["mark"])
    assert len(marks) == 1, "one thread runs on one virtual CPU"
    cpu = marks.pop() - 1
    counters = obj.maps["counters"]
    ncpus = counters.num_cpus
    assert 0 <= cpu < ncpus
    expected_bytes = sum(ETH_HLEN + 20 + 8 + n for n in lengths)
    packets = counters[C_PACKETS]
    assert len(packets) == ncpus
    assert packets == [len(lengths) if c == cpu else 0 for c in range(ncpus)]
    assert counters[C_BYTES] == [expected_bytes if c == cpu else 0 for c in range(ncpus)]
    assert counters.sum(C_PACKETS) == len(lengths)
    assert counters.sum(C_BYTES) == expected_bytes
    assert counters.max(C_BYTES) == expected_bytes
    assert obj.maps["runs_on_cpu"][cpu] == len(lengths)


def test_percpu_counter_many_threads(objects_dir: Path, engine: str) -> None:
    obj = open_object(objects_dir, "percpu_counter")
    exe = load(obj, "percpu_counter", engine)
    threads_n, runs = 6, 200
    packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_TCP, tcp(1, 2)))
    marks_by_thread: list[set[int]] = [set() for _ in range(threads_n)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for _ in range(runs):
                marks_by_thread[index].add(exe.run(packet).ctx["mark"])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    expected_per_cpu: Counter[int] = Counter()
    for marks in marks_by_thread:
        assert len(marks) == 1, "a thread keeps its virtual CPU"
        expected_per_cpu[next(iter(marks)) - 1] += runs

    counters = obj.maps["counters"]
    runs_on_cpu = obj.maps["runs_on_cpu"]
    ncpus = counters.num_cpus
    assert counters[C_PACKETS] == [expected_per_cpu[c] for c in range(ncpus)]
    assert counters[C_BYTES] == [expected_per_cpu[c] * len(packet) for c in range(ncpus)]
    assert [runs_on_cpu[c] for c in range(ncpus)] == counters[C_PACKETS]
    assert counters.sum(C_PACKETS) == threads_n * runs


# --- the committed objects are the sources' -----------------------------------


def test_committed_objects_are_up_to_date(tmp_path: Path) -> None:
    """Rebuilding with the clang that built the committed objects gives the
    same bytes: nobody edited a source without rebuilding, and the build
    embeds no path of the machine it ran on."""
    if not clang_available():
        pytest.skip("clang and libbpf-dev are not installed")
    recorded = (EXAMPLES_BPF / "CLANG_VERSION").read_text().strip()
    installed = subprocess.run(
        ["clang", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    if installed.strip() != recorded:
        pytest.skip(f"objects were built by {recorded!r}, this is {installed!r}")
    sources = sorted(EXAMPLES_BPF.glob("*.c")) + sorted(C_PROGRAMS.glob("*/*.c"))
    assert len(sources) >= len(EXAMPLE_NAMES) + 10
    for src in sources:
        out = tmp_path / src.parent.name
        build([src], out)
        rebuilt = (out / f"{src.stem}.o").read_bytes()
        committed = src.with_suffix(".o").read_bytes()
        assert rebuilt == committed, f"{src.relative_to(REPO_ROOT)}: rebuild and commit the .o"
        assert b"/work/" not in committed and str(REPO_ROOT).encode() not in committed


# --- the example scripts --------------------------------------------------------


EXAMPLE_SCRIPTS = sorted(
    p.name for p in (REPO_ROOT / "examples").glob("*.py") if not p.name.startswith("_")
)


@pytest.mark.parametrize("script", EXAMPLE_SCRIPTS)
def test_example_script_runs(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{script} printed nothing"
