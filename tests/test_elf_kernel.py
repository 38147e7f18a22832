"""ebpfvm against the Linux kernel itself, on the compiled C examples.

Where this machine lets us (root and a kernel that allows bpf(); see
kernel_bpf.py), each example object is loaded into the running kernel with
libbpf and test-run (BPF_PROG_TEST_RUN) on the same packets as in ebpfvm:
verdicts, packets after the run and map contents must be the same. The
kernel cannot test-run frames shorter than an Ethernet header, nor
tracepoint programs, so those stay in test_elf_programs.py alone.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import ebpfvm
import pytest
from elf_packets import (
    ETH_HLEN,
    ETH_P_IP,
    IPPROTO_UDP,
    ethernet,
    icmp_echo,
    ipv4,
    ipv4_key,
    tcp,
    udp,
)
from engine_support import ENGINES
from kernel_bpf import KernelObject, kernel_unavailable
from test_elf_programs import (
    BLOCKED_PORTS,
    ROUTES,
    field,
    parser_cases,
    route_key,
    v4_packet,
)

EXAMPLES_BPF = Path(__file__).resolve().parent.parent / "examples" / "bpf"
SKB_MARK_OFFSET = 8  # offsetof(struct __sk_buff, mark)
SK_BUFF_SIZE = 192  # sizeof(struct __sk_buff)

pytestmark = pytest.mark.skipif(
    kernel_unavailable() is not None, reason=f"no kernel oracle: {kernel_unavailable()}"
)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def both(name: str, rodata: dict[str, Any] | None = None) -> tuple[Any, KernelObject]:
    """The object opened in ebpfvm and loaded into the kernel, with the same
    .rodata values."""
    path = EXAMPLES_BPF / f"{name}.o"
    obj = ebpfvm.Object.open(str(path))
    kernel_rodata = {}
    for var, value in (rodata or {}).items():
        setattr(obj.rodata, var, value)
        if isinstance(value, list):
            kernel_rodata[var] = struct.pack(f"<{len(value)}H", *value)
        else:
            kernel_rodata[var] = struct.pack("<I", value)
    return obj, KernelObject(path, kernel_rodata)


def u64(raw: bytes | None) -> int | None:
    return None if raw is None else struct.unpack_from("<Q", raw)[0]


def test_xdp_parser_agrees_with_kernel(engine: str) -> None:
    obj, kernel = both("xdp_parser", {"blocked_ports": BLOCKED_PORTS})
    with kernel:
        exe = obj.programs["xdp_parser"].load(engine=engine)
        for description, packet, _verdict, _slots, _source in parser_cases():
            if len(packet) < ETH_HLEN:
                continue
            k_ret, k_data, _ = kernel.run("xdp_parser", packet)
            res = exe.run(packet)
            assert (res.retval, res.data) == (k_ret, k_data), description
        for slot in range(8):
            key = struct.pack("<I", slot)
            assert obj.maps["proto_count"][slot] == u64(kernel.lookup("proto_count", key))
        kernel_sources = {
            struct.unpack("<I", k)[0]: struct.unpack("<QQ", v)
            for k, v in kernel.items("src_bytes").items()
        }
        ours = {
            k: (field(v, "packets"), field(v, "bytes")) for k, v in obj.maps["src_bytes"].items()
        }
        assert ours == kernel_sources


def test_lpm_router_agrees_with_kernel(engine: str) -> None:
    obj, kernel = both("lpm_router")
    with kernel:
        for prefix, (hop, ifindex, mac) in ROUTES.items():
            key = route_key(prefix)
            obj.maps["routes"][key] = {
                "next_hop": ipv4_key(hop),
                "ifindex": ifindex,
                "dmac": bytes.fromhex(mac),
                "flags": 0,
            }
            kernel.update(
                "routes",
                struct.pack("<II", key["prefixlen"], key["addr"]),
                struct.pack("<II6sH", ipv4_key(hop), ifindex, bytes.fromhex(mac), 0),
            )
        exe = obj.programs["lpm_router"].load(engine=engine)
        for i, dst in enumerate(["10.1.2.200", "10.1.2.127", "10.1.3.1", "10.9.0.1", "8.8.8.8"]):
            for ttl in (64, 1):
                packet = ethernet(
                    ETH_P_IP, ipv4("198.51.100.7", dst, IPPROTO_UDP, udp(i, 53), ttl=ttl, ident=i)
                )
                k_ret, k_data, _ = kernel.run("lpm_router", packet)
                res = exe.run(packet)
                assert (res.retval, res.data) == (k_ret, k_data), (dst, ttl)
        kernel_hops = {
            struct.unpack("<I", k)[0]: u64(v) for k, v in kernel.items("hop_packets").items()
        }
        assert dict(obj.maps["hop_packets"].items()) == kernel_hops
        for slot in range(3):
            key = struct.pack("<I", slot)
            assert obj.maps["route_stats"][slot] == u64(kernel.lookup("route_stats", key))


def test_tail_calls_agree_with_kernel(engine: str) -> None:
    obj, kernel = both("tail_calls")
    with kernel:
        dispatch = obj.programs["dispatch"].load(engine=engine)
        packets = [
            v4_packet(6, tcp(1, 80)),
            v4_packet(IPPROTO_UDP, udp(1, 53)),
            v4_packet(1, icmp_echo()),
            v4_packet(47, bytes(8)),
        ]
        for packet in packets:
            assert dispatch.run(packet).retval == kernel.run("dispatch", packet)[0]
        spin = obj.programs["spin"].load(engine=engine)
        assert spin.run(packets[0]).retval == kernel.run("spin", packets[0])[0]
        for slot in range(7):
            key = struct.pack("<I", slot)
            assert obj.maps["hops"][slot] == u64(kernel.lookup("hops", key)), f"hop {slot}"


def test_globals_agree_with_kernel(engine: str) -> None:
    obj, kernel = both("globals_calls", {"scale": 7})
    with kernel:
        exe = obj.programs["count_globals"].load(engine=engine)
        for n in (60, 1514, 42, 99):
            assert exe.run(bytes(n)).retval == kernel.run("count_globals", bytes(n))[0]
        zero = struct.pack("<I", 0)
        packets, weighted = struct.unpack("<QQ", kernel.lookup(".bss", zero) or b"")
        assert (obj.bss.packets, obj.bss.weighted_bytes) == (packets, weighted)
        last_len = struct.unpack_from("<i", kernel.lookup(".data", zero) or b"")[0]
        assert obj.data.last_len == last_len
        calls, min_len, max_len = struct.unpack("<QII", kernel.lookup(".data.stats", zero) or b"")
        value = obj.maps[".data.stats"][0]
        if isinstance(value, (bytes, bytearray)):
            assert struct.unpack("<QII", bytes(value)[:16]) == (calls, min_len, max_len)
        else:
            stats = field(value, "stats")
            ours = (field(stats, "calls"), field(stats, "min_len"), field(stats, "max_len"))
            assert ours == (calls, min_len, max_len)


def test_percpu_counter_agrees_with_kernel(engine: str) -> None:
    obj, kernel = both("percpu_counter")
    with kernel:
        exe = obj.programs["percpu_counter"].load(engine=engine)
        packet = ethernet(ETH_P_IP, ipv4("10.0.0.1", "10.0.0.2", IPPROTO_UDP, udp(1, 2)))
        for _ in range(10):
            k_ret, _data, k_ctx = kernel.run("percpu_counter", packet, ctx_out_size=SK_BUFF_SIZE)
            res = exe.run(packet)
            assert res.retval == k_ret
            # Both mark the packet with the CPU they counted it on, plus one.
            k_cpu = struct.unpack_from("<I", k_ctx, SKB_MARK_OFFSET)[0] - 1
            cpu = res.ctx["mark"] - 1
            assert 0 <= k_cpu < kernel.num_cpus
            assert 0 <= cpu < obj.maps["counters"].num_cpus
        for slot in range(2):
            raw = kernel.lookup("counters", struct.pack("<I", slot), percpu=True) or b""
            kernel_sum = sum(struct.unpack(f"<{kernel.num_cpus}Q", raw))
            assert obj.maps["counters"].sum(slot) == kernel_sum


def test_ringbuf_capacity_agrees_with_kernel(engine: str) -> None:
    obj, kernel = both("ringbuf_events")
    with kernel:
        exe = obj.programs["xdp_sampler"].load(engine=engine)
        packet = ethernet(ETH_P_IP, bytes(30))
        for _ in range(120):
            assert exe.run(packet).retval == kernel.run("xdp_sampler", packet)[0]
        lost = u64(kernel.lookup("stats", struct.pack("<I", 0)))
        assert lost and lost > 0, "the kernel's ring must have filled up"
        assert obj.maps["stats"][0] == lost
        assert len(list(obj.maps["events"])) == 120 - lost
