"""Tiny packet builders shared by the example scripts (Ethernet, IPv4, TCP,
UDP) so that they run with nothing but the standard library."""

from __future__ import annotations

import socket
import struct


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(ethertype: int, payload: bytes, *, vlan: int | None = None) -> bytes:
    header = bytes.fromhex("020000000002") + bytes.fromhex("020000000001")
    if vlan is not None:
        header += struct.pack("!HH", 0x8100, vlan)
    return header + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0,
        ttl,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def tcp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def addr_key(text: str) -> int:
    """An IPv4 address as the __u32 a program reads from a packet."""
    return int.from_bytes(socket.inet_aton(text), "little")


def addr_text(key: int) -> str:
    return socket.inet_ntoa(key.to_bytes(4, "little"))
