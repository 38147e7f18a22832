"""Key and value types of map views: Python objects to and from a map's bytes.

A *codec* turns one Python object into exactly ``size`` bytes and back.
:func:`make_codec` builds one from any of the forms a map view accepts:

- ``"u8"`` .. ``"u64"``, ``"i8"`` .. ``"i64"`` (also ``"__u32"``, ``"uint32_t"``,
  ``"int"``, ...), ``"f32"``, ``"f64"``: little-endian numbers, as Python ints
  (floats);
- a :mod:`struct` format string (``"<IH"``, ``"16s"``): a tuple, or the single
  field when there is one;
- a :mod:`ctypes` type: simple types give Python scalars (``c_uint32`` gives
  ints), structures, unions and arrays give instances of the type;
- ``None`` or ``bytes``: the raw bytes;
- a BTF type description dict (what object files describe their maps with):
  ints, enums, bools and chars give ints, floats give floats, char arrays
  give bytes (up to the first NUL), other arrays give lists, structs and
  unions give :class:`Struct` objects (encodable back from a ``Struct``, a
  dict or a tuple);
- a :class:`Codec` instance, used as it is.

Invalid values raise :class:`ebpfvm.MapError` (errno ``EINVAL``) naming the
map and what is wrong; values of the wrong Python type raise ``TypeError``.
"""

from __future__ import annotations

import abc
import ctypes
import errno
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

from ebpfvm._core import MapError

__all__ = ["Codec", "Struct", "make_codec", "map_error"]


def map_error(
    map_name: str, message: str, code: int = errno.EINVAL, index: int | None = None
) -> MapError:
    """An :class:`ebpfvm.MapError` for map ``map_name`` with ``.errno`` set."""
    err = MapError(f"map '{map_name}': {message}")
    err.errno = code
    err.map_name = map_name
    err.index = index
    return err


def _type_name(obj: object) -> str:
    return type(obj).__name__


class Codec(abc.ABC):
    """Converts Python objects to and from ``size`` bytes.

    Subclasses implement :meth:`encode` and :meth:`decode`; the batch forms
    and :meth:`numpy_dtype` have generic defaults.
    """

    size: int = 0
    #: How the type is shown in reprs and error messages.
    description: str = "bytes"

    def __init__(self) -> None:
        self.map_name = "?"
        self.role = "value"

    @property
    def fast_encode(self) -> Callable[[Any], bytes]:
        """A quicker encoder (typically C code) that may raise any exception
        for a bad value; callers retry with :meth:`encode` for the message."""
        return self.encode

    @property
    def scalar_unpack(self) -> Callable[[bytes], tuple[Any, ...]] | None:
        """For one-field struct-backed types: ``struct.Struct.unpack``, whose
        first item is the value (saves a Python call per decode)."""
        return None

    def bind(self, map_name: str, role: str) -> Codec:
        """Names the map and the role ("key" or "value") for error messages."""
        self.map_name = map_name
        self.role = role
        return self

    def error(self, message: str) -> MapError:
        return map_error(self.map_name, f"{self.role} {message}")

    @abc.abstractmethod
    def encode(self, obj: Any) -> bytes: ...

    @abc.abstractmethod
    def decode(self, data: bytes) -> Any: ...

    def encode_many(self, objs: Sequence[Any]) -> bytes:
        encode = self.encode
        return b"".join([encode(o) for o in objs])

    def decode_many(self, data: bytes, count: int, stride: int | None = None) -> list[Any]:
        """Decodes ``count`` records of ``stride`` bytes (default: ``size``)."""
        size = self.size
        stride = size if stride is None else stride
        decode = self.decode
        view = memoryview(data)
        return [decode(bytes(view[i * stride : i * stride + size])) for i in range(count)]

    def numpy_dtype(self) -> Any:
        """The NumPy dtype of one value, or None when there is none."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} ({self.size} bytes)>"


class RawCodec(Codec):
    """Exactly ``size`` bytes, as ``bytes``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.description = f"bytes[{size}]"

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            data = obj
        elif isinstance(obj, (bytearray, memoryview)) or _is_buffer(obj):
            data = bytes(memoryview(obj).cast("B"))
        else:
            raise TypeError(
                f"map '{self.map_name}': {self.role} must be {self.size} bytes "
                f"(bytes, bytearray or a buffer), not {_type_name(obj)}"
            )
        if len(data) != self.size:
            raise self.error(f"must be {self.size} bytes, got {len(data)}")
        return data

    def decode(self, data: bytes) -> bytes:
        return bytes(data)

    def decode_many(self, data: bytes, count: int, stride: int | None = None) -> list[Any]:
        size = self.size
        stride = size if stride is None else stride
        return [data[i * stride : i * stride + size] for i in range(count)]


