//! Packet helpers: XDP head/meta/tail adjustment, `__sk_buff` byte access
//! and resizing, checksum fix-ups, the flow hash and redirects, with the
//! kernel's limits and return values.
//!
//! The packet lives in the run's buffer ([`Packet::buf`], `cap` usable
//! bytes); helpers that move its bounds update [`RunState::packet`], the
//! context's hidden pointers and the engine's primary region together, so
//! the program's next `ctx->data` load and its next packet access agree.
//!
//! Model of the test-run `sk_buff` (what the kernel's `BPF_PROG_TEST_RUN`
//! builds): all data linear, `ip_summed = CHECKSUM_NONE`, the MAC header at
//! the frame start and the network header 14 bytes (an Ethernet header)
//! after it.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use crate::helpers::{HelperError, HelperMemory};
use crate::maps::MapType;
use crate::progtype::ProgType;
use crate::runtime::context::{Packet, SKB_LAYOUT};
use crate::runtime::{Environment, RunState};

use super::{errno, fault, run_state, HelperFn};

pub(super) const HELPERS: &[(u32, HelperFn)] = &[
    (9, skb_store_bytes),
    (10, l3_csum_replace),
    (11, l4_csum_replace),
    (18, skb_vlan_push),
    (19, skb_vlan_pop),
    (23, redirect),
    (26, skb_load_bytes),
    (28, csum_diff),
    (31, skb_change_proto),
    (32, skb_change_type),
    (34, get_hash_recalc),
    (38, skb_change_tail),
    (39, skb_pull_data),
    (40, csum_update),
    (41, set_hash_invalid),
    (43, skb_change_head),
    (44, xdp_adjust_head),
    (48, set_hash),
    (50, skb_adjust_room),
    (51, redirect_map),
    (54, xdp_adjust_meta),
    (65, xdp_adjust_tail),
    (68, skb_load_bytes_relative),
    (152, redirect_neigh),
    (155, redirect_peer),
    (188, xdp_get_buff_len),
    (189, xdp_load_bytes),
    (190, xdp_store_bytes),
];

const EACCES: i32 = 13;
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ENOMEM: i32 = 12;
/// The kernel's internal `ENOTSUPP`, which helpers do return.
const ENOTSUPP: i32 = 524;

/// `ETH_HLEN`.
pub const ETH_HLEN: u64 = 14;
/// Largest `__sk_buff` length the resize helpers produce (the kernel's
/// `BPF_SKB_MAX_LEN`, `SKB_MAX_ALLOC` with 4 KiB pages).
pub const BPF_SKB_MAX_LEN: u64 = 16064;
/// Most bytes of XDP metadata (`xdp_metalen_invalid`).
pub const XDP_MAX_META: u64 = 32;

pub const BPF_F_RECOMPUTE_CSUM: u64 = 1;
pub const BPF_F_INVALIDATE_HASH: u64 = 2;
pub const BPF_F_HDR_FIELD_MASK: u64 = 0xf;
pub const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
pub const BPF_F_MARK_MANGLED_0: u64 = 1 << 5;
pub const BPF_F_MARK_ENFORCE: u64 = 1 << 6;
pub const BPF_F_IPV6: u64 = 1 << 7;
pub const BPF_F_INGRESS: u64 = 1;
pub const BPF_F_BROADCAST: u64 = 1 << 3;
pub const BPF_F_EXCLUDE_INGRESS: u64 = 1 << 4;
pub const BPF_HDR_START_MAC: u64 = 0;
pub const BPF_HDR_START_NET: u64 = 1;

pub const XDP_ABORTED: u64 = 0;
pub const XDP_REDIRECT: u64 = 4;
pub const TC_ACT_SHOT: u64 = 2;
pub const TC_ACT_REDIRECT: u64 = 7;

/// `__sk_buff` offsets the helpers maintain.
const SKB_LEN: usize = 0;
const SKB_PKT_TYPE: usize = 4;
const SKB_PROTOCOL: usize = 16;
const SKB_VLAN_PRESENT: usize = 20;
const SKB_VLAN_TCI: usize = 24;
const SKB_VLAN_PROTO: usize = 28;
const SKB_HASH: usize = 68;

/// `VLAN_HLEN`.
const VLAN_HLEN: u64 = 4;

/// The run's state and packet, for a helper called with the context in r1.
fn packet_of<'m>(
    mem: &HelperMemory<'m>,
    ctx: u64,
    helper: &str,
    xdp: bool,
) -> Result<(&'m mut RunState, Packet), HelperError> {
    let state = run_state(mem).ok_or_else(|| {
        fault(format!(
            "{helper} needs a packet program run on a packet (this run has no context)"
        ))
    })?;
    let t = state.prog_type;
    let Some(p) = state.packet else {
        return Err(fault(format!(
            "{helper}: this {t} program runs without a packet"
        )));
    };
    let kind_ok = if xdp {
        t == ProgType::Xdp
    } else {
        t != ProgType::Xdp && p.layout == SKB_LAYOUT
    };
    if !kind_ok {
        let wanted = if xdp { "an XDP" } else { "an __sk_buff" };
        return Err(fault(format!(
            "{helper} is {wanted} helper; this is a {t} program"
        )));
    }
    if ctx != state.ctx {
        return Err(fault(format!(
            "{helper}: r1 (0x{ctx:x}) is not the program's context (0x{:x})",
            state.ctx
        )));
    }
    Ok((state, p))
}

/// Publishes moved packet bounds: the run state, the context's pointers
/// (and `__sk_buff.len`), and the engine's primary region.
fn commit(mem: &mut HelperMemory<'_>, state: &mut RunState, p: Packet) {
    state.packet = Some(p);
    // SAFETY: state.ctx is the live run-time context of p's layout.
    unsafe { p.store_pointers(state.ctx) };
    if p.layout == SKB_LAYOUT {
        store_ctx_u32(state, SKB_LEN, p.len() as u32);
    }
    mem.set_input(p.data_meta, p.data_end - p.data_meta);
}

