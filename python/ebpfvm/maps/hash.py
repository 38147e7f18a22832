"""Hash maps: ``hash`` and ``lru_hash`` (which evicts the least recently used
entry instead of failing when full)."""

from __future__ import annotations

import os
from typing import Any

from ebpfvm.maps._base import KeyValueMap, register_view

__all__ = ["HashMap", "LruHashMap"]


@register_view
class HashMap(KeyValueMap):
    """A hash map: ``HashMap("u32", "u64", max_entries=1024, name="counts")``.

    Inserting a new key into a full map raises :class:`ebpfvm.MapError`
    (``errno`` E2BIG), as in the kernel.
    """

    MAP_TYPES = ("hash",)

    def __init__(
        self,
        key_type: Any = None,
        value_type: Any = None,
        max_entries: int | None = None,
        *,
        key_size: int | None = None,
        value_size: int | None = None,
        name: str = "",
        flags: int = 0,
        pin: str | os.PathLike[str] | None = None,
    ) -> None:
        self._create(
            self.MAP_TYPES[0],
            key_type,
            value_type,
            max_entries,
            key_size=key_size,
            value_size=value_size,
            name=name,
            flags=flags,
            pin=pin,
        )


@register_view
class LruHashMap(HashMap):
    """A hash map that evicts its least recently used entry when full."""

    MAP_TYPES = ("lru_hash",)