def _is_buffer(obj: object) -> bool:
    try:
        memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


class IntCodec(Codec):
    """A little-endian integer of 1, 2, 4, 8 (or 16) bytes, as a Python int."""

    def __init__(self, size: int, signed: bool, description: str | None = None) -> None:
        super().__init__()
        self.size = size
        self.signed = signed
        self.description = description or f"{'i' if signed else 'u'}{size * 8}"
        code = _INT_CODES.get(size)
        self._code = None if code is None else (code if signed else code.upper())
        if self._code is not None:
            s = struct.Struct("<" + self._code)
            self._pack = s.pack
            self._unpack = s.unpack
        self.low = -(1 << (size * 8 - 1)) if signed else 0
        self.high = (1 << (size * 8 - 1)) - 1 if signed else (1 << (size * 8)) - 1

    def _bad(self, obj: Any) -> Exception:
        if isinstance(obj, float) or not hasattr(obj, "__index__"):
            return TypeError(
                f"map '{self.map_name}': {self.role} must be an int for type "
                f"{self.description}, not {_type_name(obj)}"
            )
        return self.error(
            f"{int(obj)} is out of range for {self.description} ({self.low}..{self.high})"
        )

    def encode(self, obj: Any) -> bytes:
        if self._code is None:
            try:
                value = obj.__index__()
            except (AttributeError, TypeError):
                raise self._bad(obj) from None
            if not self.low <= value <= self.high:
                raise self._bad(obj)
            return value.to_bytes(self.size, "little", signed=self.signed)
        try:
            return self._pack(obj)
        except struct.error:
            raise self._bad(obj) from None

    def decode(self, data: bytes) -> int:
        if self._code is None:
            return int.from_bytes(data, "little", signed=self.signed)
        return self._unpack(data)[0]  # type: ignore[no-any-return]

    @property
    def fast_encode(self) -> Callable[[Any], bytes]:
        return self.encode if self._code is None else self._pack

    @property
    def scalar_unpack(self) -> Callable[[bytes], tuple[Any, ...]] | None:
        return None if self._code is None else self._unpack

    def encode_many(self, objs: Sequence[Any]) -> bytes:
        if self._code is None:
            return super().encode_many(objs)
        try:
            return struct.pack(f"<{len(objs)}{self._code}", *objs)
        except struct.error:
            # Find the culprit for the message.
            for o in objs:
                self.encode(o)
            raise

    def decode_many(self, data: bytes, count: int, stride: int | None = None) -> list[Any]:
        if self._code is None or (stride is not None and stride != self.size):
            return super().decode_many(data, count, stride)
        return list(struct.unpack(f"<{count}{self._code}", data[: count * self.size]))

    def numpy_dtype(self) -> Any:
        import numpy as np

        if self.size > 8:
            return None
        return np.dtype(f"<{'i' if self.signed else 'u'}{self.size}")


class FloatCodec(Codec):
    """An IEEE float of 2, 4 or 8 bytes, as a Python float."""

    _CODES: ClassVar[dict[int, str]] = {2: "e", 4: "f", 8: "d"}

    def __init__(self, size: int) -> None:
        super().__init__()
        if size not in self._CODES:
            raise ValueError(f"floats of {size} bytes are not supported (2, 4 or 8)")
        self.size = size
        self.description = f"f{size * 8}"
        self.format = "<" + self._CODES[size]
        s = struct.Struct(self.format)
        self._pack = s.pack
        self._unpack = s.unpack

    def encode(self, obj: Any) -> bytes:
        try:
            return self._pack(obj)
        except struct.error:
            if isinstance(obj, (int, float)):
                raise self.error(f"{obj!r} is out of range for {self.description}") from None
            raise TypeError(
                f"map '{self.map_name}': {self.role} must be a float, not {_type_name(obj)}"
            ) from None
        except OverflowError:
            raise self.error(f"{obj!r} is out of range for {self.description}") from None

    def decode(self, data: bytes) -> float:
        return self._unpack(data)[0]  # type: ignore[no-any-return]

    @property
    def fast_encode(self) -> Callable[[Any], bytes]:
        return self._pack

    @property
    def scalar_unpack(self) -> Callable[[bytes], tuple[Any, ...]] | None:
        return self._unpack

    def numpy_dtype(self) -> Any:
        import numpy as np

        return np.dtype(f"<f{self.size}")


