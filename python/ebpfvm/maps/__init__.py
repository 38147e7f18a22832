"""Maps: key/value stores in Rust shared by programs and Python, with
Pythonic views.

Create maps directly::

    from ebpfvm import maps
    counts = maps.HashMap("u32", "u64", max_entries=1024, name="counts")
    counts[1] = 10
    arr = maps.ArrayMap("u32", "u64", 256)
    arr.as_numpy()[:] = 7          # zero-copy: programs see it

or get the views of an object's maps from ``obj.maps`` (types from BTF).
``pin="/path"`` keeps a map in a file that other processes (or the next
run) open and share.
"""

from __future__ import annotations

import os
from typing import Any

from ebpfvm import _core
from ebpfvm._core import Map as CoreMap
from ebpfvm.maps._base import (
    _VIEW_CLASSES,
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    KeyValueMap,
    Map,
)
from ebpfvm.maps._codec import Codec, Struct, make_codec
from ebpfvm.maps.array import ArrayMap
from ebpfvm.maps.hash import HashMap, LruHashMap
from ebpfvm.maps.hist import print_linear_hist, print_log2_hist
from ebpfvm.maps.lpm import LpmKey, LpmTrieMap
from ebpfvm.maps.of_maps import ArrayOfMaps, HashOfMaps
from ebpfvm.maps.percpu import LruPerCpuHashMap, PerCpuArrayMap, PerCpuHashMap
from ebpfvm.maps.perf import PerfEventArray
from ebpfvm.maps.prog_array import ProgArray
from ebpfvm.maps.queue import BloomFilterMap, QueueMap, StackMap
from ebpfvm.maps.ringbuf import RingBuffer

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "BPF_NOEXIST",
    "ArrayMap",
    "ArrayOfMaps",
    "BloomFilterMap",
    "Codec",
    "HashMap",
    "HashOfMaps",
    "KeyValueMap",
    "LpmKey",
    "LpmTrieMap",
    "LruHashMap",
    "LruPerCpuHashMap",
    "Map",
    "PerCpuArrayMap",
    "PerCpuHashMap",
    "PerfEventArray",
    "ProgArray",
    "QueueMap",
    "RingBuffer",
    "StackMap",
    "Struct",
    "create",
    "make_codec",
    "num_cpus",
    "print_linear_hist",
    "print_log2_hist",
    "set_num_cpus",
    "view",
]


def create(
    map_type: str | int,
    key_size: int | None = None,
    value_size: int | None = None,
    max_entries: int | None = None,
    *,
    key_type: Any = None,
    value_type: Any = None,
    name: str = "",
    flags: int = 0,
    map_extra: int = 0,
    inner_map: Map | CoreMap | None = None,
    pin: str | os.PathLike[str] | None = None,
) -> Map:
    """Creates a map of any type by name (``"hash"``, ``"lru_percpu_hash"``,
    ...) or kernel number, as ``bpf_map_create`` does, and returns its view
    (raw bytes keys and values unless ``key_type``/``value_type`` say)."""
    core = CoreMap(
        map_type,
        0 if key_size is None else key_size,
        0 if value_size is None else value_size,
        0 if max_entries is None else max_entries,
        flags=flags,
        name=name,
        map_extra=map_extra,
        inner=inner_map.core if isinstance(inner_map, Map) else inner_map,
        pin=None if pin is None else os.fspath(pin),
    )
    return Map.from_core(core, key_type, value_type)


def view(core: CoreMap, key_type: Any = None, value_type: Any = None) -> Map:
    """The typed view of an existing map (see :meth:`Map.from_core`)."""
    return Map.from_core(core, key_type, value_type)


def set_num_cpus(n: int) -> None:
    """Sets the number of virtual CPUs of per-CPU maps created afterwards."""
    _core.set_num_cpus(n)


def num_cpus() -> int:
    """The number of virtual CPUs new per-CPU maps get."""
    return _core.num_cpus()


assert _VIEW_CLASSES  # views register themselves on import
