"""Queue, stack and bloom filter maps: values without keys."""

from __future__ import annotations

import os
from typing import Any

from ebpfvm.maps._base import BPF_ANY, Map, register_view

__all__ = ["BloomFilterMap", "QueueMap", "StackMap"]


class _KeylessMap(Map):
    """A map of values only (``key_size`` 0)."""

    def _attach(self, core: Any, key_codec: Any, value_codec: Any) -> None:
        super()._attach(core, None, value_codec)
        if value_codec is None:
            raise self._error(f"a {core.map_type} map needs values")
        self._venc = value_codec.encode
        self._vdec = value_codec.decode

    def _create_keyless(
        self,
        value_type: Any,
        max_entries: int | None,
        value_size: int | None,
        name: str,
        flags: int,
        map_extra: int,
        pin: str | os.PathLike[str] | None,
    ) -> None:
        if value_type is None and value_size is None:
            raise TypeError(f"map '{name}': give a value_type or a value_size")
        self._create(
            self.MAP_TYPES[0],
            None,
            value_type,
            max_entries,
            key_size=0,
            value_size=value_size,
            name=name,
            flags=flags,
            map_extra=map_extra,
            pin=pin,
        )


@register_view
class QueueMap(_KeylessMap):
    """A FIFO queue: ``push(v)``, ``pop()``, ``peek()``; ``len(q)``.

    Pushing onto a full queue raises :class:`ebpfvm.MapError` unless
    ``flags=BPF_EXIST``, which drops the oldest element to make room.
    ``pop()`` and ``peek()`` on an empty queue raise ``KeyError("empty")``.
    """

    MAP_TYPES = ("queue",)

    def __init__(
        self,
        value_type: Any = None,
        max_entries: int | None = None,
        *,
        value_size: int | None = None,
        name: str = "",
        flags: int = 0,
        pin: str | os.PathLike[str] | None = None,
    ) -> None:
        self._create_keyless(value_type, max_entries, value_size, name, flags, 0, pin)

    def push(self, value: Any, flags: int = BPF_ANY) -> None:
        self._core.push(self._venc(value), flags)

    def pop(self) -> Any:
        v = self._core.pop()
        if v is None:
            raise KeyError("empty")
        return self._vdec(v)

    def peek(self) -> Any:
        v = self._core.peek()
        if v is None:
            raise KeyError("empty")
        return self._vdec(v)

    def __bool__(self) -> bool:
        return len(self) > 0


@register_view
class StackMap(QueueMap):
    """A LIFO stack: ``push(v)``, ``pop()``, ``peek()`` (last in, first out)."""

    MAP_TYPES = ("stack",)


@register_view
class BloomFilterMap(_KeylessMap):
    """A bloom filter: ``bf.add(v)`` (or ``push``), ``v in bf`` (False means
    certainly absent; True means probably present). ``nr_hashes`` is the
    number of hash functions (libbpf's ``map_extra``; the kernel's default
    is 5 when 0)."""

    MAP_TYPES = ("bloom_filter",)

    def __init__(
        self,
        value_type: Any = None,
        max_entries: int | None = None,
        *,
        nr_hashes: int = 0,
        value_size: int | None = None,
        name: str = "",
        flags: int = 0,
        pin: str | os.PathLike[str] | None = None,
    ) -> None:
        self._create_keyless(value_type, max_entries, value_size, name, flags, nr_hashes, pin)

    def push(self, value: Any, flags: int = BPF_ANY) -> None:
        self._core.push(self._venc(value), flags)

    add = push

    def __contains__(self, value: object) -> bool:
        return self._core.contains_value(self._venc(value))