fn load_ctx_u32(state: &RunState, off: usize) -> u32 {
    // SAFETY: `off` is inside the public __sk_buff of the live context.
    unsafe { ((state.ctx as *const u8).add(off) as *const u32).read_unaligned() }
}

fn store_ctx_u32(state: &RunState, off: usize, v: u32) {
    // SAFETY: `off` is inside the public __sk_buff of the live context.
    unsafe { ((state.ctx as *mut u8).add(off) as *mut u32).write_unaligned(v) };
}

/// The frame's start (`skb_mac_header`): programs attached at L2 see it at
/// `data`; socket and lwt programs see data from the network header.
fn mac_header(state: &RunState, p: &Packet) -> u64 {
    match state.prog_type {
        ProgType::SchedCls | ProgType::SchedAct => p.data,
        _ => p.data.saturating_sub(ETH_HLEN).max(p.buf),
    }
}

/// `len` bytes of the packet buffer at `addr` (inside `[buf, buf+cap)`,
/// checked by callers).
fn read_packet(addr: u64, len: u64) -> Vec<u8> {
    // SAFETY: callers keep [addr, addr+len) inside the run's buffer.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }.to_vec()
}

fn write_packet(addr: u64, bytes: &[u8]) {
    // SAFETY: callers keep the range inside the run's buffer; `bytes` is a
    // copy, never a view of the packet itself.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
}

fn zero_packet(addr: u64, len: u64) {
    // SAFETY: as for write_packet.
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0, len as usize) };
}

/// The 32-bit signed `int` argument in a register.
fn int_arg(v: u64) -> i64 {
    v as u32 as i32 as i64
}

fn xdp_adjust_head(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_xdp_adjust_head", true)?;
    let offset = int_arg(a[1]);
    let metalen = p.data - p.data_meta;
    let data = p.data as i64 + offset;
    if data < (p.buf + metalen) as i64 || data > p.data_end as i64 - ETH_HLEN as i64 {
        return Ok(errno(EINVAL));
    }
    let meta = (p.data_meta as i64 + offset) as u64;
    if metalen > 0 {
        // SAFETY: both ranges lie inside the buffer (checked above).
        unsafe { std::ptr::copy(p.data_meta as *const u8, meta as *mut u8, metalen as usize) };
    }
    p.data_meta = meta;
    p.data = data as u64;
    commit(mem, state, p);
    Ok(0)
}

fn xdp_adjust_meta(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_xdp_adjust_meta", true)?;
    let meta = p.data_meta as i64 + int_arg(a[1]);
    if meta < p.buf as i64 || meta > p.data as i64 {
        return Ok(errno(EINVAL));
    }
    let metalen = p.data - meta as u64;
    if !metalen.is_multiple_of(4) || metalen > XDP_MAX_META {
        return Ok(errno(EACCES));
    }
    p.data_meta = meta as u64;
    commit(mem, state, p);
    Ok(0)
}

fn xdp_adjust_tail(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_xdp_adjust_tail", true)?;
    let offset = int_arg(a[1]);
    let end = p.data_end as i64 + offset;
    if end > (p.buf + p.cap) as i64 || end < (p.data + ETH_HLEN) as i64 {
        return Ok(errno(EINVAL));
    }
    if offset > 0 {
        // The grown tail must not show stale bytes.
        zero_packet(p.data_end, offset as u64);
    }
    p.data_end = end as u64;
    commit(mem, state, p);
    Ok(0)
}

/// The destination (r3) of the load helpers: `len` writable bytes.
fn load_destination(
    mem: &mut HelperMemory<'_>,
    to: u64,
    len: u64,
    helper: &str,
) -> Result<(), HelperError> {
    mem.slice_mut(to, len).map(|_| ()).map_err(|_| {
        fault(format!(
            "{helper}: r3 (0x{to:x}) is not {len} writable bytes of the program (r4 = {len})"
        ))
    })
}

/// Copies `len` packet bytes from `from` into the program's `to`, or zeroes
/// `to` and returns `-EFAULT` when `from` is `None` (out of the packet).
fn load_into(
    mem: &mut HelperMemory<'_>,
    to: u64,
    len: u64,
    from: Option<u64>,
) -> Result<u64, HelperError> {
    let bytes = from.map(|f| read_packet(f, len));
    let out = mem.slice_mut(to, len)?;
    Ok(match bytes {
        Some(b) => {
            out.copy_from_slice(&b);
            0
        }
        None => {
            out.fill(0);
            errno(EFAULT)
        }
    })
}

/// `bpf_skb_load_bytes(skb, offset, to, len)`.
fn skb_load_bytes(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_skb_load_bytes";
    let (_, p) = packet_of(mem, a[0], helper, false)?;
    let (offset, to, len) = (a[1] as u32 as u64, a[2], a[3] as u32 as u64);
    load_destination(mem, to, len, helper)?;
    let inside = offset <= i32::MAX as u64 && offset + len <= p.len();
    load_into(mem, to, len, inside.then_some(p.data + offset))
}

/// `bpf_skb_load_bytes_relative(skb, offset, to, len, start_header)`.
fn skb_load_bytes_relative(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_skb_load_bytes_relative";
    let (state, p) = packet_of(mem, a[0], helper, false)?;
    let (offset, to, len) = (a[1] as u32 as u64, a[2], a[3] as u32 as u64);
    load_destination(mem, to, len, helper)?;
    let mac = mac_header(state, &p);
    let start = match a[4] {
        BPF_HDR_START_MAC => Some(mac),
        BPF_HDR_START_NET => Some(mac + ETH_HLEN),
        _ => None,
    };
    let from = start
        .filter(|_| offset <= 0xffff)
        .map(|s| s + offset)
        .filter(|&f| f + len <= p.data_end);
    load_into(mem, to, len, from)
}

