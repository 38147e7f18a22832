"""The map view base classes: typed Python views over ``ebpfvm._core.Map``.

:class:`Map` is what every view shares (definition, pinning, the core map
programs use); :class:`KeyValueMap` adds the dict interface hash-like and
array-like maps have. Views of one map are cheap: the map itself lives in
Rust and is shared with the programs that use it.
"""

from __future__ import annotations

import errno
import os
import struct
import weakref
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, TypeVar

from ebpfvm._core import IntMapView, MapError
from ebpfvm._core import Map as CoreMap
from ebpfvm.maps._codec import Codec, IntCodec, check_iterable, make_codec, map_error

__all__ = ["BPF_ANY", "BPF_EXIST", "BPF_F_LOCK", "BPF_NOEXIST", "KeyValueMap", "Map"]

#: Update flags, as in the kernel.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

_missing: Any = object()

# map type name -> view class, filled by the modules defining the views.
_VIEW_CLASSES: dict[str, type[Map]] = {}
# map id -> the view handed out for it, so that maps of maps give back the
# view (with its key and value types) that was stored in them.
_VIEWS: weakref.WeakValueDictionary[int, Map] = weakref.WeakValueDictionary()

M = TypeVar("M", bound="Map")


def register_view(cls: type[M]) -> type[M]:
    """Class decorator: ``cls`` views maps of the types in ``cls.MAP_TYPES``."""
    for t in cls.MAP_TYPES:
        _VIEW_CLASSES[t] = cls
    return cls