class StructFormatCodec(Codec):
    """A :mod:`struct` format: a tuple, or the value itself for one field."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self._struct = struct.Struct(fmt)
        self.size = self._struct.size
        self.description = repr(fmt)
        self._fields = len(self._struct.unpack(bytes(self.size)))

    def encode(self, obj: Any) -> bytes:
        try:
            if self._fields == 1:
                return self._struct.pack(obj)
            if not isinstance(obj, (tuple, list)):
                raise TypeError(
                    f"map '{self.map_name}': {self.role} must be a tuple of {self._fields} "
                    f"fields for format {self.description}, not {_type_name(obj)}"
                )
            return self._struct.pack(*obj)
        except struct.error as e:
            raise self.error(f"{obj!r} does not fit format {self.description}: {e}") from None

    def decode(self, data: bytes) -> Any:
        fields = self._struct.unpack(data)
        return fields[0] if self._fields == 1 else fields


class CtypesCodec(Codec):
    """A ctypes structure, union or array type: instances of it."""

    def __init__(self, ctype: Any) -> None:
        super().__init__()
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)
        self.description = ctype.__name__

    def encode(self, obj: Any) -> bytes:
        t = self.ctype
        if isinstance(obj, t):
            return bytes(obj)
        try:
            if isinstance(obj, Mapping):
                return bytes(t(**obj))
            if isinstance(obj, (tuple, list)):
                return bytes(t(*obj))
        except (TypeError, ValueError, AttributeError) as e:
            raise self.error(f"{obj!r} does not make a {self.description}: {e}") from None
        if isinstance(obj, (bytes, bytearray, memoryview)):
            if len(obj) != self.size:
                raise self.error(f"must be {self.size} bytes, got {len(obj)}")
            return bytes(obj)
        raise TypeError(
            f"map '{self.map_name}': {self.role} must be a {self.description} "
            f"(or a dict or tuple of its fields), not {_type_name(obj)}"
        )

    def decode(self, data: bytes) -> Any:
        return self.ctype.from_buffer_copy(data)

    def numpy_dtype(self) -> Any:
        import numpy as np

        try:
            return np.dtype(self.ctype)
        except (TypeError, ValueError, NotImplementedError):
            return None


def _ctypes_codec(ctype: Any) -> Codec:
    if issubclass(ctype, ctypes._SimpleCData):  # type: ignore[attr-defined]
        code = ctype._type_
        size = ctypes.sizeof(ctype)
        if code in "bBhHiIlLqQ?P":
            return IntCodec(size, code.islower() and code != "?", ctype.__name__)
        if code in "fd":
            return FloatCodec(size)
        if code == "c":
            return RawCodec(1)
        raise TypeError(f"ctypes type {ctype.__name__} cannot be stored in a map")
    if issubclass(ctype, (ctypes.Structure, ctypes.Union, ctypes.Array)):
        return CtypesCodec(ctype)
    raise TypeError(f"ctypes type {ctype.__name__} cannot be stored in a map")


# --- BTF type descriptions -------------------------------------------------


class Struct(SimpleNamespace):
    """A decoded C struct or union: members as attributes.

    Structs compare equal when their members are, and hash by their members
    too, so they can be dict keys (do not change one while it is a key).
    ``_asdict()`` gives the members as a (nested) dict.
    """

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(_freeze(self))

    def _asdict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in vars(self).items()}

    def __iter__(self) -> Any:
        return iter(vars(self).values())


def _freeze(v: Any) -> Any:
    if isinstance(v, Struct):
        return (type(v).__name__, tuple((k, _freeze(x)) for k, x in vars(v).items()))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _plain(v: Any) -> Any:
    if isinstance(v, Struct):
        return v._asdict()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


_QUALIFIERS = ("typedef", "const", "volatile", "restrict", "type_tag", "decl_tag")
_MAX_BTF_DEPTH = 64

# A field reader takes (buffer, offset) and returns a Python value; a field
# writer takes (bytearray, offset, value) and stores it.
Reader = Callable[[bytes, int], Any]
Writer = Callable[[bytearray, int, Any], None]


def _strip(desc: Any) -> dict[str, Any]:
    depth = 0
    while isinstance(desc, Mapping) and desc.get("kind") in _QUALIFIERS:
        desc = desc.get("type")
        depth += 1
        if depth > _MAX_BTF_DEPTH:
            raise ValueError("BTF type description: qualifier chain too long")
    if not isinstance(desc, Mapping):
        raise ValueError(f"BTF type description must be a dict, got {_type_name(desc)}")
    return dict(desc)


def _is_char(desc: Mapping[str, Any]) -> bool:
    kind = desc.get("kind")
    if kind == "char":
        return True
    return kind == "int" and desc.get("size") == 1 and "char" in str(desc.get("name", ""))


class BtfCodec(Codec):
    """A value described by a BTF type description dict."""

    def __init__(self, desc: Mapping[str, Any], map_name: str = "?", role: str = "value") -> None:
        super().__init__()
        self.bind(map_name, role)
        self.desc = desc
        top = _strip(desc)
        self.size = _btf_size(top)
        self.description = _btf_name(top)
        self._struct_classes: dict[str, type[Struct]] = {}
        self._read, self._write = self._compile(top, 0)

    def encode(self, obj: Any) -> bytes:
        buf = bytearray(self.size)
        self._write(buf, 0, obj)
        return bytes(buf)

    def decode(self, data: bytes) -> Any:
        return self._read(data, 0)

    # The compiler turns a description into a reader/writer pair once, so
    # encoding and decoding do not walk the dict per value.
    def _compile(self, desc: dict[str, Any], depth: int, path: str = "") -> tuple[Reader, Writer]:
        if depth > _MAX_BTF_DEPTH:
            raise ValueError("BTF type description nested too deeply")
        kind = desc.get("kind")
        where = path or self.role
        if kind in ("int", "enum", "bool", "char", "ptr"):
            return self._compile_int(desc, where)
        if kind == "float":
            fc = FloatCodec(int(desc.get("size", 8)))
            unpack = struct.Struct(fc.format).unpack_from

            def read_float(buf: bytes, off: int) -> float:
                return unpack(buf, off)[0]  # type: ignore[no-any-return]

            def write_float(buf: bytearray, off: int, v: Any) -> None:
                fc.bind(self.map_name, where)
                buf[off : off + fc.size] = fc.encode(v)

            return read_float, write_float
        if kind == "array":
            return self._compile_array(desc, depth, path)
        if kind in ("struct", "union"):
            return self._compile_struct(desc, depth, path)
        if kind in ("bytes", "void", "fwd", "func", "func_proto", "datasec", "var", None):
            size = _btf_size(desc)

            def read_bytes(buf: bytes, off: int) -> bytes:
                return bytes(buf[off : off + size])

            def write_bytes(buf: bytearray, off: int, v: Any) -> None:
                if not isinstance(v, (bytes, bytearray, memoryview)):
                    raise TypeError(
                        f"map '{self.map_name}': {where} must be bytes, not {_type_name(v)}"
                    )
                if len(v) > size:
                    raise self._err(where, f"is {size} bytes, got {len(v)}")
                buf[off : off + len(v)] = v

            return read_bytes, write_bytes
        raise ValueError(f"BTF type description: unknown kind {kind!r}")

    def _err(self, where: str, message: str) -> MapError:
        return map_error(self.map_name, f"{where} {message}")

    def _compile_int(self, desc: dict[str, Any], where: str) -> tuple[Reader, Writer]:
        kind = desc["kind"]
        size = int(desc.get("size", 8 if kind == "ptr" else 1 if kind in ("bool", "char") else 4))
        signed = bool(desc.get("signed", False)) and kind not in ("bool", "ptr")
        if size not in (1, 2, 4, 8, 16):
            raise ValueError(f"BTF {kind} of {size} bytes is not supported")
        low = -(1 << (size * 8 - 1)) if signed else 0
        high = (1 << (size * 8 - 1)) - 1 if signed else (1 << (size * 8)) - 1
        names: Mapping[str, int] = desc.get("values") or {} if kind == "enum" else {}
        type_name = desc.get("name") or kind

        def read_int(buf: bytes, off: int) -> int:
            return int.from_bytes(buf[off : off + size], "little", signed=signed)

        def write_int(buf: bytearray, off: int, v: Any) -> None:
            if isinstance(v, str) and v in names:
                v = names[v]
            try:
                n = v.__index__()
            except (AttributeError, TypeError):
                raise TypeError(
                    f"map '{self.map_name}': {where} must be an int for type {type_name}, "
                    f"not {_type_name(v)}"
                ) from None
            if not low <= n <= high:
                raise self._err(where, f"{n} is out of range for {type_name} ({low}..{high})")
            buf[off : off + size] = n.to_bytes(size, "little", signed=signed)

        return read_int, write_int

    def _compile_array(self, desc: dict[str, Any], depth: int, path: str) -> tuple[Reader, Writer]:
        elem = _strip(desc.get("elem") or desc.get("type"))
        count = int(desc.get("len", 0))
        esize = _btf_size(elem)
        where = path or self.role
        if _is_char(elem):
            total = count * esize

            def read_chars(buf: bytes, off: int) -> bytes:
                raw = bytes(buf[off : off + total])
                end = raw.find(b"\0")
                return raw if end < 0 else raw[:end]

            def write_chars(buf: bytearray, off: int, v: Any) -> None:
                if isinstance(v, str):
                    v = v.encode()
                if not isinstance(v, (bytes, bytearray, memoryview)):
                    raise TypeError(
                        f"map '{self.map_name}': {where} must be bytes or str, not {_type_name(v)}"
                    )
                if len(v) > total:
                    raise self._err(where, f"holds {total} chars, got {len(v)}")
                buf[off : off + len(v)] = v

            return read_chars, write_chars
        read_elem, write_elem = self._compile(elem, depth + 1, f"{where}[]")

        def read_array(buf: bytes, off: int) -> list[Any]:
            return [read_elem(buf, off + i * esize) for i in range(count)]

        byte_elems = esize == 1 and elem.get("kind") in ("int", "bool")

        def write_array(buf: bytearray, off: int, v: Any) -> None:
            if byte_elems and isinstance(v, (bytes, bytearray, memoryview)):
                # A __u8 array (a MAC address, ...) may be given as bytes.
                if len(v) > count:
                    raise self._err(where, f"has {count} elements, got {len(v)} bytes")
                buf[off : off + len(v)] = v
                return
            if not isinstance(v, (list, tuple)):
                raise TypeError(
                    f"map '{self.map_name}': {where} must be a list of {count} elements, "
                    f"not {_type_name(v)}"
                )
            if len(v) > count:
                raise self._err(where, f"has {count} elements, got {len(v)}")
            for i, x in enumerate(v):
                write_elem(buf, off + i * esize, x)

        return read_array, write_array

    def _members(
        self, desc: dict[str, Any], base: int, depth: int
    ) -> list[tuple[str, int, int, dict[str, Any]]]:
        """Members as (name, bit position, bitfield size, type), with the
        members of anonymous structs and unions lifted into their parent, as
        C lets them be used."""
        if depth > _MAX_BTF_DEPTH:
            raise ValueError("BTF type description nested too deeply")
        out = []
        for m in desc.get("members") or []:
            mtype = _strip(m.get("type"))
            pos = base + int(m.get("offset", 0)) * 8 + int(m.get("bit_offset", 0))
            bits = int(m.get("bit_size", 0) or 0)
            name = m.get("name") or ""
            if not name and mtype.get("kind") in ("struct", "union") and not bits:
                out.extend(self._members(mtype, pos, depth + 1))
            else:
                out.append((name, pos, bits, mtype))
        return out

    def _struct_class(self, name: str) -> type[Struct]:
        cls_name = name or "Struct"
        if not cls_name.isidentifier():
            cls_name = "Struct"
        cls = self._struct_classes.get(cls_name)
        if cls is None:
            cls = type(cls_name, (Struct,), {"__module__": "ebpfvm.maps"})
            self._struct_classes[cls_name] = cls
        return cls

    def _compile_struct(self, desc: dict[str, Any], depth: int, path: str) -> tuple[Reader, Writer]:
        cls = self._struct_class(str(desc.get("name") or ""))
        where = path or self.role
        fields: list[tuple[str, Reader, Writer]] = []
        for index, (name, pos, bits, mtype) in enumerate(self._members(desc, 0, depth)):
            fname = name or f"_{index}"
            fpath = f"{where}.{fname}"
            if bits:
                fields.append((fname, *self._compile_bitfield(mtype, pos, bits, fpath)))
                continue
            read, write = self._compile(mtype, depth + 1, fpath)
            byte = pos // 8
            fields.append((fname, _offset_reader(read, byte), _offset_writer(write, byte)))
        names = [f[0] for f in fields]
        known = set(names)

        def read_struct(buf: bytes, off: int) -> Struct:
            obj = cls.__new__(cls)
            d = obj.__dict__
            for fname, read, _ in fields:
                d[fname] = read(buf, off)
            return obj

        def write_struct(buf: bytearray, off: int, v: Any) -> None:
            if isinstance(v, Mapping):
                unknown = set(v) - known
                if unknown:
                    raise self._err(
                        where, f"has no member {sorted(unknown)[0]!r} (members: {names})"
                    )
                items = [(f, v[f[0]]) for f in fields if f[0] in v]
            elif isinstance(v, (tuple, list)):
                if len(v) > len(fields):
                    raise self._err(where, f"has {len(fields)} members, got {len(v)} values")
                items = list(zip(fields, v, strict=False))
            elif isinstance(v, SimpleNamespace) or hasattr(v, "__dict__"):
                attrs = vars(v)
                items = [(f, attrs[f[0]]) for f in fields if f[0] in attrs]
            else:
                raise TypeError(
                    f"map '{self.map_name}': {where} must be a struct (Struct, dict or tuple), "
                    f"not {_type_name(v)}"
                )
            for (_, _, write), x in items:
                write(buf, off, x)

        return read_struct, write_struct

    def _compile_bitfield(
        self, mtype: dict[str, Any], pos: int, bits: int, where: str
    ) -> tuple[Reader, Writer]:
        signed = bool(mtype.get("signed", False))
        first = pos // 8
        last = (pos + bits + 7) // 8
        shift = pos - first * 8
        mask = (1 << bits) - 1
        low = -(1 << (bits - 1)) if signed else 0
        high = (1 << (bits - 1)) - 1 if signed else mask

        def read_bits(buf: bytes, off: int) -> int:
            word = int.from_bytes(buf[off + first : off + last], "little")
            v = (word >> shift) & mask
            if signed and v >> (bits - 1):
                v -= 1 << bits
            return v

        def write_bits(buf: bytearray, off: int, v: Any) -> None:
            try:
                n = v.__index__()
            except (AttributeError, TypeError):
                raise TypeError(
                    f"map '{self.map_name}': {where} must be an int, not {_type_name(v)}"
                ) from None
            if not low <= n <= high:
                raise self._err(where, f"{n} does not fit in {bits} bits ({low}..{high})")
            word = int.from_bytes(buf[off + first : off + last], "little")
            word = (word & ~(mask << shift)) | ((n & mask) << shift)
            buf[off + first : off + last] = word.to_bytes(last - first, "little")

        return read_bits, write_bits

    def numpy_dtype(self) -> Any:
        try:
            return _btf_dtype(_strip(self.desc), 0)
        except (TypeError, ValueError):
            return None


def _offset_reader(read: Reader, byte: int) -> Reader:
    return lambda buf, off: read(buf, off + byte)


def _offset_writer(write: Writer, byte: int) -> Writer:
    return lambda buf, off, v: write(buf, off + byte, v)


def _btf_size(desc: Mapping[str, Any]) -> int:
    kind = desc.get("kind")
    if "size" in desc:
        return int(desc["size"])
    if kind == "ptr":
        return 8
    if kind in ("bool", "char"):
        return 1
    if kind == "array":
        return int(desc.get("len", 0)) * _btf_size(_strip(desc.get("elem") or desc.get("type")))
    raise ValueError(f"BTF type description of kind {kind!r} has no size")


def _btf_name(desc: Mapping[str, Any]) -> str:
    kind = desc.get("kind")
    name = desc.get("name")
    if kind in ("struct", "union", "enum"):
        return f"{kind} {name}" if name else f"{kind} (anonymous)"
    if kind == "array":
        elem = _strip(desc.get("elem") or desc.get("type"))
        return f"{_btf_name(elem)}[{desc.get('len', 0)}]"
    return str(name or kind)


def _btf_dtype(desc: dict[str, Any], depth: int) -> Any:
    import numpy as np

    if depth > _MAX_BTF_DEPTH:
        raise ValueError("too deep")
    kind = desc.get("kind")
    size = _btf_size(desc)
    if kind in ("int", "enum", "bool", "char", "ptr"):
        signed = bool(desc.get("signed", False)) and kind not in ("bool", "ptr")
        if size not in (1, 2, 4, 8):
            raise ValueError("no NumPy integer of that size")
        return np.dtype(f"<{'i' if signed else 'u'}{size}")
    if kind == "float":
        return np.dtype(f"<f{size}")
    if kind == "array":
        elem = _strip(desc.get("elem") or desc.get("type"))
        if _is_char(elem):
            return np.dtype(f"S{desc.get('len', 0)}")
        return np.dtype((_btf_dtype(elem, depth + 1), (int(desc.get("len", 0)),)))
    if kind in ("struct", "union"):
        names, formats, offsets = [], [], []
        for i, m in enumerate(desc.get("members") or []):
            if int(m.get("bit_size", 0) or 0):
                continue  # NumPy has no bitfields: left out of the view
            names.append(m.get("name") or f"_{i}")
            formats.append(_btf_dtype(_strip(m.get("type")), depth + 1))
            offsets.append(int(m.get("offset", 0)) + int(m.get("bit_offset", 0)) // 8)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})
    return np.dtype((np.uint8, (size,)))


# --- Building codecs ---------------------------------------------------------

_NAMED_INTS: dict[str, tuple[int, bool]] = {}
for _bits in (8, 16, 32, 64):
    _n = _bits // 8
    for _alias in (f"u{_bits}", f"__u{_bits}", f"uint{_bits}_t", f"uint{_bits}"):
        _NAMED_INTS[_alias] = (_n, False)
    for _alias in (f"i{_bits}", f"s{_bits}", f"__s{_bits}", f"int{_bits}_t", f"int{_bits}"):
        _NAMED_INTS[_alias] = (_n, True)
_NAMED_INTS.update(
    {
        "char": (1, True),
        "unsigned char": (1, False),
        "short": (2, True),
        "unsigned short": (2, False),
        "int": (4, True),
        "unsigned int": (4, False),
        "unsigned": (4, False),
        "long": (8, True),
        "unsigned long": (8, False),
        "long long": (8, True),
        "unsigned long long": (8, False),
        "bool": (1, False),
        "_Bool": (1, False),
        "u128": (16, False),
        "i128": (16, True),
    }
)
_NAMED_FLOATS = {"f16": 2, "f32": 4, "float": 4, "f64": 8, "double": 8}


def make_codec(spec: Any, size: int | None, role: str, map_name: str) -> Codec:
    """The codec for type ``spec`` of a map's keys or values (``role``).

    ``size`` is the map's key or value size when it is known; a type of a
    different size is an error. ``spec`` of None means raw bytes.
    """
    codec = _build(spec, size, role, map_name)
    codec.bind(map_name, role)
    if size is not None and codec.size != size:
        raise map_error(
            map_name,
            f"{role} type {codec.description} is {codec.size} bytes but the map's "
            f"{role}s are {size} bytes",
        )
    return codec


def _build(spec: Any, size: int | None, role: str, map_name: str) -> Codec:
    if isinstance(spec, Codec):
        return spec
    if spec is None or spec is bytes:
        if size is None:
            raise map_error(map_name, f"give a {role}_type or a {role}_size")
        return RawCodec(size)
    if isinstance(spec, str):
        name = spec.strip()
        if name in _NAMED_INTS:
            n, signed = _NAMED_INTS[name]
            return IntCodec(n, signed, name)
        if name in _NAMED_FLOATS:
            return FloatCodec(_NAMED_FLOATS[name])
        try:
            return StructFormatCodec(name)
        except struct.error:
            raise ValueError(
                f"map '{map_name}': unknown {role} type {spec!r} (use 'u8'..'u64', "
                "'i8'..'i64', 'f32', 'f64', a struct format such as '<IH', a ctypes type, "
                "bytes or a BTF description)"
            ) from None
    if isinstance(spec, type) and issubclass(
        spec, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array
    ):  # type: ignore[attr-defined]
        return _ctypes_codec(spec)
    if isinstance(spec, Mapping):
        try:
            return BtfCodec(spec, map_name, role)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"map '{map_name}': bad {role} BTF type description: {e}") from None
    raise TypeError(
        f"map '{map_name}': {role}_type must be a type name, a struct format, a ctypes type, "
        f"bytes, None or a BTF description dict, not {_type_name(spec)}"
    )


def check_iterable(obj: Any, what: str) -> Iterable[Any]:
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        raise TypeError(f"{what} must be an iterable, not {_type_name(obj)}")
    return obj