/// `bpf_skb_store_bytes(skb, offset, from, len, flags)`.
fn skb_store_bytes(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_skb_store_bytes";
    let (state, p) = packet_of(mem, a[0], helper, false)?;
    let (offset, from, len, flags) = (a[1] as u32 as u64, a[2], a[3] as u32 as u64, a[4]);
    let bytes = mem
        .slice(from, len)
        .map_err(|_| {
            fault(format!(
                "{helper}: r3 (0x{from:x}) is not {len} readable bytes of the program (r4 = {len})"
            ))
        })?
        .to_vec();
    if flags & !(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) != 0 {
        return Ok(errno(EINVAL));
    }
    if offset > i32::MAX as u64 || offset + len > p.len() {
        return Ok(errno(EFAULT));
    }
    // CHECKSUM_NONE: there is no skb->csum for RECOMPUTE_CSUM to update.
    write_packet(p.data + offset, &bytes);
    if flags & BPF_F_INVALIDATE_HASH != 0 {
        store_ctx_u32(state, SKB_HASH, 0);
    }
    Ok(0)
}

/// `bpf_skb_pull_data(skb, len)`: all data is linear already; fails only
/// for more bytes than the packet has.
fn skb_pull_data(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (_, p) = packet_of(mem, a[0], "bpf_skb_pull_data", false)?;
    Ok(if a[1] as u32 as u64 > p.len() {
        errno(ENOMEM)
    } else {
        0
    })
}

/// `bpf_skb_change_tail(skb, new_len, flags)`: grows (zero-filled) or trims
/// the packet; never below the network header.
fn skb_change_tail(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_skb_change_tail", false)?;
    let new_len = a[1] as u32 as u64;
    let min_len = (mac_header(state, &p) + ETH_HLEN).saturating_sub(p.data);
    if a[2] != 0 || new_len > BPF_SKB_MAX_LEN || new_len < min_len {
        return Ok(errno(EINVAL));
    }
    let end = p.data + new_len;
    if end > p.buf + p.cap {
        // The kernel would reallocate; the run's buffer is fixed.
        return Ok(errno(ENOMEM));
    }
    if end > p.data_end {
        zero_packet(p.data_end, end - p.data_end);
    }
    p.data_end = end;
    commit(mem, state, p);
    Ok(0)
}

/// `bpf_skb_change_head(skb, head_room, flags)`: pushes `head_room` zero
/// bytes in front of the packet (the MAC header moves to the new start).
fn skb_change_head(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_skb_change_head", false)?;
    let room = a[1] as u32 as u64;
    let new_len = p.len() + room;
    if a[2] != 0 || new_len > BPF_SKB_MAX_LEN || new_len > u32::MAX as u64 {
        return Ok(errno(EINVAL));
    }
    if p.data - p.buf < room {
        return Ok(errno(ENOMEM));
    }
    p.data -= room;
    zero_packet(p.data, room);
    p.data_meta = p.data;
    commit(mem, state, p);
    Ok(0)
}

pub const BPF_ADJ_ROOM_NET: u64 = 0;
pub const BPF_ADJ_ROOM_MAC: u64 = 1;
pub const BPF_F_ADJ_ROOM_FIXED_GSO: u64 = 1 << 0;
pub const BPF_F_ADJ_ROOM_ENCAP_L3_IPV4: u64 = 1 << 1;
pub const BPF_F_ADJ_ROOM_ENCAP_L3_IPV6: u64 = 1 << 2;
pub const BPF_F_ADJ_ROOM_ENCAP_L4_GRE: u64 = 1 << 3;
pub const BPF_F_ADJ_ROOM_ENCAP_L4_UDP: u64 = 1 << 4;
pub const BPF_F_ADJ_ROOM_NO_CSUM_RESET: u64 = 1 << 5;
pub const BPF_F_ADJ_ROOM_ENCAP_L2_ETH: u64 = 1 << 6;
pub const BPF_F_ADJ_ROOM_DECAP_L3_IPV4: u64 = 1 << 7;
pub const BPF_F_ADJ_ROOM_DECAP_L3_IPV6: u64 = 1 << 8;
/// `BPF_F_ADJ_ROOM_ENCAP_L2(len)`: the inner L2 header length.
pub const BPF_F_ADJ_ROOM_ENCAP_L2_MASK: u64 = 0xff << 56;

/// `bpf_skb_net_base_len`: the fixed network header of the protocol.
fn net_base_len(protocol: u16) -> u64 {
    if protocol == be16(0x0800) {
        20
    } else if protocol == be16(0x86dd) {
        40
    } else {
        0
    }
}

