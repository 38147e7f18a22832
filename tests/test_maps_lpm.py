"""LPM trie maps: longest-prefix match with IP-friendly keys."""

from __future__ import annotations

import ipaddress

import ebpfvm
import pytest
from ebpfvm import maps


def test_longest_prefix_wins() -> None:
    routes = maps.LpmTrieMap("ipv4", "u32", 16, name="routes")
    assert routes.map_type == "lpm_trie" and routes.key_size == 8
    routes["10.0.0.0/8"] = 1
    routes["10.1.0.0/16"] = 2
    routes[ipaddress.ip_network("10.1.2.0/24")] = 3
    routes["0.0.0.0/0"] = 9
    assert routes["10.1.2.3"] == 3
    assert routes["10.1.9.9"] == 2
    assert routes["10.200.0.1"] == 1
    assert routes[ipaddress.ip_address("192.168.1.1")] == 9
    assert sorted(str(k) for k in routes) == sorted(
        ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "0.0.0.0/0"]
    )
    del routes["10.1.0.0/16"]
    assert routes["10.1.9.9"] == 1
    with pytest.raises(KeyError):
        del routes["10.1.0.0/16"]


def test_no_match_is_a_key_error() -> None:
    r = maps.LpmTrieMap("ipv4", "u32", 4)
    r["192.168.0.0/16"] = 1
    with pytest.raises(KeyError):
        r["10.0.0.1"]
    assert "10.0.0.1" not in r and "192.168.3.4" in r


def test_ipv6_and_raw_keys() -> None:
    r6 = maps.LpmTrieMap("ipv6", "u8", 4)
    r6["2001:db8::/32"] = 6
    assert r6["2001:db8::1"] == 6
    raw = maps.LpmTrieMap(None, "u8", 4, data_size=2, name="raw")
    raw[(8, b"\xab\x00")] = 1
    assert raw[(16, b"\xab\xcd")] == 1
    assert list(raw) == [maps.LpmKey(8, b"\xab\x00")]
    with pytest.raises(ebpfvm.MapError, match="prefix length 17"):
        raw[(17, b"\0\0")] = 1
    with pytest.raises(ebpfvm.MapError, match="data must be 2 bytes"):
        raw[(8, b"\0")] = 1
    with pytest.raises(ebpfvm.MapError, match="not an IP address"):
        maps.LpmTrieMap("ipv4", "u8", 4)["nope"] = 1
