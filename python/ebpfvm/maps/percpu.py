"""Per-CPU maps: ``percpu_array``, ``percpu_hash``, ``lru_percpu_hash``.

A value is one slot per virtual CPU: reading gives a list with one value per
CPU; writing takes such a list, or one value stored in every CPU's slot.
``sum``, ``max``, ``min`` and ``average`` reduce a key's slots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ebpfvm.maps._base import KeyValueMap, register_view
from ebpfvm.maps.array import _ArrayLike

__all__ = ["LruPerCpuHashMap", "PerCpuArrayMap", "PerCpuHashMap"]


class _PerCpu(KeyValueMap):
    """Values as lists of per-CPU values."""

    def _slots(self) -> tuple[int, int]:
        """(number of CPUs, bytes per slot), as the map's values are laid out."""
        stride = (self.value_size + 7) // 8 * 8
        return self._core.user_value_size // stride, stride

    def _value_encoder(self) -> Any:
        assert self.value_codec is not None
        encode = self.value_codec.encode
        ncpus, stride = self._slots()
        pad = bytes(stride - self.value_size)
        name = self.name

        def encode_percpu(value: Any) -> bytes:
            if isinstance(value, list):
                if len(value) != ncpus:
                    raise self._error(
                        f"per-CPU value needs {ncpus} values (one per CPU), got {len(value)}"
                    )
                return b"".join([encode(v) + pad for v in value])
            return (encode(value) + pad) * ncpus

        encode_percpu.__qualname__ = f"encode_percpu[{name}]"
        return encode_percpu

    def _value_fast_paths(self) -> tuple[Any, Any]:
        return self._venc, None

    def _value_decoder(self) -> Any:
        assert self.value_codec is not None
        decode_many = self.value_codec.decode_many
        ncpus, stride = self._slots()
        return lambda data: decode_many(data, ncpus, stride)

    def _encode_values(self, values: Sequence[Any]) -> bytes:
        encode = self._venc
        return b"".join([encode(v) for v in values])

    def _decode_values(self, data: bytes, count: int) -> list[Any]:
        assert self.value_codec is not None
        ncpus, stride = self._slots()
        flat = self.value_codec.decode_many(data, count * ncpus, stride)
        return [flat[i * ncpus : (i + 1) * ncpus] for i in range(count)]

    def sum(self, key: Any) -> Any:
        """The sum of ``key``'s per-CPU values."""
        return sum(self[key])

    def max(self, key: Any) -> Any:
        """The largest of ``key``'s per-CPU values."""
        return max(self[key])

    def min(self, key: Any) -> Any:
        """The smallest of ``key``'s per-CPU values."""
        return min(self[key])

    def average(self, key: Any) -> float:
        """The mean of ``key``'s per-CPU values."""
        values = self[key]
        return sum(values) / len(values)


@register_view
class PerCpuArrayMap(_PerCpu, _ArrayLike):
    """A per-CPU array: ``PerCpuArrayMap("u32", "u64", 4)``."""

    MAP_TYPES = ("percpu_array",)

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
        self._create_array(
            self.MAP_TYPES[0], key_type, value_type, max_entries, key_size, value_size, name,
            flags, pin,
        )  # fmt: skip


@register_view
class PerCpuHashMap(_PerCpu):
    """A per-CPU hash map: ``PerCpuHashMap("u32", "u64", 1024)``."""

    MAP_TYPES = ("percpu_hash",)

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
class LruPerCpuHashMap(PerCpuHashMap):
    """A per-CPU hash map evicting its least recently used entry when full."""

    MAP_TYPES = ("lru_percpu_hash",)