/// `bpf_skb_adjust_room(skb, len_diff, mode, flags)`: inserts `len_diff`
/// zero bytes (or removes `-len_diff` bytes) after the MAC header
/// (`BPF_ADJ_ROOM_MAC`) or after the fixed network header
/// (`BPF_ADJ_ROOM_NET`) of an IPv4/IPv6 packet. Growing with the
/// encapsulation flags (which set up tunnel offload metadata the test-run
/// packet does not have) is `-ENOTSUPP`; the decapsulation flags set the
/// new protocol as in the kernel.
fn skb_adjust_room(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_skb_adjust_room", false)?;
    let (len_diff, mode, flags) = (int_arg(a[1]), a[2] as u32 as u64, a[3]);
    let encap = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
        | BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
        | BPF_F_ADJ_ROOM_ENCAP_L4_GRE
        | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
        | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
        | BPF_F_ADJ_ROOM_ENCAP_L2_MASK;
    let decap = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
    let known = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_NO_CSUM_RESET | encap | decap;
    if flags & !known != 0 {
        return Ok(errno(EINVAL));
    }
    let diff = len_diff.unsigned_abs();
    if diff > 0xfff {
        return Ok(errno(EFAULT));
    }
    let protocol = load_ctx_u32(state, SKB_PROTOCOL) as u16;
    let base = net_base_len(protocol);
    if base == 0 || p.data != mac_header(state, &p) {
        return Ok(errno(ENOTSUPP));
    }
    let off = match mode {
        BPF_ADJ_ROOM_NET => ETH_HLEN + base,
        BPF_ADJ_ROOM_MAC => ETH_HLEN,
        _ => return Ok(errno(ENOTSUPP)),
    };
    let shrink = len_diff < 0;
    let mut len_min = base;
    if flags & decap != 0 {
        if !shrink {
            return Ok(errno(EINVAL));
        }
        len_min = match flags & decap {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV4 => 20,
            BPF_F_ADJ_ROOM_DECAP_L3_IPV6 => 40,
            _ => return Ok(errno(EINVAL)),
        };
    }
    let len_cur = p.len() - ETH_HLEN.min(p.len());
    if shrink && (diff >= len_cur || len_cur - diff < len_min) {
        return Ok(errno(ENOTSUPP));
    }
    if !shrink && p.len() + diff > BPF_SKB_MAX_LEN {
        return Ok(errno(ENOTSUPP));
    }
    if !shrink && flags & encap != 0 {
        return Ok(errno(ENOTSUPP));
    }
    let head = read_packet(p.data, off.min(p.len()));
    if shrink {
        if off + diff > p.len() {
            return Ok(errno(ENOMEM));
        }
        p.data += diff;
        write_packet(p.data, &head);
        match flags & decap {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV4 => store_ctx_u32(state, SKB_PROTOCOL, be16(0x0800) as u32),
            BPF_F_ADJ_ROOM_DECAP_L3_IPV6 => store_ctx_u32(state, SKB_PROTOCOL, be16(0x86dd) as u32),
            _ => {}
        }
    } else {
        if p.data - p.buf < diff || off > p.len() {
            return Ok(errno(ENOMEM));
        }
        p.data -= diff;
        write_packet(p.data, &head);
        zero_packet(p.data + off, diff);
    }
    p.data_meta = p.data;
    commit(mem, state, p);
    Ok(0)
}

/// `bpf_skb_change_proto(skb, proto, flags)`: IPv4 <-> IPv6 translation
/// room: 20 zero bytes inserted after the MAC header (4 to 6) or the 20
/// bytes there removed (6 to 4); the program writes the new headers. The
/// protocol changes and the flow hash is cleared; other pairs are
/// `-ENOTSUPP`.
fn skb_change_proto(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_skb_change_proto", false)?;
    let (to, flags) = (a[1] as u16, a[2]);
    if flags != 0 {
        return Ok(errno(EINVAL));
    }
    const GROWTH: u64 = 40 - 20;
    let from = load_ctx_u32(state, SKB_PROTOCOL) as u16;
    let (ipv4, ipv6) = (be16(0x0800), be16(0x86dd));
    let grow = match (from, to) {
        (f, t) if f == ipv4 && t == ipv6 => true,
        (f, t) if f == ipv6 && t == ipv4 => false,
        _ => return Ok(errno(ENOTSUPP)),
    };
    if p.data != mac_header(state, &p) || p.len() < ETH_HLEN {
        return Ok(errno(ENOTSUPP));
    }
    let mac = read_packet(p.data, ETH_HLEN);
    if grow {
        if p.data - p.buf < GROWTH {
            return Ok(errno(ENOMEM));
        }
        p.data -= GROWTH;
        write_packet(p.data, &mac);
        zero_packet(p.data + ETH_HLEN, GROWTH);
    } else {
        if ETH_HLEN + GROWTH > p.len() {
            return Ok(errno(ENOMEM));
        }
        p.data += GROWTH;
        write_packet(p.data, &mac);
    }
    p.data_meta = p.data;
    store_ctx_u32(state, SKB_PROTOCOL, to as u32);
    store_ctx_u32(state, SKB_HASH, 0);
    commit(mem, state, p);
    Ok(0)
}

/// A big-endian ethertype as it sits in memory (and in `__sk_buff`).
fn be16(v: u16) -> u16 {
    v.to_be()
}

fn is_vlan_proto(proto: u16) -> bool {
    proto == be16(0x8100) || proto == be16(0x88a8)
}

/// `__skb_vlan_pop`: takes the tag after the MAC addresses out of the
/// packet; the inner ethertype becomes the protocol. Returns the tag's TCI
/// or the errno.
fn pop_packet_tag(state: &RunState, p: &mut Packet) -> Result<u16, i32> {
    if p.data != mac_header(state, p) {
        return Err(EINVAL);
    }
    if p.len() < ETH_HLEN + VLAN_HLEN {
        return Err(ENOMEM);
    }
    let tag = read_packet(p.data + ETH_HLEN - 2, 6);
    let tci = u16::from_be_bytes([tag[2], tag[3]]);
    let inner = u16::from_ne_bytes([tag[4], tag[5]]);
    let macs = read_packet(p.data, 12);
    p.data += VLAN_HLEN;
    p.data_meta = p.data;
    write_packet(p.data, &macs);
    // vlan_set_encap_proto: below 0x600 the field is a length, not a type.
    let protocol = if u16::from_be(inner) >= 0x600 {
        inner
    } else if read_packet(p.data + ETH_HLEN, 2.min(p.len() - ETH_HLEN)) == [0xff, 0xff] {
        be16(0x0001) // ETH_P_802_3
    } else {
        be16(0x0004) // ETH_P_802_2
    };
    store_ctx_u32(state, SKB_PROTOCOL, protocol as u32);
    Ok(tci)
}

