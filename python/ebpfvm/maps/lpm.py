"""LPM trie maps: longest-prefix match, as routers use.

Keys are ``struct { __u32 prefixlen; __u8 data[N]; }``. A view accepts, as
a key, ``(prefixlen, data)`` tuples, :mod:`ipaddress` networks and
addresses, and strings such as ``"10.0.0.0/8"`` or ``"10.1.2.3"`` (a full
length prefix). Looking up a key gives the value of the longest stored
prefix that contains it; ``del`` removes an exact prefix.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from typing import Any, NamedTuple

from ebpfvm.maps._base import KeyValueMap, register_view
from ebpfvm.maps._codec import Codec, RawCodec, make_codec

__all__ = ["LpmKey", "LpmTrieMap"]

BPF_F_NO_PREALLOC = 1

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


class LpmKey(NamedTuple):
    """An LPM trie key: a prefix length in bits and the data bytes."""

    prefixlen: int
    data: bytes


class LpmKeyCodec(Codec):
    """LPM keys from tuples, networks, addresses and strings.

    Decoding gives :mod:`ipaddress` networks when ``ip`` is set, the
    decoding of ``inner`` when the key has a declared type (from BTF), else
    :class:`LpmKey` tuples.
    """

    def __init__(self, data_size: int, ip: bool, inner: Codec | None) -> None:
        super().__init__()
        self.data_size = data_size
        self.size = 4 + data_size
        self.ip = ip
        self.inner = inner
        self.description = (
            f"ipv{4 if data_size == 4 else 6} prefix" if ip else f"lpm_key[{data_size}]"
        )

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, str):
            try:
                obj = ipaddress.ip_network(obj, strict=False)
            except ValueError:
                raise self.error(f"{obj!r} is not an IP address or network") from None
        if isinstance(obj, _Addr):
            obj = ipaddress.ip_network(obj)
        if isinstance(obj, _Net):
            data = obj.network_address.packed
            plen = obj.prefixlen
        elif isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], (bytes, bytearray)):
            plen, data = obj
            data = bytes(data)
        elif self.inner is not None:
            return self.inner.encode(obj)
        else:
            raise TypeError(
                f"map '{self.map_name}': LPM key must be (prefixlen, data), an IP network or "
                f"address, or a string such as '10.0.0.0/8', not {type(obj).__name__}"
            )
        if len(data) != self.data_size:
            raise self.error(f"data must be {self.data_size} bytes, got {len(data)}")
        if not isinstance(plen, int) or not 0 <= plen <= self.data_size * 8:
            raise self.error(f"prefix length {plen!r} is not in 0..{self.data_size * 8}")
        return struct.pack("<I", plen) + data

    def decode(self, data: bytes) -> Any:
        if self.inner is not None:
            return self.inner.decode(data)
        plen = struct.unpack_from("<I", data)[0]
        raw = bytes(data[4:])
        if self.ip:
            return ipaddress.ip_network((raw, min(plen, len(raw) * 8)))
        return LpmKey(plen, raw)


@register_view
class LpmTrieMap(KeyValueMap):
    """An LPM trie: ``LpmTrieMap("ipv4", "u32", 1024)``.

    ``key_type`` is ``"ipv4"`` or ``"ipv6"`` (keys decode to
    ``ipaddress`` networks), None with ``data_size`` (keys decode to
    :class:`LpmKey`), or the full key's type (such as a BTF struct).
    """

    MAP_TYPES = ("lpm_trie",)

    def __init__(
        self,
        key_type: Any = None,
        value_type: Any = None,
        max_entries: int | None = None,
        *,
        data_size: int | None = None,
        value_size: int | None = None,
        name: str = "",
        flags: int = BPF_F_NO_PREALLOC,
        pin: str | os.PathLike[str] | None = None,
    ) -> None:
        if key_type in ("ipv4", "ipv6"):
            codec = LpmKeyCodec(4 if key_type == "ipv4" else 16, True, None)
        elif key_type is None:
            if data_size is None:
                raise TypeError(f"map '{name}': give key_type ('ipv4', 'ipv6') or data_size")
            codec = LpmKeyCodec(data_size, False, None)
        else:
            inner = make_codec(key_type, None, "key", name)
            codec = LpmKeyCodec(inner.size - 4, False, inner)
        self._create(
            self.MAP_TYPES[0],
            codec,
            value_type,
            max_entries,
            value_size=value_size,
            name=name,
            flags=flags,
            pin=pin,
        )

    def _attach(self, core: Any, key_codec: Any, value_codec: Any) -> None:
        if not isinstance(key_codec, LpmKeyCodec):
            inner = None if isinstance(key_codec, RawCodec) else key_codec
            key_codec = LpmKeyCodec(core.key_size - 4, False, inner).bind(core.name, "key")
        super()._attach(core, key_codec, value_codec)
