"""bcc-style histograms of maps: :func:`print_log2_hist` and
:func:`print_linear_hist` print the same text layout bcc's tables do.

The map's keys are bucket indexes (a log2 slot, as ``bpf_log2l`` computes
it, or a linear bucket) and its values counts (per-CPU values are summed).
Keys with two fields (a struct, tuple or ctypes structure) make one
histogram per value of the first field, the *section*, with the bucket in
the second, as bcc's ``BPF_HISTOGRAM`` with a struct key does.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from ebpfvm.maps._codec import Struct

__all__ = ["linear_hist_text", "log2_hist_text", "print_linear_hist", "print_log2_hist"]

STARS_MAX = 40
LOG2_SLOTS = 65
LINEAR_SLOTS = 1025


def _stars(count: int, largest: int, width: int) -> str:
    """A bar of ``width`` at most, proportional to ``count / largest``."""
    if largest <= 0:
        return ""
    return "*" * min(width, int(width * count / largest))


def _log2_lines(counts: list[int], val_type: str, strip_leading_zero: bool) -> list[str]:
    last = max((i for i, c in enumerate(counts) if c > 0), default=-1)
    largest = max(counts, default=0)
    if last <= 32:
        header = f"     {val_type:<19} : count     distribution"
        width, num_width = STARS_MAX, 10
    else:
        header = f"               {val_type:<29} : count     distribution"
        width, num_width = STARS_MAX // 2, 20
    lines = [header] if last > 0 else []
    skipping = strip_leading_zero
    for slot in range(1, last + 1):
        high = (1 << slot) - 1
        low = (1 << slot) >> 1
        if low == high:
            low -= 1
        count = counts[slot]
        if skipping and not count:
            continue
        skipping = False
        bar = _stars(count, largest, width)
        lines.append(f"{low:>{num_width}} -> {high:<{num_width}} : {count:<8} |{bar:<{width}}|")
    return lines


def _linear_lines(counts: list[int], val_type: str, strip_leading_zero: bool) -> list[str]:
    last = max((i for i, c in enumerate(counts) if c > 0), default=-1)
    largest = max(counts, default=0)
    lines = [f"     {val_type:<13} : count     distribution"] if last >= 0 else []
    skipping = strip_leading_zero
    for bucket in range(0, last + 1):
        count = counts[bucket]
        if skipping and not count:
            continue
        skipping = False
        bar = _stars(count, largest, STARS_MAX)
        lines.append(f"        {bucket:<10} : {count:<8} |{bar:<{STARS_MAX}}|")
    return lines


def _fields(key: Any) -> list[Any] | None:
    """The fields of a compound key, or None for a scalar one."""
    if isinstance(key, Struct):
        return list(vars(key).values())
    if isinstance(key, tuple):
        return list(key)
    if isinstance(key, ctypes.Structure):
        names = [f[0] for f in key._fields_]
        return [getattr(key, n) for n in names if not n.startswith("__pad")]
    return None


def _count(value: Any) -> int:
    if isinstance(value, list):  # per-CPU: one count per CPU
        return sum(int(v) for v in value)
    if hasattr(value, "value"):  # ctypes scalars
        return int(value.value)
    return int(value)


def _index(key: Any, what: str) -> int:
    if hasattr(key, "value") and not isinstance(key, int):
        key = key.value
    try:
        return int(key)
    except (TypeError, ValueError):
        raise TypeError(f"histogram {what} must be an int, not {type(key).__name__}") from None


def _hist_text(
    items: Iterable[tuple[Any, Any]],
    slots: int,
    lines_of: Callable[[list[int], str, bool], list[str]],
    val_type: str,
    section_header: str,
    section_print_fn: Callable[[Any], Any] | None,
    bucket_fn: Callable[[Any], Any] | None,
    strip_leading_zero: bool | None,
    bucket_sort_fn: Callable[[list[Any]], list[Any]] | None,
) -> str:
    strip = bool(strip_leading_zero)
    sections: dict[Any, list[int]] = {}
    plain = [0] * slots
    sectioned = False
    for key, value in items:
        fields = _fields(key)
        if fields is None or len(fields) < 2:
            slot = _index(key if fields is None else fields[0], "key")
            if 0 <= slot < slots:
                plain[slot] += _count(value)
            continue
        sectioned = True
        section = fields[0]
        if isinstance(section, list):
            section = tuple(section)
        if bucket_fn is not None:
            section = bucket_fn(section)
        counts = sections.setdefault(section, [0] * slots)
        slot = _index(fields[1], "slot")
        if 0 <= slot < slots:
            counts[slot] += _count(value)
    if not sectioned:
        return "".join(line + "\n" for line in lines_of(plain, val_type, strip))
    order = list(sections)
    if bucket_sort_fn is not None:
        order = list(bucket_sort_fn(order))
    out = []
    for section in order:
        shown = section_print_fn(section) if section_print_fn is not None else repr(section)
        out.append(f"\n{section_header} = {shown}\n")
        out.extend(line + "\n" for line in lines_of(sections[section], val_type, strip))
    return "".join(out)


def log2_hist_text(
    m: Any,
    val_type: str = "value",
    section_header: str = "Bucket ptr",
    section_print_fn: Callable[[Any], Any] | None = None,
    bucket_fn: Callable[[Any], Any] | None = None,
    strip_leading_zero: bool | None = None,
    bucket_sort_fn: Callable[[list[Any]], list[Any]] | None = None,
) -> str:
    """The text :func:`print_log2_hist` prints."""
    return _hist_text(
        _items(m), LOG2_SLOTS, _log2_lines, val_type, section_header, section_print_fn,
        bucket_fn, strip_leading_zero, bucket_sort_fn,
    )  # fmt: skip


def linear_hist_text(
    m: Any,
    val_type: str = "value",
    section_header: str = "Bucket ptr",
    section_print_fn: Callable[[Any], Any] | None = None,
    bucket_fn: Callable[[Any], Any] | None = None,
    strip_leading_zero: bool | None = None,
    bucket_sort_fn: Callable[[list[Any]], list[Any]] | None = None,
) -> str:
    """The text :func:`print_linear_hist` prints."""
    return _hist_text(
        _items(m), LINEAR_SLOTS, _linear_lines, val_type, section_header, section_print_fn,
        bucket_fn, strip_leading_zero, bucket_sort_fn,
    )  # fmt: skip


def _items(m: Any) -> Iterable[tuple[Any, Any]]:
    items = m.items()
    return items if isinstance(items, list) else list(items)


def print_log2_hist(
    m: Any,
    val_type: str = "value",
    section_header: str = "Bucket ptr",
    section_print_fn: Callable[[Any], Any] | None = None,
    bucket_fn: Callable[[Any], Any] | None = None,
    strip_leading_zero: bool | None = None,
    bucket_sort_fn: Callable[[list[Any]], list[Any]] | None = None,
    file: TextIO | None = None,
) -> None:
    """Prints map (or mapping) ``m`` as a power-of-two histogram, in bcc's
    layout::

             usecs               : count     distribution
                 0 -> 1          : 3        |****************                        |
                 2 -> 3          : 7        |****************************************|
    """
    text = log2_hist_text(
        m, val_type, section_header, section_print_fn, bucket_fn, strip_leading_zero,
        bucket_sort_fn,
    )  # fmt: skip
    (file or sys.stdout).write(text)


def print_linear_hist(
    m: Any,
    val_type: str = "value",
    section_header: str = "Bucket ptr",
    section_print_fn: Callable[[Any], Any] | None = None,
    bucket_fn: Callable[[Any], Any] | None = None,
    strip_leading_zero: bool | None = None,
    bucket_sort_fn: Callable[[list[Any]], list[Any]] | None = None,
    file: TextIO | None = None,
) -> None:
    """Prints map (or mapping) ``m`` as a linear histogram (one row per
    bucket), in bcc's layout."""
    text = linear_hist_text(
        m, val_type, section_header, section_print_fn, bucket_fn, strip_leading_zero,
        bucket_sort_fn,
    )  # fmt: skip
    (file or sys.stdout).write(text)