fn put_hwaccel_tag(state: &RunState, proto: u16, tci: u16) {
    store_ctx_u32(state, SKB_VLAN_PRESENT, 1);
    store_ctx_u32(state, SKB_VLAN_TCI, tci as u32);
    store_ctx_u32(state, SKB_VLAN_PROTO, proto as u32);
}

/// `bpf_skb_vlan_push(skb, vlan_proto, vlan_tci)`: the new tag becomes the
/// out-of-band (hardware accelerated) tag, as in the kernel; a tag already
/// there moves into the packet first. Protocols other than 802.1Q and
/// 802.1ad are taken as 802.1Q.
fn skb_vlan_push(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_skb_vlan_push", false)?;
    let (mut proto, tci) = (a[1] as u16, a[2] as u16);
    if !is_vlan_proto(proto) {
        proto = be16(0x8100);
    }
    if load_ctx_u32(state, SKB_VLAN_PRESENT) != 0 {
        if p.data != mac_header(state, &p) {
            return Ok(errno(EINVAL));
        }
        if p.data - p.buf < VLAN_HLEN {
            return Ok(errno(ENOMEM));
        }
        let old_proto = load_ctx_u32(state, SKB_VLAN_PROTO) as u16;
        let old_tci = load_ctx_u32(state, SKB_VLAN_TCI) as u16;
        let macs = read_packet(p.data, 12);
        p.data -= VLAN_HLEN;
        p.data_meta = p.data;
        write_packet(p.data, &macs);
        let mut tag = old_proto.to_ne_bytes().to_vec();
        tag.extend(old_tci.to_be_bytes());
        write_packet(p.data + 12, &tag);
        store_ctx_u32(state, SKB_PROTOCOL, old_proto as u32);
        commit(mem, state, p);
    }
    put_hwaccel_tag(state, proto, tci);
    Ok(0)
}

/// `bpf_skb_vlan_pop(skb)`: drops the out-of-band tag, or the packet's
/// outer tag; a further tag in the packet then becomes the out-of-band
/// one.
fn skb_vlan_pop(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, mut p) = packet_of(mem, a[0], "bpf_skb_vlan_pop", false)?;
    let before = p.data;
    let mut result = Ok(());
    if load_ctx_u32(state, SKB_VLAN_PRESENT) != 0 {
        for off in [SKB_VLAN_PRESENT, SKB_VLAN_TCI, SKB_VLAN_PROTO] {
            store_ctx_u32(state, off, 0);
        }
    } else if is_vlan_proto(load_ctx_u32(state, SKB_PROTOCOL) as u16) {
        result = pop_packet_tag(state, &mut p).map(|_| ());
    } else {
        return Ok(0);
    }
    let protocol = load_ctx_u32(state, SKB_PROTOCOL) as u16;
    if result.is_ok() && is_vlan_proto(protocol) {
        result = pop_packet_tag(state, &mut p).map(|tci| put_hwaccel_tag(state, protocol, tci));
    }
    if p.data != before {
        commit(mem, state, p);
    }
    Ok(match result {
        Ok(()) => 0,
        Err(e) => errno(e),
    })
}

/// 32-bit ones' complement addition (`csum_add`).
fn csum_add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(carry as u32)
}

fn csum_sub(a: u32, b: u32) -> u32 {
    csum_add(a, !b)
}

/// Folds a 32-bit sum to the 16-bit checksum (`csum_fold`, inverted).
fn csum_fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// The 16-bit checksum field at `offset` from `data` for the replace
/// helpers: `Err(errno)` if misplaced.
fn csum_field(p: &Packet, offset: u64) -> Result<u64, i32> {
    if offset > 0xffff || offset & 1 != 0 || offset + 2 > p.len() {
        return Err(EFAULT);
    }
    Ok(p.data + offset)
}

fn read_sum(addr: u64) -> u16 {
    let b = read_packet(addr, 2);
    u16::from_ne_bytes([b[0], b[1]])
}

fn write_sum(addr: u64, v: u16) {
    write_packet(addr, &v.to_ne_bytes());
}

/// `csum_replace4`: the checksum after a 32-bit field changed from `from`
/// to `to` (both as they sit in memory).
fn replace4(sum: u16, from: u32, to: u32) -> u16 {
    let tmp = csum_sub(!(sum as u32), from);
    csum_fold(csum_add(tmp, to))
}

/// `csum_replace2` (16-bit ones' complement arithmetic).
fn replace2(sum: u16, from: u16, to: u16) -> u16 {
    let add16 = |a: u16, b: u16| {
        let (s, c) = a.overflowing_add(b);
        s.wrapping_add(c as u16)
    };
    !add16(add16(!sum, !from), to)
}

/// `csum_replace_by_diff`.
fn replace_by_diff(sum: u16, diff: u32) -> u16 {
    csum_fold(csum_add(diff, !(sum as u32)))
}

/// `bpf_l3_csum_replace(skb, offset, from, to, flags)`.
fn l3_csum_replace(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (_, p) = packet_of(mem, a[0], "bpf_l3_csum_replace", false)?;
    let (from, to, flags) = (a[2], a[3], a[4]);
    if flags & !BPF_F_HDR_FIELD_MASK != 0 {
        return Ok(errno(EINVAL));
    }
    let field = match csum_field(&p, a[1] as u32 as u64) {
        Ok(f) => f,
        Err(e) => return Ok(errno(e)),
    };
    let sum = read_sum(field);
    let new = match flags & BPF_F_HDR_FIELD_MASK {
        0 if from != 0 => return Ok(errno(EINVAL)),
        0 => replace_by_diff(sum, to as u32),
        2 => replace2(sum, from as u16, to as u16),
        4 => replace4(sum, from as u32, to as u32),
        _ => return Ok(errno(EINVAL)),
    };
    write_sum(field, new);
    Ok(0)
}

