"""Helper wrappers: memory-aware Python helpers and native C helpers."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

__all__ = ["Helper", "NativeHelper"]


class Helper:
    """A Python helper that can read and write the program's memory.

    ``func(mem, r1, r2, r3, r4, r5)`` is called with an :class:`ebpfvm.VMMemory`
    first; it is valid only during that call. With ``memory=False`` the helper
    is called like a plain callable, ``func(r1, r2, r3, r4, r5)``.
    """

    __slots__ = ("__ebpfvm_memory_helper__", "func", "memory")

    def __init__(self, func: Callable[..., int], *, memory: bool = True) -> None:
        if not callable(func):
            raise TypeError(f"Helper needs a callable, got {type(func).__name__}")
        self.func = func
        self.memory = memory
        if memory:
            self.__ebpfvm_memory_helper__ = func

    def __call__(self, *args: int) -> int:
        if self.memory:
            raise TypeError("a memory helper can only be called by a running program")
        return self.func(*args)

    def __repr__(self) -> str:
        return f"Helper({self.func!r}, memory={self.memory})"


def _address_of(fn: Any) -> int:
    """The machine address behind an int, cffi pointer or ctypes function."""
    if isinstance(fn, int):
        return fn
    module = type(fn).__module__
    if module == "_cffi_backend":
        import _cffi_backend  # type: ignore[import-not-found]

        return int(_cffi_backend.cast(_cffi_backend.new_primitive_type("uintptr_t"), fn))
    if isinstance(fn, ctypes._CFuncPtr):  # type: ignore[attr-defined]
        addr = ctypes.cast(fn, ctypes.c_void_p).value
        if addr is None:
            raise ValueError("NULL ctypes function pointer")
        return addr
    raise TypeError(
        "NativeHelper needs a function address: an int, a cffi function pointer or a "
        f"ctypes function pointer, not {type(fn).__name__}"
    )


class NativeHelper:
    """A C function ``uint64_t f(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t)``
    called by programs directly, with no Python in between.

    ``fn`` is an int address, a cffi function pointer, or a ctypes function
    pointer. The object keeps ``fn`` (and ``keepalive``) alive; when giving a
    bare address the caller must keep the code loaded.
    """

    __slots__ = ("__ebpfvm_native_address__", "_keepalive", "address")

    def __init__(self, fn: Any, *, keepalive: Any = None) -> None:
        address = _address_of(fn)
        if address <= 0:
            raise ValueError("NativeHelper needs a non-NULL function address")
        self.address = address
        self.__ebpfvm_native_address__ = address
        self._keepalive = (fn, keepalive)

    def __repr__(self) -> str:
        return f"NativeHelper(0x{self.address:x})"
