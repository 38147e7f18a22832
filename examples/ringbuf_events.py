"""Events from eBPF programs compiled from C, read from a ring buffer in
Python: a tracepoint program reports (simulated) openat() calls with the
caller's thread id, process id, comm and a timestamp, and an XDP program
reports packets.

Run:  python examples/ringbuf_events.py
"""

from __future__ import annotations

import struct
from pathlib import Path

import ebpfvm

HERE = Path(__file__).resolve().parent
OPEN_EVENT = struct.Struct("<IIIIQqqQ16s")
PACKET_EVENT = struct.Struct("<IIIIQ14sH")
SYS_ENTER = struct.Struct("<Qq6Q")

obj = ebpfvm.Object.open(str(HERE / "bpf" / "ringbuf_events.o"))
trace_openat = obj.programs["trace_openat"].load()
sampler = obj.programs["xdp_sampler"].load()

# The record the kernel hands a sys_enter_openat program: openat(AT_FDCWD, path, flags, mode).
for flags in (0, 0o100, 0o2000000):
    trace_openat.run(SYS_ENTER.pack(0, 257, (-100) & (2**64 - 1), 0, flags, 0o644, 0, 0))
frame = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x06" + bytes(28)
sampler.run(frame, ctx={"ingress_ifindex": 2, "rx_queue_index": 0})


def on_event(data: bytes) -> None:
    kind = struct.unpack_from("<I", data)[0]
    if kind == 1:
        _, pid, tgid, cpu, ts, _nr, dirfd, flags, comm = OPEN_EVENT.unpack(data)
        name = comm.rstrip(b"\0").decode()
        print(f"[{ts}] openat  {name}[{tgid}/{pid}] cpu {cpu} dirfd {dirfd} flags {flags:#o}")
    else:
        _, length, ifindex, queue, ts, eth, _ = PACKET_EVENT.unpack(data)
        ethertype = int.from_bytes(eth[12:14], "big")
        print(
            f"[{ts}] packet  {length} bytes on ifindex {ifindex} queue {queue}, "
            f"EtherType {ethertype:#06x}"
        )


events = obj.maps["events"]
events.open_ring_buffer(on_event)
print(f"consumed {events.poll(timeout_ms=100)} events")