/// `bpf_l4_csum_replace(skb, offset, from, to, flags)`. With CHECKSUM_NONE
/// the field is updated the same way with or without `BPF_F_PSEUDO_HDR`.
fn l4_csum_replace(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (_, p) = packet_of(mem, a[0], "bpf_l4_csum_replace", false)?;
    let (from, to, flags) = (a[2], a[3], a[4]);
    let known = BPF_F_MARK_MANGLED_0
        | BPF_F_MARK_ENFORCE
        | BPF_F_PSEUDO_HDR
        | BPF_F_IPV6
        | BPF_F_HDR_FIELD_MASK;
    if flags & !known != 0 {
        return Ok(errno(EINVAL));
    }
    let field = match csum_field(&p, a[1] as u32 as u64) {
        Ok(f) => f,
        Err(e) => return Ok(errno(e)),
    };
    let mangled_0 = flags & BPF_F_MARK_MANGLED_0 != 0;
    let sum = read_sum(field);
    // A zero UDP checksum means "none": leave it unless told otherwise.
    if mangled_0 && flags & BPF_F_MARK_ENFORCE == 0 && sum == 0 {
        return Ok(0);
    }
    let mut new = match flags & BPF_F_HDR_FIELD_MASK {
        0 if from != 0 => return Ok(errno(EINVAL)),
        0 => replace_by_diff(sum, to as u32),
        2 => replace4(sum, from as u16 as u32, to as u16 as u32),
        4 => replace4(sum, from as u32, to as u32),
        _ => return Ok(errno(EINVAL)),
    };
    if mangled_0 && new == 0 {
        new = 0xffff; // CSUM_MANGLED_0
    }
    write_sum(field, new);
    Ok(0)
}

/// `bpf_csum_diff(from, from_size, to, to_size, seed)`: the checksum of
/// `to` minus that of `from`, plus `seed` (unfolded 32 bits).
fn csum_diff(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let helper = "bpf_csum_diff";
    let (from, from_size, to, to_size) = (a[0], a[1] as u32 as u64, a[2], a[3] as u32 as u64);
    if (from_size | to_size) & 3 != 0 || from_size + to_size > 512 {
        return Ok(errno(EINVAL));
    }
    let read = |addr: u64, size: u64, regs: &str| -> Result<&[u8], HelperError> {
        if size == 0 {
            return Ok(&[]);
        }
        mem.slice(addr, size).map_err(|_| {
            fault(format!(
                "{helper}: {regs} (0x{addr:x}, {size} bytes) is not readable memory of the program"
            ))
        })
    };
    let removed = read(from, from_size, "r1 (size r2)")?;
    let added = read(to, to_size, "r3 (size r4)")?;
    // The kernel sums the complemented `from` words and the `to` words.
    let sum = word_sum(removed, true) + word_sum(added, false) + a[4] as u32 as u64;
    Ok(fold64(sum) as u64)
}

/// The sum of the 4-byte words of `bytes` as the CPU loads them
/// (complemented when `invert`).
fn word_sum(bytes: &[u8], invert: bool) -> u64 {
    bytes
        .chunks_exact(4)
        .map(|w| {
            let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
            (if invert { !v } else { v }) as u64
        })
        .sum()
}

/// A 64-bit sum folded to 32 bits with end-around carries.
fn fold64(sum: u64) -> u32 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    s as u32
}

/// `bpf_csum_update(skb, csum)`: only meaningful for CHECKSUM_COMPLETE
/// packets; the test-run packet is CHECKSUM_NONE, so `-ENOTSUPP` as there.
fn csum_update(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    packet_of(mem, a[0], "bpf_csum_update", false)?;
    Ok(errno(ENOTSUPP))
}

/// Flow fields of a packet: ethertype, L4 protocol, addresses, ports.
#[derive(Default, PartialEq, Eq, Debug)]
struct FlowKeys {
    n_proto: u16,
    ip_proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
}

/// Dissects Ethernet (with up to two VLAN tags), IPv4 and IPv6, and the
/// ports of TCP, UDP, UDP-Lite, SCTP and DCCP (not of IPv4 fragments).
fn dissect(frame: &[u8]) -> FlowKeys {
    let be16 = |b: &[u8], o: usize| b.get(o..o + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    let mut k = FlowKeys::default();
    let mut off = 12;
    let Some(mut proto) = be16(frame, off) else {
        return k;
    };
    for _ in 0..2 {
        if proto != 0x8100 && proto != 0x88a8 {
            break;
        }
        off += 4;
        match be16(frame, off) {
            Some(p) => proto = p,
            None => return k,
        }
    }
    k.n_proto = proto;
    let l3 = off + 2;
    let l4 = match proto {
        0x0800 => {
            let Some(ip) = frame.get(l3..l3 + 20) else {
                return k;
            };
            k.ip_proto = ip[9];
            k.src[..4].copy_from_slice(&ip[12..16]);
            k.dst[..4].copy_from_slice(&ip[16..20]);
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if frag != 0 {
                return k;
            }
            l3 + (ip[0] & 0xf) as usize * 4
        }
        0x86dd => {
            let Some(ip) = frame.get(l3..l3 + 40) else {
                return k;
            };
            k.ip_proto = ip[6];
            k.src.copy_from_slice(&ip[8..24]);
            k.dst.copy_from_slice(&ip[24..40]);
            l3 + 40
        }
        _ => return k,
    };
    if matches!(k.ip_proto, 6 | 17 | 33 | 132 | 136) {
        if let (Some(s), Some(d)) = (be16(frame, l4), be16(frame, l4 + 2)) {
            k.sport = s;
            k.dport = d;
        }
    }
    k
}

/// The flow hash the kernel's `skb_get_hash` computes in spirit: the same
/// for both directions of a flow (addresses and ports ordered first),
/// keyed by a per-process random seed (the kernel's is per boot), never 0.
fn flow_hash(frame: &[u8]) -> u32 {
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut k = dissect(frame);
    if (k.dst, k.dport) < (k.src, k.sport) {
        std::mem::swap(&mut k.src, &mut k.dst);
        std::mem::swap(&mut k.sport, &mut k.dport);
    }
    let mut h = SEED.get_or_init(Default::default).build_hasher();
    h.write_u16(k.n_proto);
    h.write_u8(k.ip_proto);
    h.write(&k.src);
    h.write(&k.dst);
    h.write_u16(k.sport);
    h.write_u16(k.dport);
    let v = h.finish();
    match (v ^ (v >> 32)) as u32 {
        0 => 1,
        x => x,
    }
}

/// `bpf_get_hash_recalc(skb)`: the flow hash, also stored in
/// `__sk_buff.hash` as the kernel stores it in `skb->hash`.
fn get_hash_recalc(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, p) = packet_of(mem, a[0], "bpf_get_hash_recalc", false)?;
    let mac = mac_header(state, &p);
    let hash = flow_hash(&read_packet(mac, p.data_end - mac));
    store_ctx_u32(state, SKB_HASH, hash);
    Ok(hash as u64)
}

