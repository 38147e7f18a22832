"""Packet builders for the tests of compiled C programs (test_elf_*.py,
test_verifier_c.py): Ethernet, VLAN, IPv4, IPv6, TCP, UDP and ICMP headers
packed with ``struct``, with real IPv4 header checksums, so that a program
compiled for the kernel sees what a NIC would hand it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

ETH_HLEN = 14
IPV4_HLEN = 20

SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_addr(text: str) -> bytes:
    return socket.inet_aton(text)


def ipv4_key(text: str) -> int:
    """An IPv4 address as the __u32 a program reads from a packet (network
    byte order in memory, so the little-endian value of those bytes)."""
    return int.from_bytes(socket.inet_aton(text), "little")


def ethernet(
    ethertype: int,
    payload: bytes,
    *,
    dst: bytes = DST_MAC,
    src: bytes = SRC_MAC,
    vlans: Iterable[tuple[int, int]] = (),
) -> bytes:
    """An Ethernet frame; ``vlans`` lists (TPID, VLAN id) tags, outermost first."""
    tags = list(vlans)
    # Each tag's TPID stands where the EtherType would; the tag itself is the
    # TCI followed by the next TPID (or, for the last tag, the EtherType).
    types = [tpid for tpid, _ in tags] + [ethertype]
    header = dst + src + struct.pack("!H", types[0])
    for i, (_, vid) in enumerate(tags):
        header += struct.pack("!HH", vid & 0x0FFF, types[i + 1])
    return header + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ihl: int = 5,
    frag_offset: int = 0,
    ident: int = 0x1234,
    tos: int = 0,
) -> bytes:
    """An IPv4 packet with a correct header checksum; header words beyond the
    first 20 bytes (``ihl`` > 5) are NOP options."""
    options = b"\x01" * (max(ihl, 5) * 4 - IPV4_HLEN)
    total_len = max(ihl, 5) * 4 + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (4 << 4) | (ihl & 0xF),
        tos,
        total_len,
        ident,
        frag_offset & 0x1FFF,
        ttl,
        proto,
        0,
        ipv4_addr(src),
        ipv4_addr(dst),
    )
    header += options
    csum = checksum(header)
    header = header[:10] + struct.pack("!H", csum) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes, *, hop_limit: int = 64) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + payload
    )


def tcp(sport: int, dport: int, payload: bytes = b"", *, flags: int = 0x02) -> bytes:
    """A TCP segment (checksum left zero: the programs under test do not check it)."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(ident: int = 1, seq: int = 1, payload: bytes = b"ping") -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def ipv4_header_valid(packet: bytes, offset: int = ETH_HLEN) -> bool:
    """Whether the IPv4 header at ``offset`` has a correct checksum."""
    ihl = (packet[offset] & 0x0F) * 4
    return checksum(packet[offset : offset + ihl]) == 0
