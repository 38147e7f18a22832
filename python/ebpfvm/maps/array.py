"""Array maps: ``array`` (and the views shared with per-CPU arrays).

Every index below ``max_entries`` always exists: ``len()`` is
``max_entries``, ``del arr[i]`` and ``clear()`` set values to zero (as bcc
does; the kernel cannot delete array elements), and an index out of range
is a ``KeyError``.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ebpfvm._core import MapError
from ebpfvm.maps._base import KeyValueMap, register_view

__all__ = ["ArrayMap"]


class _ArrayLike(KeyValueMap):
    """Deleting zeroes: array elements cannot be removed."""

    def __delitem__(self, key: Any) -> None:
        try:
            self._update(self._kenc(key), bytes(self._core.user_value_size), 0)
        except MapError as e:
            if getattr(e, "errno", None) in (errno.E2BIG, errno.ENOENT, errno.EINVAL):
                raise KeyError(key) from None
            raise

    def pop(self, key: Any, *default: Any) -> Any:
        """The value of ``key``, then set to zero."""
        v = self.get(key, *default) if default else self[key]
        if key in self:
            del self[key]
        return v

    def clear(self) -> None:
        """Sets every value to zero."""
        keys = self._core.keys()
        n = len(keys) // self.key_size
        self._core.update_batch(keys, bytes(n * self._core.user_value_size), 0)

    def _create_array(
        self,
        map_type: str,
        key_type: Any,
        value_type: Any,
        max_entries: int | None,
        key_size: int | None,
        value_size: int | None,
        name: str,
        flags: int,
        pin: str | os.PathLike[str] | None,
    ) -> None:
        if key_type is None and key_size is None:
            key_type = "u32"
        self._create(
            map_type,
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
class ArrayMap(_ArrayLike):
    """An array map: ``ArrayMap("u32", "u64", 256)``; keys are indexes
    (``u32`` unless said otherwise). :meth:`as_numpy` gives a zero-copy view
    of all values."""

    MAP_TYPES = ("array",)

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

    def as_numpy(self) -> Any:
        """The values as a NumPy array sharing the map's memory: writes to
        it are seen by programs and the other way round. The dtype follows
        the value type (``u64`` gives ``uint64``, a ctypes structure or BTF
        struct gives a structured dtype); raw values give a 2-D ``uint8``
        array with one row per element. The array keeps the map alive."""
        import numpy as np

        assert self.value_codec is not None
        memory = self._core.value_memory()
        n = self.max_entries
        stride = len(memory) // n if n else 0
        if stride < self.value_size or len(memory) != n * stride:
            raise self._error(
                f"value storage of {len(memory)} bytes does not hold {n} values of "
                f"{self.value_size} bytes"
            )
        dtype = self.value_codec.numpy_dtype()
        if dtype is None or dtype.itemsize != self.value_size:
            dtype = np.dtype((np.uint8, (self.value_size,)))
        return np.ndarray(shape=(n,), dtype=dtype, buffer=memoryview(memory), strides=(stride,))