/// `bpf_set_hash(skb, hash)`: sets `__sk_buff.hash`.
fn set_hash(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let (state, _) = packet_of(mem, a[0], "bpf_set_hash", false)?;
    store_ctx_u32(state, SKB_HASH, a[1] as u32);
    Ok(0)
}

/// `bpf_set_hash_invalid(skb)`: clears `__sk_buff.hash`.
fn set_hash_invalid(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, _) = packet_of(mem, a[0], "bpf_set_hash_invalid", false)?;
    store_ctx_u32(state, SKB_HASH, 0);
    Ok(0)
}

/// `bpf_skb_change_type(skb, type)`: only between the host, broadcast,
/// multicast and other-host packet types (0..=3), as in the kernel.
fn skb_change_type(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (state, _) = packet_of(mem, a[0], "bpf_skb_change_type", false)?;
    const PACKET_OTHERHOST: u64 = 3;
    let current = load_ctx_u32(state, SKB_PKT_TYPE) as u64;
    let wanted = a[1] as u32 as u64;
    if current > PACKET_OTHERHOST || wanted > PACKET_OTHERHOST {
        return Ok(errno(EINVAL));
    }
    store_ctx_u32(state, SKB_PKT_TYPE, wanted as u32);
    Ok(0)
}

/// `bpf_xdp_get_buff_len(ctx)`: the packet's length (no fragments here).
fn xdp_get_buff_len(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let (_, p) = packet_of(mem, a[0], "bpf_xdp_get_buff_len", true)?;
    Ok(p.len())
}

/// Where `bpf_xdp_{load,store}_bytes` access the packet: `-EFAULT` for
/// offsets or lengths past 16 bits, `-EINVAL` past the packet's end.
fn xdp_range(p: &Packet, offset: u64, len: u64) -> Result<u64, i32> {
    if offset > 0xffff || len > 0xffff {
        return Err(EFAULT);
    }
    if offset + len > p.len() {
        return Err(EINVAL);
    }
    Ok(p.data + offset)
}

/// `bpf_xdp_load_bytes(ctx, offset, buf, len)`.
fn xdp_load_bytes(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_xdp_load_bytes";
    let (_, p) = packet_of(mem, a[0], helper, true)?;
    let (offset, buf, len) = (a[1] as u32 as u64, a[2], a[3] as u32 as u64);
    load_destination(mem, buf, len, helper)?;
    let from = match xdp_range(&p, offset, len) {
        Ok(f) => f,
        Err(e) => return Ok(errno(e)),
    };
    let bytes = read_packet(from, len);
    mem.slice_mut(buf, len)?.copy_from_slice(&bytes);
    Ok(0)
}

/// `bpf_xdp_store_bytes(ctx, offset, buf, len)`.
fn xdp_store_bytes(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_xdp_store_bytes";
    let (_, p) = packet_of(mem, a[0], helper, true)?;
    let (offset, buf, len) = (a[1] as u32 as u64, a[2], a[3] as u32 as u64);
    let bytes = mem
        .slice(buf, len)
        .map_err(|_| {
            fault(format!(
                "{helper}: r3 (0x{buf:x}) is not {len} readable bytes of the program (r4 = {len})"
            ))
        })?
        .to_vec();
    match xdp_range(&p, offset, len) {
        Ok(to) => {
            write_packet(to, &bytes);
            Ok(0)
        }
        Err(e) => Ok(errno(e)),
    }
}

/// `bpf_redirect(ifindex, flags)`: XDP_REDIRECT for XDP programs (any flag
/// aborts), TC_ACT_REDIRECT for the others (flags other than
/// `BPF_F_INGRESS` drop the packet).
fn redirect(_: &Environment, mem: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let state = run_state(mem)
        .ok_or_else(|| fault("bpf_redirect needs a packet program run on a packet"))?;
    let (ifindex, flags) = (a[0] as u32 as u64, a[1]);
    if state.prog_type == ProgType::Xdp {
        if flags != 0 {
            return Ok(XDP_ABORTED);
        }
        state.redirect = Some(ifindex);
        return Ok(XDP_REDIRECT);
    }
    if flags & !BPF_F_INGRESS != 0 {
        return Ok(TC_ACT_SHOT);
    }
    state.redirect = Some(ifindex);
    Ok(TC_ACT_REDIRECT)
}

