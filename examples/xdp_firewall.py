"""Run an XDP firewall compiled from C, as the kernel would, on a handful of
packets, and read what it counted.

bpf/xdp_parser.c parses Ethernet, VLAN, IPv4/IPv6 and TCP/UDP headers, counts
packets per protocol and bytes per IPv4 source, and drops packets to the
destination ports set in its .rodata before load (here: SSH and telnet).

Run:  python examples/xdp_firewall.py
Rebuild the object (needs clang and libbpf-dev):  examples/bpf/build.sh
"""

from __future__ import annotations

from pathlib import Path

import ebpfvm
from _packets import addr_text, ethernet, ipv4, tcp, udp

HERE = Path(__file__).resolve().parent
SLOTS = ["other", "vlan", "ipv4", "ipv6", "tcp", "udp", "malformed", "blocked"]

obj = ebpfvm.Object.open(str(HERE / "bpf" / "xdp_parser.o"))
prog = obj.programs["xdp_parser"]
print(f"loaded {prog.name!r} from section {prog.section!r} ({prog.prog_type})")
print(f"maps: {', '.join(sorted(obj.maps))}")

# const volatile __u16 blocked_ports[4]: set before load, frozen after.
obj.rodata.blocked_ports = [22, 23, 0, 0]
exe = prog.load(engine="auto")

packets = {
    "web request": ethernet(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80))),
    "dns query": ethernet(0x0800, ipv4("10.0.0.1", "10.0.0.53", 17, udp(5353, 53, b"q" * 20))),
    "ssh attempt": ethernet(0x0800, ipv4("203.0.113.9", "10.0.0.2", 6, tcp(50000, 22))),
    "telnet on vlan 7": ethernet(
        0x0800, ipv4("203.0.113.9", "10.0.0.2", 6, tcp(50001, 23)), vlan=7
    ),
    "runt frame": b"\x00" * 9,
}
for label, packet in packets.items():
    result = exe.run(packet, ctx={"ingress_ifindex": 2})
    print(f"{label:>18}: {result.action.name}")

print("\npackets per protocol:")
counts = obj.maps["proto_count"]
for slot, name in enumerate(SLOTS):
    if counts[slot]:
        print(f"  {name:<10} {counts[slot]}")

print("\ntraffic per IPv4 source:")
for key, value in sorted(obj.maps["src_bytes"].items()):
    print(f"  {addr_text(key):<15} {value.packets} packets, {value.bytes} bytes")

print("\nwhat bpf_printk said:")
for line in ebpfvm.read_trace():
    print(" ", line.rstrip())
