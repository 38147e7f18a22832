"""Maps of maps: ``array_of_maps`` and ``hash_of_maps``. Values are maps
(views); stored as their ids, as the kernel's user view does::

    inner = maps.HashMap("u32", "u64", 16)
    outer = maps.ArrayOfMaps(inner, 4)     # inner: the template every value must match
    outer[0] = inner
    outer[0][1] = 5                        # the same map, with its types
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

from ebpfvm._core import Map as CoreMap
from ebpfvm.maps._base import KeyValueMap, Map, register_view

__all__ = ["ArrayOfMaps", "HashOfMaps"]

_ID = struct.Struct("<I")


class _MapOfMaps(KeyValueMap):
    """Values are maps: written as views (or core maps or ids), read as
    views (the one stored, when still alive)."""

    def _value_encoder(self) -> Any:
        name = self.name

        def encode(value: Any) -> bytes:
            if isinstance(value, Map):
                return _ID.pack(value.id)
            if isinstance(value, CoreMap):
                return _ID.pack(value.id)
            if isinstance(value, int) and not isinstance(value, bool):
                if not 0 <= value < 2**32:
                    raise self._error(f"map id {value} is out of range")
                return _ID.pack(value)
            raise TypeError(
                f"map '{name}': values are maps (a map view or its id), not {type(value).__name__}"
            )

        return encode

    def _value_fast_paths(self) -> tuple[Any, Any]:
        return self._venc, None

    def _value_decoder(self) -> Any:
        def decode(data: bytes) -> Map | None:
            return Map.by_id(_ID.unpack(data)[0])

        return decode

    def _encode_values(self, values: Sequence[Any]) -> bytes:
        return b"".join(self._venc(v) for v in values)

    def _decode_values(self, data: bytes, count: int) -> list[Any]:
        return [self._vdec(data[i * 4 : i * 4 + 4]) for i in range(count)]

    def _create_outer(
        self,
        key_type: Any,
        inner_map: Map | CoreMap,
        max_entries: int | None,
        name: str,
        flags: int,
    ) -> None:
        if not isinstance(inner_map, (Map, CoreMap)):
            raise TypeError(
                f"map '{name}': inner_map must be a map (the template inner maps must match), "
                f"not {type(inner_map).__name__}"
            )
        self._create(
            self.MAP_TYPES[0],
            key_type,
            "u32",
            max_entries,
            name=name,
            flags=flags,
            inner_map=inner_map,
        )

    @property
    def inner_def(self) -> dict[str, Any] | None:
        """The definition every inner map must match."""
        return self._core.inner_def


@register_view
class ArrayOfMaps(_MapOfMaps):
    """An array of maps; iteration covers the filled slots."""

    MAP_TYPES = ("array_of_maps",)

    def __init__(
        self,
        inner_map: Map | CoreMap,
        max_entries: int | None = None,
        *,
        name: str = "",
        flags: int = 0,
    ) -> None:
        self._create_outer("u32", inner_map, max_entries, name, flags)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def keys(self) -> list[Any]:  # type: ignore[override]
        return [k for k, _ in self.items()]


@register_view
class HashOfMaps(_MapOfMaps):
    """A hash map whose values are maps."""

    MAP_TYPES = ("hash_of_maps",)

    def __init__(
        self,
        key_type: Any,
        inner_map: Map | CoreMap,
        max_entries: int | None = None,
        *,
        name: str = "",
        flags: int = 0,
    ) -> None:
        self._create_outer(key_type, inner_map, max_entries, name, flags)
