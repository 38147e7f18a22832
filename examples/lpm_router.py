"""An IPv4 router's fast path: an XDP program compiled from C looks up each
packet's destination in an LPM-trie route table filled from Python, and
forwards it (MACs rewritten, TTL decremented, checksum updated, XDP_TX).

Run:  python examples/lpm_router.py
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import ebpfvm
from _packets import addr_key, addr_text, ethernet, ipv4, udp

HERE = Path(__file__).resolve().parent

ROUTES = {  # prefix: (gateway, ifindex, gateway MAC)
    "0.0.0.0/0": ("192.0.2.1", 1, "02aa00000001"),
    "10.0.0.0/8": ("192.0.2.8", 2, "02aa00000008"),
    "10.1.0.0/16": ("192.0.2.16", 3, "02aa00000016"),
    "10.1.2.0/24": ("192.0.2.24", 4, "02aa00000024"),
}

obj = ebpfvm.Object.open(str(HERE / "bpf" / "lpm_router.o"))
routes = obj.maps["routes"]
for prefix, (gateway, ifindex, mac) in ROUTES.items():
    net = ipaddress.ip_network(prefix)
    key = {"prefixlen": net.prefixlen, "addr": addr_key(str(net.network_address))}
    routes[key] = {"next_hop": addr_key(gateway), "ifindex": ifindex, "dmac": bytes.fromhex(mac)}
print(f"{len(routes)} routes installed")

exe = obj.programs["lpm_router"].load(engine="auto")
for dst in ("10.1.2.3", "10.1.9.9", "10.7.7.7", "8.8.8.8"):
    packet = ethernet(0x0800, ipv4("198.51.100.7", dst, 17, udp(1234, 53)))
    result = exe.run(packet)
    out = result.data
    print(
        f"to {dst:<10} -> {result.action.name}, dst MAC {out[0:6].hex(':')}, "
        f"TTL {packet[22]} -> {out[22]}"
    )

print("\npackets per next hop:")
for hop, count in sorted(obj.maps["hop_packets"].items()):
    print(f"  {addr_text(hop):<12} {count}")