class Map:
    """A map: storage in Rust shared with programs, viewed with Python types.

    Create one with a subclass (:class:`~ebpfvm.maps.HashMap`, ...), with
    :func:`ebpfvm.maps.create`, or get the views of an object's maps from
    ``obj.maps``. Every view has the map's definition as attributes
    (``map_type``, ``key_size``, ``value_size``, ``max_entries``, ``flags``,
    ``name``, ``id``, ``pin_path``) and ``core``, the ``ebpfvm.CoreMap``
    that programs are given.
    """

    #: libbpf names of the map types this class views.
    MAP_TYPES: ClassVar[tuple[str, ...]] = ()

    _core: CoreMap
    key_codec: Codec | None
    value_codec: Codec | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "create maps with a map class (HashMap, ArrayMap, ...) or with "
            "ebpfvm.maps.create(map_type, key_size, value_size, max_entries, ...)"
        )

    def _create(
        self,
        map_type: str | int,
        key_type: Any,
        value_type: Any,
        max_entries: int | None,
        *,
        key_size: int | None = None,
        value_size: int | None = None,
        name: str = "",
        flags: int = 0,
        map_extra: int = 0,
        inner_map: Map | CoreMap | None = None,
        pin: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_entries is None:
            raise TypeError(f"map '{name}': max_entries is required")
        kc = None if key_size == 0 else make_codec(key_type, key_size, "key", name)
        vc = None if value_size == 0 else make_codec(value_type, value_size, "value", name)
        inner = inner_map.core if isinstance(inner_map, Map) else inner_map
        core = CoreMap(
            map_type,
            0 if kc is None else kc.size,
            0 if vc is None else vc.size,
            max_entries,
            flags=flags,
            name=name,
            map_extra=map_extra,
            inner=inner,
            pin=None if pin is None else os.fspath(pin),
        )
        self._attach(core, kc, vc)

    def _attach(self, core: CoreMap, key_codec: Codec | None, value_codec: Codec | None) -> None:
        """Makes this view show ``core`` with the given codecs."""
        self._core = core
        self.key_codec = key_codec
        self.value_codec = value_codec
        if _VIEWS.get(core.id) is None:  # the first typed view is the one by_id gives
            _VIEWS[core.id] = self

    @classmethod
    def from_core(cls, core: CoreMap, key_type: Any = None, value_type: Any = None) -> Map:
        """The view of the right class for ``core``, with keys and values of
        ``key_type``/``value_type`` (raw bytes when None). Used for maps from
        object files, where the types come from BTF."""
        view_cls: type[Map] = _VIEW_CLASSES.get(core.map_type, KeyValueMap)
        view = view_cls.__new__(view_cls)
        name = core.name
        kc = None if core.key_size == 0 else make_codec(key_type, core.key_size, "key", name)
        vc = (
            None if core.value_size == 0 else make_codec(value_type, core.value_size, "value", name)
        )
        view._attach(core, kc, vc)
        return view

    @classmethod
    def by_id(cls, map_id: int) -> Map | None:
        """The view of the live map with global id ``map_id`` (the view
        already handed out for it, if any), or None."""
        view = _VIEWS.get(map_id)
        if view is not None:
            return view
        core = CoreMap.by_id(map_id)
        return None if core is None else Map.from_core(core)

    @classmethod
    def pinned(cls, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Map:
        """Opens the map pinned at ``path``.

        With only ``path`` (and optionally ``key_type``/``value_type``/
        ``name`` keywords), the definition is read from the pinned file and
        the file must exist. Otherwise the file is created when it does not
        exist yet, and its definition must match: on a view class the
        arguments are the class's own (``HashMap.pinned(path, "u32", "u64",
        1024)``), on :class:`Map` those of :func:`ebpfvm.maps.create`
        (``Map.pinned(path, "hash", 4, 8, 1024, key_type="u32")``).
        """
        from ebpfvm.maps import create

        if not args and set(kwargs) <= {"key_type", "value_type", "name"}:
            map_type, key_size, value_size, max_entries, flags = _pinned_definition(path)
            kwargs.setdefault("name", os.path.basename(os.fspath(path)).split(".")[0][:15])
            view = create(
                map_type, key_size, value_size, max_entries, flags=flags, pin=path, **kwargs
            )
            if cls.MAP_TYPES and not isinstance(view, cls):
                raise map_error(
                    view.name,
                    f"{os.fspath(path)} holds a '{view.map_type}' map, not '{cls.MAP_TYPES[0]}'",
                )
            return view
        if cls.MAP_TYPES:
            return cls(*args, pin=path, **kwargs)
        return create(*args, pin=path, **kwargs)

    # --- the definition --------------------------------------------------

    @property
    def core(self) -> CoreMap:
        """The map itself (what the loader binds to programs)."""
        return self._core

    @property
    def map_type(self) -> str:
        return self._core.map_type

    @property
    def key_size(self) -> int:
        return self._core.key_size

    @property
    def value_size(self) -> int:
        return self._core.value_size

    @property
    def max_entries(self) -> int:
        return self._core.max_entries

    @property
    def flags(self) -> int:
        return self._core.flags

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def id(self) -> int:
        return self._core.id

    @property
    def num_cpus(self) -> int:
        return self._core.num_cpus

    @property
    def pin_path(self) -> str | None:
        p = self._core.pin_path
        return None if p is None else os.fspath(p)

    @property
    def key_type(self) -> str | None:
        return None if self.key_codec is None else self.key_codec.description

    @property
    def value_type(self) -> str | None:
        return None if self.value_codec is None else self.value_codec.description

    def _error(self, message: str, code: int = errno.EINVAL) -> MapError:
        return map_error(self.name, message, code)

    def __len__(self) -> int:
        return len(self._core)

    def __repr__(self) -> str:
        types = ""
        if self.key_codec is not None and self.value_codec is not None:
            types = f" {self.key_codec.description} -> {self.value_codec.description},"
        elif self.value_codec is not None:
            types = f" {self.value_codec.description},"
        return (
            f"<ebpfvm.maps.{type(self).__name__} '{self.name}'{types} "
            f"{len(self)}/{self.max_entries} entries>"
        )


# The start of a pinned map's file, as ebpfvm-core's maps/region.rs lays it
# out: magic, layout version, then the definition (all little-endian).
_PIN_MAGIC = b"EBPFVMAP"
_PIN_LAYOUT_VERSION = 1
_PIN_HEADER = struct.Struct("<8sIIIIII")


def _pinned_definition(path: str | os.PathLike[str]) -> tuple[int, int, int, int, int]:
    """(map type number, key size, value size, max_entries, flags) of the map
    pinned at ``path``."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_PIN_HEADER.size)
    except OSError as e:
        raise map_error(
            "", f"cannot open pinned map {shown}: {e.strerror}", e.errno or errno.EIO
        ) from None
    if len(head) < _PIN_HEADER.size or head[:8] != _PIN_MAGIC:
        raise map_error("", f"{shown} is not a pinned ebpfvm map")
    _, version, map_type, key_size, value_size, max_entries, flags = _PIN_HEADER.unpack(head)
    if version != _PIN_LAYOUT_VERSION:
        raise map_error(
            "", f"{shown} is a pinned map of layout {version}, this ebpfvm reads layout 1"
        )
    return map_type, key_size, value_size, max_entries, flags


class KeyValueMap(Map, MutableMapping[Any, Any]):
    """A dict-like view: ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``,
    ``len(m)``, iteration, ``items()``, ``clear()`` and batch operations.

    Iteration, ``keys()``, ``values()`` and ``items()`` take a snapshot in
    one call into Rust, so the map may change while they are used.
    """

    def _attach(self, core: CoreMap, key_codec: Codec | None, value_codec: Codec | None) -> None:
        super()._attach(core, key_codec, value_codec)
        if key_codec is None or value_codec is None:
            raise map_error(core.name, f"a {core.map_type} map has no keys and values to view")
        self._kenc = key_codec.encode
        self._kdec = key_codec.decode
        self._venc = self._value_encoder()
        self._vdec = self._value_decoder()
        # Fast paths: C-level packers tried first (a failure retries with the
        # checked encoder, which raises the helpful error), and struct unpack
        # for scalar values.
        self._kpack = key_codec.fast_encode
        self._vpack, self._vunpack = self._value_fast_paths()
        # Integer keys and values (u32 -> u64, ...): one call into Rust.
        self._ints: IntMapView | None = None
        if (
            type(self)._value_fast_paths is KeyValueMap._value_fast_paths
            and isinstance(key_codec, IntCodec)
            and isinstance(value_codec, IntCodec)
            and key_codec.size in (1, 2, 4, 8)
            and value_codec.size in (1, 2, 4, 8)
        ):
            self._ints = IntMapView(core, key_codec.signed, value_codec.signed)
        self._lookup = core.lookup
        self._update = core.update
        self._delete = core.delete

    # Per-CPU and map-of-maps views change how values look.
    def _value_encoder(self) -> Any:
        assert self.value_codec is not None
        return self.value_codec.encode

    def _value_decoder(self) -> Any:
        assert self.value_codec is not None
        return self.value_codec.decode

    def _value_fast_paths(self) -> tuple[Any, Any]:
        """(fast encoder, scalar unpack or None) for values as they look."""
        assert self.value_codec is not None
        return self.value_codec.fast_encode, self.value_codec.scalar_unpack

    def _encode_values(self, values: Sequence[Any]) -> bytes:
        assert self.value_codec is not None
        return self.value_codec.encode_many(values)

    def _decode_values(self, data: bytes, count: int) -> list[Any]:
        assert self.value_codec is not None
        return self.value_codec.decode_many(data, count)

    def _encode_keys(self, keys: Sequence[Any]) -> bytes:
        assert self.key_codec is not None
        return self.key_codec.encode_many(keys)

    def _decode_keys(self, data: bytes) -> list[Any]:
        assert self.key_codec is not None
        return self.key_codec.decode_many(data, len(data) // self.key_codec.size)

    # --- single elements ------------------------------------------------------

    def _int_failure(self, key: Any, value: Any = _missing) -> None:
        """Raises the checked encoders' explanation of why the fast integer
        path refused ``key`` (or ``value``)."""
        self._kenc(key)
        if value is not _missing:
            self._venc(value)

    def __getitem__(self, key: Any) -> Any:
        ints = self._ints
        if ints is not None:
            try:
                n = ints.get(key)
            except (TypeError, OverflowError):
                self._int_failure(key)
                raise
            if n is None:
                raise KeyError(key)
            return n
        try:
            k = self._kpack(key)
        except Exception:
            k = self._kenc(key)
        v = self._lookup(k)
        if v is None:
            raise KeyError(key)
        unpack = self._vunpack
        if unpack is not None:
            return unpack(v)[0]
        return self._vdec(v)

    def __setitem__(self, key: Any, value: Any) -> None:
        ints = self._ints
        if ints is not None:
            try:
                ints.set(key, value)
            except (TypeError, OverflowError):
                self._int_failure(key, value)
                raise
            return
        try:
            k = self._kpack(key)
            v = self._vpack(value)
        except Exception:
            k = self._kenc(key)
            v = self._venc(value)
        self._update(k, v, 0)

    def __delitem__(self, key: Any) -> None:
        if not self._delete(self._kenc(key)):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        ints = self._ints
        if ints is not None:
            try:
                return ints.contains(key)
            except (TypeError, OverflowError):
                return False  # a key of the wrong type or size is not in the map
        try:
            k = self._kpack(key)
        except Exception:
            try:
                k = self._kenc(key)
            except (MapError, TypeError):
                return False  # a key of the wrong type or size is not in the map
        return self._lookup(k) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        ints = self._ints
        if ints is not None:
            try:
                n = ints.get(key)
            except (TypeError, OverflowError):
                self._int_failure(key)
                raise
            return default if n is None else n
        try:
            k = self._kpack(key)
        except Exception:
            k = self._kenc(key)
        v = self._lookup(k)
        if v is None:
            return default
        unpack = self._vunpack
        if unpack is not None:
            return unpack(v)[0]
        return self._vdec(v)

    def pop(self, key: Any, default: Any = _missing) -> Any:
        """Removes ``key`` and returns its value (``default``, or KeyError,
        when it is missing). If another thread deletes the key between the
        lookup and the delete, the key counts as missing here."""
        k = self._kenc(key)
        v = self._lookup(k)
        if v is None or not self._delete(k):
            if default is _missing:
                raise KeyError(key)
            return default
        return self._vdec(v)

    def lookup_elem(self, key: Any) -> Any:
        """The value for ``key``, or None."""
        return self.get(key)

    def update_elem(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Stores ``value``: ``flags`` BPF_NOEXIST (create only, else EEXIST)
        or BPF_EXIST (update only, else ENOENT) or BPF_ANY."""
        self._update(self._kenc(key), self._venc(value), flags)

    def delete_elem(self, key: Any) -> None:
        """Deletes ``key``; KeyError if it is not there."""
        del self[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._decode_keys(self._core.keys()))

    def keys(self) -> list[Any]:  # type: ignore[override]
        """A snapshot of the keys (a list)."""
        return self._decode_keys(self._core.keys())

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        """A snapshot of the entries, as a list of ``(key, value)`` pairs."""
        keys, values = self._core.items()
        ks = self._decode_keys(keys)
        return list(zip(ks, self._decode_values(values, len(ks)), strict=True))

    def values(self) -> list[Any]:  # type: ignore[override]
        """A snapshot of the values (a list)."""
        keys, values = self._core.items()
        assert self.key_codec is not None
        return self._decode_values(values, len(keys) // self.key_codec.size)

    def clear(self) -> None:
        """Deletes every entry."""
        self._core.delete_batch(self._core.keys(), missing_ok=True)

    def next_key(self, key: Any = None) -> Any:
        """The key after ``key`` (the first for None), or None at the end."""
        k = self._core.next_key(None if key is None else self._kenc(key))
        return None if k is None else self._kdec(k)

    # --- batches: one call into Rust each ---------------------------------------

    def lookup_batch(self, keys: Iterable[Any]) -> list[Any]:
        """The values of ``keys`` (None for missing keys), in one call."""
        keys = list(check_iterable(keys, "keys"))
        values, found = self._core.lookup_batch(self._encode_keys(keys))
        decoded = self._decode_values(values, len(keys))
        if all(found):
            return decoded
        return [v if f else None for v, f in zip(decoded, found, strict=True)]

    def update_batch(
        self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]], flags: int = BPF_ANY
    ) -> None:
        """Stores many entries in one call (a mapping or ``(key, value)``
        pairs). The first failure stops the batch, as in the kernel: earlier
        entries are stored and the :class:`ebpfvm.MapError` has ``.index``."""
        pairs = list(
            items.items() if isinstance(items, Mapping) else check_iterable(items, "items")
        )
        keys = [p[0] for p in pairs]
        values = [p[1] for p in pairs]
        self._core.update_batch(self._encode_keys(keys), self._encode_values(values), flags)

    def delete_batch(self, keys: Iterable[Any]) -> None:
        """Deletes many keys in one call. A missing key raises KeyError (the
        keys before it are deleted, as in the kernel)."""
        keys = list(check_iterable(keys, "keys"))
        try:
            self._core.delete_batch(self._encode_keys(keys))
        except MapError as e:
            index = getattr(e, "index", None)
            if getattr(e, "errno", None) == errno.ENOENT and index is not None:
                raise KeyError(keys[index]) from None
            raise

    # --- bcc-style histograms -------------------------------------------------

    def print_log2_hist(self, val_type: str = "value", **kwargs: Any) -> None:
        """Prints the map as a power-of-two histogram, as bcc does (keys are
        bucket indexes, values counts). See :func:`ebpfvm.maps.hist.print_log2_hist`."""
        from ebpfvm.maps.hist import print_log2_hist

        print_log2_hist(self, val_type, **kwargs)

    def print_linear_hist(self, val_type: str = "value", **kwargs: Any) -> None:
        """Prints the map as a linear histogram, as bcc does.
        See :func:`ebpfvm.maps.hist.print_linear_hist`."""
        from ebpfvm.maps.hist import print_linear_hist

        print_linear_hist(self, val_type, **kwargs)

    __hash__ = None  # type: ignore[assignment]  # dict-like: equal contents, equal maps