/// The run state of a tc program for the redirect variants only tc has.
fn tc_state<'m>(mem: &HelperMemory<'m>, helper: &str) -> Result<&'m mut RunState, HelperError> {
    let state = run_state(mem)
        .ok_or_else(|| fault(format!("{helper} needs a tc program run on a packet")))?;
    if !matches!(state.prog_type, ProgType::SchedCls | ProgType::SchedAct) {
        return Err(fault(format!(
            "{helper} is a tc helper; this is a {} program",
            state.prog_type
        )));
    }
    Ok(state)
}

/// `bpf_redirect_neigh(ifindex, params, plen, flags)`: TC_ACT_REDIRECT with
/// the target recorded; a short `params` or any flag drops the packet.
fn redirect_neigh(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_redirect_neigh";
    let state = tc_state(mem, helper)?;
    // sizeof(struct bpf_redir_neigh): family and a 16-byte address.
    const PARAMS_SIZE: u64 = 20;
    let plen = a[2] as u32 as u64;
    if plen != 0 && mem.slice(a[1], plen).is_err() {
        return Err(fault(format!(
            "{helper}: r2 (0x{:x}) is not {plen} readable bytes of the program (r3 = {plen})",
            a[1]
        )));
    }
    if (plen != 0 && plen < PARAMS_SIZE) || a[3] != 0 {
        return Ok(TC_ACT_SHOT);
    }
    state.redirect = Some(a[0] as u32 as u64);
    Ok(TC_ACT_REDIRECT)
}

/// `bpf_redirect_peer(ifindex, flags)`: TC_ACT_REDIRECT with the target
/// recorded; any flag drops the packet.
fn redirect_peer(
    _: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let state = tc_state(mem, "bpf_redirect_peer")?;
    if a[1] != 0 {
        return Ok(TC_ACT_SHOT);
    }
    state.redirect = Some(a[0] as u32 as u64);
    Ok(TC_ACT_REDIRECT)
}

/// `bpf_redirect_map(map, key, flags)` for XDP: the target is the devmap
/// entry's ifindex, or the key itself for cpumaps (a CPU) and xskmaps (a
/// queue). A missing key returns the low two flag bits as the action;
/// `BPF_F_BROADCAST` (devmaps) records `u64::MAX`, "every device".
fn redirect_map(
    env: &Environment,
    mem: &mut HelperMemory<'_>,
    a: [u64; 5],
) -> Result<u64, HelperError> {
    let helper = "bpf_redirect_map";
    let state = run_state(mem)
        .ok_or_else(|| fault(format!("{helper} needs an XDP program run on a packet")))?;
    if state.prog_type != ProgType::Xdp {
        return Err(fault(format!(
            "{helper} is an XDP helper; this is a {} program",
            state.prog_type
        )));
    }
    let m = env
        .map(a[0])
        .ok_or_else(|| fault(format!("{helper}: r1 (0x{:x}) is not a map", a[0])))?;
    let devmap = matches!(m.map_type(), MapType::Devmap | MapType::DevmapHash);
    if !devmap && !matches!(m.map_type(), MapType::Cpumap | MapType::Xskmap) {
        return Err(fault(format!(
            "{helper}: map '{}' is a {}, not a devmap, devmap_hash, cpumap or xskmap",
            m.name(),
            m.map_type()
        )));
    }
    let action_mask = 3;
    let flag_mask = if devmap {
        BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS
    } else {
        0
    };
    let flags = a[2];
    if flags & !(action_mask | flag_mask) != 0 {
        return Ok(XDP_ABORTED);
    }
    if flags & BPF_F_BROADCAST != 0 {
        state.redirect = Some(u64::MAX);
        return Ok(XDP_REDIRECT);
    }
    let key = a[1] as u32;
    let Ok(value) = m.imp().lookup(&key.to_ne_bytes()) else {
        return Ok(flags & action_mask);
    };
    let target = if devmap {
        value
            .get(..4)
            .map_or(0, |v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
    } else {
        key
    };
    state.redirect = Some(target as u64);
    Ok(XDP_REDIRECT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_helpers_agree_with_a_full_recompute() {
        // An IPv4 header checksum, before and after one field changes.
        let mut hdr: [u16; 10] = [
            0x4500, 0x0073, 0x0000, 0x4000, 0x4011, 0, 0xc0a8, 0x0001, 0xc0a8, 0x00c7,
        ];
        let full = |h: &[u16; 10]| {
            let s: u32 = h.iter().map(|&w| w as u32).sum();
            let s = (s & 0xffff) + (s >> 16);
            !((s & 0xffff) + (s >> 16)) as u16
        };
        hdr[5] = full(&hdr);
        let old = hdr[8];
        hdr[8] = 0x0a00;
        let expect = {
            let mut h = hdr;
            h[5] = 0;
            full(&h)
        };
        assert_eq!(replace2(hdr[5], old, 0x0a00), expect);
        // The 32-bit form over the same change (both halves as one word).
        let from = (old as u32) << 16 | hdr[9] as u32;
        let to = 0x0a00u32 << 16 | hdr[9] as u32;
        assert_eq!(replace4(hdr[5], from, to), expect);
    }

    #[test]
    fn flow_hash_is_symmetric_and_tells_flows_apart() {
        let frame = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
            f.extend_from_slice(&s);
            f.extend_from_slice(&d);
            f.extend_from_slice(&sp.to_be_bytes());
            f.extend_from_slice(&dp.to_be_bytes());
            f.resize(f.len() + 16, 0);
            f
        };
        let a = frame([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80);
        let b = frame([10, 0, 0, 2], [10, 0, 0, 1], 80, 1234);
        let c = frame([10, 0, 0, 1], [10, 0, 0, 2], 1235, 80);
        assert_eq!(dissect(&a).sport, 1234);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        assert_ne!(flow_hash(&a), flow_hash(&c));
    }
}
