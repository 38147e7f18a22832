//! Program contexts: which bytes of the structure `r1` points at on entry a
//! program of each type may read or write, at what width, and what a load
//! yields (a scalar, a packet pointer, a socket pointer, ...).
//!
//! Offsets follow include/uapi/linux/bpf.h (and x86-64 `struct pt_regs`);
//! the access rules follow the kernel's `*_is_valid_access` callbacks for a
//! privileged loader. Rules the field model cannot express are approximated
//! towards rejecting, and listed where they occur:
//! - context writes must be of the field's full size (the kernel also allows
//!   narrow writes into `__sk_buff.cb[]`);
//! - array elements are separate fields, so 8-byte accesses spanning two
//!   elements (`cb[0..1]`, `user_ip6[0..1]`) are rejected;
//! - fields whose availability depends on the attach type (e.g.
//!   `bpf_sock_addr.user_ip4` vs `user_ip6`, `xdp_md.egress_ifindex`,
//!   `bpf_sockopt.retval`) are available to every attach type.

use crate::progtype::ProgType;

/// What a load from a context field yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtxFieldKind {
    /// A plain value.
    Scalar,
    /// `data`: the load yields PTR_TO_PACKET.
    PacketStart,
    /// `data_end`: PTR_TO_PACKET_END.
    PacketEnd,
    /// `data_meta`: PTR_TO_PACKET_META.
    PacketMeta,
    /// `__sk_buff.sk` and similar: PTR_TO_SOCK_COMMON_OR_NULL.
    SocketOrNull,
    /// A kernel pointer the program may only pass to helpers (treat as
    /// scalar-like but not dereferenceable).
    Pointer,
}

/// One readable field of a context structure.
#[derive(Clone, Copy, Debug)]
pub struct CtxField {
    pub name: &'static str,
    pub offset: u32,
    /// Natural size of the field.
    pub size: u32,
    pub kind: CtxFieldKind,
    /// Full-size writes allowed.
    pub writable: bool,
    /// 1/2-byte reads of the field allowed (Scalar fields only).
    pub narrow_reads: bool,
}

/// The context structure of one program type.
#[derive(Debug)]
pub struct ContextDesc {
    /// E.g. "struct xdp_md".
    pub c_type: &'static str,
    pub size: u32,
    /// Sorted by offset, non-overlapping (arrays such as cb[5] are one entry per element).
    pub fields: &'static [CtxField],
    /// Tracing contexts (pt_regs, tracepoint records, raw tracepoint args): any
    /// aligned read inside `size` yields a scalar, no writes.
    pub any_read: bool,
}

use CtxFieldKind::*;

/// A read-only field readable only at its full size.
const fn ro(name: &'static str, offset: u32, size: u32) -> CtxField {
    CtxField {
        name,
        offset,
        size,
        kind: Scalar,
        writable: false,
        narrow_reads: false,
    }
}

const fn ptr(name: &'static str, offset: u32, size: u32, kind: CtxFieldKind) -> CtxField {
    CtxField {
        kind,
        ..ro(name, offset, size)
    }
}

impl CtxField {
    const fn narrow(mut self) -> Self {
        self.narrow_reads = true;
        self
    }

    const fn rw(mut self) -> Self {
        self.writable = true;
        self
    }
}

// ---------------------------------------------------------------------------
// struct __sk_buff, one table per family of program types.

#[derive(Clone, Copy, PartialEq, Eq)]
enum SkbFlavor {
    SocketFilter,
    Tc,
    CgroupSkb,
    Lwt,
    SkSkb,
    FlowDissector,
}

/// Every `__sk_buff` field, as `bpf_skb_is_valid_access` treats it before the
/// per-type callbacks narrow it down: narrow reads for plain fields, exact
/// size for addresses, pointers and 64-bit fields.
const SKB_ALL: [CtxField; 43] = [
    ro("len", 0, 4).narrow(),
    ro("pkt_type", 4, 4).narrow(),
    ro("mark", 8, 4).narrow(),
    ro("queue_mapping", 12, 4).narrow(),
    ro("protocol", 16, 4).narrow(),
    ro("vlan_present", 20, 4).narrow(),
    ro("vlan_tci", 24, 4).narrow(),
    ro("vlan_proto", 28, 4).narrow(),
    ro("priority", 32, 4).narrow(),
    ro("ingress_ifindex", 36, 4).narrow(),
    ro("ifindex", 40, 4).narrow(),
    ro("tc_index", 44, 4).narrow(),
    ro("cb[0]", 48, 4).narrow(),
    ro("cb[1]", 52, 4).narrow(),
    ro("cb[2]", 56, 4).narrow(),
    ro("cb[3]", 60, 4).narrow(),
    ro("cb[4]", 64, 4).narrow(),
    ro("hash", 68, 4).narrow(),
    ro("tc_classid", 72, 4).narrow(),
    ptr("data", 76, 4, PacketStart),
    ptr("data_end", 80, 4, PacketEnd),
    ro("napi_id", 84, 4).narrow(),
    ro("family", 88, 4).narrow(),
    ro("remote_ip4", 92, 4),
    ro("local_ip4", 96, 4),
    ro("remote_ip6[0]", 100, 4),
    ro("remote_ip6[1]", 104, 4),
    ro("remote_ip6[2]", 108, 4),
    ro("remote_ip6[3]", 112, 4),
    ro("local_ip6[0]", 116, 4),
    ro("local_ip6[1]", 120, 4),
    ro("local_ip6[2]", 124, 4),
    ro("local_ip6[3]", 128, 4),
    ro("remote_port", 132, 4).narrow(),
    ro("local_port", 136, 4).narrow(),
    ptr("data_meta", 140, 4, PacketMeta),
    ptr("flow_keys", 144, 8, Pointer),
    ro("tstamp", 152, 8),
    ro("wire_len", 160, 4).narrow(),
    ro("gso_segs", 164, 4).narrow(),
    ptr("sk", 168, 8, SocketOrNull),
    ro("gso_size", 176, 4).narrow(),
    // tstamp_type (180) is only reachable through special tc rewrites; left out.
    ro("hwtstamp", 184, 8),
];

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The socket fields family..local_port (88..140).
const fn is_sock_field(f: &CtxField) -> bool {
    f.offset >= 88 && f.offset < 140
}

const fn is_cb(f: &CtxField) -> bool {
    f.offset >= 48 && f.offset < 68
}

/// The field as a program of `flavor` sees it, or `None` when that flavor may
/// not touch it at all (the per-type `*_is_valid_access` callbacks).
const fn skb_field(flavor: SkbFlavor, f: CtxField) -> Option<CtxField> {
    use SkbFlavor::*;
    let name = f.name;
    let packet = matches!(f.kind, PacketStart | PacketEnd | PacketMeta);
    // flow_keys is only for the flow dissector, which sees nothing else but packet bounds.
    if str_eq(name, "flow_keys") && !matches!(flavor, FlowDissector) {
        return None;
    }
    let denied = match flavor {
        SocketFilter => {
            str_eq(name, "tc_classid")
                || packet
                || is_sock_field(&f)
                || str_eq(name, "tstamp")
                || str_eq(name, "wire_len")
                || str_eq(name, "hwtstamp")
        }
        Tc => is_sock_field(&f),
        CgroupSkb => {
            str_eq(name, "tc_classid") || str_eq(name, "data_meta") || str_eq(name, "wire_len")
        }
        Lwt => {
            str_eq(name, "tc_classid")
                || is_sock_field(&f)
                || str_eq(name, "data_meta")
                || str_eq(name, "tstamp")
                || str_eq(name, "wire_len")
                || str_eq(name, "hwtstamp")
        }
        SkSkb => {
            str_eq(name, "tc_classid")
                || str_eq(name, "data_meta")
                || str_eq(name, "tstamp")
                || str_eq(name, "wire_len")
                || str_eq(name, "hwtstamp")
                || str_eq(name, "mark")
        }
        FlowDissector => {
            !(str_eq(name, "data") || str_eq(name, "data_end") || str_eq(name, "flow_keys"))
        }
    };
    if denied {
        return None;
    }
    let writable = match flavor {
        SocketFilter => is_cb(&f),
        Tc => {
            is_cb(&f)
                || str_eq(name, "mark")
                || str_eq(name, "tc_index")
                || str_eq(name, "priority")
                || str_eq(name, "tc_classid")
                || str_eq(name, "tstamp")
                || str_eq(name, "queue_mapping")
        }
        CgroupSkb => {
            is_cb(&f) || str_eq(name, "mark") || str_eq(name, "priority") || str_eq(name, "tstamp")
        }
        Lwt => is_cb(&f) || str_eq(name, "mark") || str_eq(name, "priority"),
        SkSkb => str_eq(name, "tc_index") || str_eq(name, "priority"),
        FlowDissector => false,
    };
    Some(CtxField { writable, ..f })
}

const fn skb_count(flavor: SkbFlavor) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < SKB_ALL.len() {
        if skb_field(flavor, SKB_ALL[i]).is_some() {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn skb_fields<const N: usize>(flavor: SkbFlavor) -> [CtxField; N] {
    let mut out = [ro("", 0, 0); N];
    let mut n = 0;
    let mut i = 0;
    while i < SKB_ALL.len() {
        if let Some(f) = skb_field(flavor, SKB_ALL[i]) {
            out[n] = f;
            n += 1;
        }
        i += 1;
    }
    out
}

macro_rules! skb_desc {
    ($table:ident, $desc:ident, $flavor:expr) => {
        static $table: [CtxField; skb_count($flavor)] = skb_fields($flavor);
        static $desc: ContextDesc = ContextDesc {
            c_type: "struct __sk_buff",
            size: 192,
            fields: &$table,
            any_read: false,
        };
    };
}

skb_desc!(SKB_SOCKET_FILTER, SK_FILTER_CTX, SkbFlavor::SocketFilter);
skb_desc!(SKB_TC, TC_CTX, SkbFlavor::Tc);
skb_desc!(SKB_CGROUP, CGROUP_SKB_CTX, SkbFlavor::CgroupSkb);
skb_desc!(SKB_LWT, LWT_CTX, SkbFlavor::Lwt);
skb_desc!(SKB_SK_SKB, SK_SKB_CTX, SkbFlavor::SkSkb);
skb_desc!(SKB_FLOW, FLOW_DISSECTOR_CTX, SkbFlavor::FlowDissector);

// ---------------------------------------------------------------------------
// The other contexts.

/// `xdp_is_valid_access`: 4-byte reads only, no writes.
static XDP_MD: ContextDesc = ContextDesc {
    c_type: "struct xdp_md",
    size: 24,
    fields: &[
        ptr("data", 0, 4, PacketStart),
        ptr("data_end", 4, 4, PacketEnd),
        ptr("data_meta", 8, 4, PacketMeta),
        ro("ingress_ifindex", 12, 4),
        ro("rx_queue_index", 16, 4),
        ro("egress_ifindex", 20, 4),
    ],
    any_read: false,
};

/// x86-64 `struct pt_regs`; `kprobe_prog_is_valid_access` allows any aligned read.
const PT_REGS_FIELDS: [CtxField; 21] = [
    ro("r15", 0, 8).narrow(),
    ro("r14", 8, 8).narrow(),
    ro("r13", 16, 8).narrow(),
    ro("r12", 24, 8).narrow(),
    ro("bp", 32, 8).narrow(),
    ro("bx", 40, 8).narrow(),
    ro("r11", 48, 8).narrow(),
    ro("r10", 56, 8).narrow(),
    ro("r9", 64, 8).narrow(),
    ro("r8", 72, 8).narrow(),
    ro("ax", 80, 8).narrow(),
    ro("cx", 88, 8).narrow(),
    ro("dx", 96, 8).narrow(),
    ro("si", 104, 8).narrow(),
    ro("di", 112, 8).narrow(),
    ro("orig_ax", 120, 8).narrow(),
    ro("ip", 128, 8).narrow(),
    ro("cs", 136, 8).narrow(),
    ro("flags", 144, 8).narrow(),
    ro("sp", 152, 8).narrow(),
    ro("ss", 160, 8).narrow(),
];

static PT_REGS: ContextDesc = ContextDesc {
    c_type: "struct pt_regs",
    size: 168,
    fields: &PT_REGS_FIELDS,
    any_read: true,
};

/// Tracepoint records: the kernel checks reads against PERF_MAX_TRACE_SIZE
/// (2048) when verifying and against the tracepoint's own record size when
/// attaching; we know no format, so the verifier bound is 2048 and a runner
/// must hand such programs a context buffer of at least that size. (The kernel
/// also refuses the first 8 bytes, the common header; we allow them.)
pub const TRACEPOINT_CTX_SIZE: u32 = 2048;

static TRACEPOINT: ContextDesc = ContextDesc {
    c_type: "tracepoint record",
    size: TRACEPOINT_CTX_SIZE,
    fields: &[],
    any_read: true,
};

/// Raw tracepoint, BTF tracing, LSM and struct_ops programs: `__u64 args[]`
/// of at most MAX_BPF_FUNC_ARGS (12) entries.
const ARGS_FIELDS: [CtxField; 12] = [
    ro("args[0]", 0, 8).narrow(),
    ro("args[1]", 8, 8).narrow(),
    ro("args[2]", 16, 8).narrow(),
    ro("args[3]", 24, 8).narrow(),
    ro("args[4]", 32, 8).narrow(),
    ro("args[5]", 40, 8).narrow(),
    ro("args[6]", 48, 8).narrow(),
    ro("args[7]", 56, 8).narrow(),
    ro("args[8]", 64, 8).narrow(),
    ro("args[9]", 72, 8).narrow(),
    ro("args[10]", 80, 8).narrow(),
    ro("args[11]", 88, 8).narrow(),
];

static RAW_TP_ARGS: ContextDesc = ContextDesc {
    c_type: "struct bpf_raw_tracepoint_args",
    size: 96,
    fields: &ARGS_FIELDS,
    any_read: true,
};

static BTF_ARGS: ContextDesc = ContextDesc {
    c_type: "__u64 args[]",
    size: 96,
    fields: &ARGS_FIELDS,
    any_read: true,
};

/// `pe_prog_is_valid_access`: registers as whole longs, the two u64 fields
/// also narrow.
static PERF_EVENT: ContextDesc = ContextDesc {
    c_type: "struct bpf_perf_event_data",
    size: 184,
    fields: &[
        ro("regs.r15", 0, 8),
        ro("regs.r14", 8, 8),
        ro("regs.r13", 16, 8),
        ro("regs.r12", 24, 8),
        ro("regs.bp", 32, 8),
        ro("regs.bx", 40, 8),
        ro("regs.r11", 48, 8),
        ro("regs.r10", 56, 8),
        ro("regs.r9", 64, 8),
        ro("regs.r8", 72, 8),
        ro("regs.ax", 80, 8),
        ro("regs.cx", 88, 8),
        ro("regs.dx", 96, 8),
        ro("regs.si", 104, 8),
        ro("regs.di", 112, 8),
        ro("regs.orig_ax", 120, 8),
        ro("regs.ip", 128, 8),
        ro("regs.cs", 136, 8),
        ro("regs.flags", 144, 8),
        ro("regs.sp", 152, 8),
        ro("regs.ss", 160, 8),
        ro("sample_period", 168, 8).narrow(),
        ro("addr", 176, 8).narrow(),
    ],
    any_read: false,
};

/// `sock_ops_is_valid_access`: 4-byte reads (8 for the u64 and pointer
/// fields), writes only to `reply` and `sk_txhash`.
static SOCK_OPS: ContextDesc = ContextDesc {
    c_type: "struct bpf_sock_ops",
    size: 224,
    fields: &[
        ro("op", 0, 4),
        ro("reply", 4, 4).rw(),
        ro("args[1]", 8, 4),
        ro("args[2]", 12, 4),
        ro("args[3]", 16, 4),
        ro("family", 20, 4),
        ro("remote_ip4", 24, 4),
        ro("local_ip4", 28, 4),
        ro("remote_ip6[0]", 32, 4),
        ro("remote_ip6[1]", 36, 4),
        ro("remote_ip6[2]", 40, 4),
        ro("remote_ip6[3]", 44, 4),
        ro("local_ip6[0]", 48, 4),
        ro("local_ip6[1]", 52, 4),
        ro("local_ip6[2]", 56, 4),
        ro("local_ip6[3]", 60, 4),
        ro("remote_port", 64, 4),
        ro("local_port", 68, 4),
        ro("is_fullsock", 72, 4),
        ro("snd_cwnd", 76, 4),
        ro("srtt_us", 80, 4),
        ro("bpf_sock_ops_cb_flags", 84, 4),
        ro("state", 88, 4),
        ro("rtt_min", 92, 4),
        ro("snd_ssthresh", 96, 4),
        ro("rcv_nxt", 100, 4),
        ro("snd_nxt", 104, 4),
        ro("snd_una", 108, 4),
        ro("mss_cache", 112, 4),
        ro("ecn_flags", 116, 4),
        ro("rate_delivered", 120, 4),
        ro("rate_interval_us", 124, 4),
        ro("packets_out", 128, 4),
        ro("retrans_out", 132, 4),
        ro("total_retrans", 136, 4),
        ro("segs_in", 140, 4),
        ro("data_segs_in", 144, 4),
        ro("segs_out", 148, 4),
        ro("data_segs_out", 152, 4),
        ro("lost_out", 156, 4),
        ro("sacked_out", 160, 4),
        ro("sk_txhash", 164, 4).rw(),
        ro("bytes_received", 168, 8),
        ro("bytes_acked", 176, 8),
        ptr("sk", 184, 8, SocketOrNull),
        ptr("skb_data", 192, 8, PacketStart),
        ptr("skb_data_end", 200, 8, PacketEnd),
        ro("skb_len", 208, 4),
        ro("skb_tcp_flags", 212, 4).narrow(),
        ro("skb_hwtstamp", 216, 8),
    ],
    any_read: false,
};

/// `sock_addr_is_valid_access`: addresses and port readable (narrow) and
/// writable; family/type/protocol read-only; `sk` a socket pointer.
static SOCK_ADDR: ContextDesc = ContextDesc {
    c_type: "struct bpf_sock_addr",
    size: 72,
    fields: &[
        ro("user_family", 0, 4),
        ro("user_ip4", 4, 4).narrow().rw(),
        ro("user_ip6[0]", 8, 4).narrow().rw(),
        ro("user_ip6[1]", 12, 4).narrow().rw(),
        ro("user_ip6[2]", 16, 4).narrow().rw(),
        ro("user_ip6[3]", 20, 4).narrow().rw(),
        ro("user_port", 24, 4).narrow().rw(),
        ro("family", 28, 4),
        ro("type", 32, 4),
        ro("protocol", 36, 4),
        ro("msg_src_ip4", 40, 4).narrow().rw(),
        ro("msg_src_ip6[0]", 44, 4).narrow().rw(),
        ro("msg_src_ip6[1]", 48, 4).narrow().rw(),
        ro("msg_src_ip6[2]", 52, 4).narrow().rw(),
        ro("msg_src_ip6[3]", 56, 4).narrow().rw(),
        ptr("sk", 64, 8, Pointer),
    ],
    any_read: false,
};

/// `sock_filter_is_valid_access` over `bpf_sock_is_valid_access`
/// (cgroup/sock programs). `dst_port` is a 16-bit field followed by 16 bits
/// of padding; the kernel accepts a 4-byte read of both, which is why it is
/// described as 4 bytes with narrow reads.
static BPF_SOCK: ContextDesc = ContextDesc {
    c_type: "struct bpf_sock",
    size: 80,
    fields: &[
        ro("bound_dev_if", 0, 4).rw(),
        ro("family", 4, 4).narrow(),
        ro("type", 8, 4).narrow(),
        ro("protocol", 12, 4).narrow(),
        ro("mark", 16, 4).rw(),
        ro("priority", 20, 4).rw(),
        ro("src_ip4", 24, 4).narrow(),
        ro("src_ip6[0]", 28, 4).narrow(),
        ro("src_ip6[1]", 32, 4).narrow(),
        ro("src_ip6[2]", 36, 4).narrow(),
        ro("src_ip6[3]", 40, 4).narrow(),
        ro("src_port", 44, 4).narrow(),
        ro("dst_port", 48, 4).narrow(),
        ro("dst_ip4", 52, 4).narrow(),
        ro("dst_ip6[0]", 56, 4).narrow(),
        ro("dst_ip6[1]", 60, 4).narrow(),
        ro("dst_ip6[2]", 64, 4).narrow(),
        ro("dst_ip6[3]", 68, 4).narrow(),
        ro("state", 72, 4).narrow(),
        ro("rx_queue_mapping", 76, 4).narrow(),
    ],
    any_read: false,
};

/// `sk_msg_is_valid_access`: read-only, exact sizes.
static SK_MSG_MD: ContextDesc = ContextDesc {
    c_type: "struct sk_msg_md",
    size: 80,
    fields: &[
        ptr("data", 0, 8, PacketStart),
        ptr("data_end", 8, 8, PacketEnd),
        ro("family", 16, 4),
        ro("remote_ip4", 20, 4),
        ro("local_ip4", 24, 4),
        ro("remote_ip6[0]", 28, 4),
        ro("remote_ip6[1]", 32, 4),
        ro("remote_ip6[2]", 36, 4),
        ro("remote_ip6[3]", 40, 4),
        ro("local_ip6[0]", 44, 4),
        ro("local_ip6[1]", 48, 4),
        ro("local_ip6[2]", 52, 4),
        ro("local_ip6[3]", 56, 4),
        ro("remote_port", 60, 4),
        ro("local_port", 64, 4),
        ro("size", 68, 4),
        ptr("sk", 72, 8, Pointer),
    ],
    any_read: false,
};

static SYSCTL: ContextDesc = ContextDesc {
    c_type: "struct bpf_sysctl",
    size: 8,
    fields: &[
        ro("write", 0, 4).narrow(),
        ro("file_pos", 4, 4).narrow().rw(),
    ],
    any_read: false,
};

/// `cg_sockopt_is_valid_access`: `optval`..`optval_end` is the packet.
static SOCKOPT: ContextDesc = ContextDesc {
    c_type: "struct bpf_sockopt",
    size: 40,
    fields: &[
        ptr("sk", 0, 8, Pointer),
        ptr("optval", 8, 8, PacketStart),
        ptr("optval_end", 16, 8, PacketEnd),
        ro("level", 24, 4).rw(),
        ro("optname", 28, 4).rw(),
        ro("optlen", 32, 4).rw(),
        ro("retval", 36, 4).rw(),
    ],
    any_read: false,
};

static CGROUP_DEV: ContextDesc = ContextDesc {
    c_type: "struct bpf_cgroup_dev_ctx",
    size: 12,
    fields: &[
        ro("access_type", 0, 4).narrow(),
        ro("major", 4, 4),
        ro("minor", 8, 4),
    ],
    any_read: false,
};

static SK_REUSEPORT: ContextDesc = ContextDesc {
    c_type: "struct sk_reuseport_md",
    size: 56,
    fields: &[
        ptr("data", 0, 8, PacketStart),
        ptr("data_end", 8, 8, PacketEnd),
        ro("len", 16, 4),
        ro("eth_protocol", 20, 4),
        ro("ip_protocol", 24, 4),
        ro("bind_inany", 28, 4),
        ro("hash", 32, 4),
        ptr("sk", 40, 8, Pointer),
        ptr("migrating_sk", 48, 8, Pointer),
    ],
    any_read: false,
};

static SK_LOOKUP: ContextDesc = ContextDesc {
    c_type: "struct bpf_sk_lookup",
    size: 72,
    fields: &[
        ptr("sk", 0, 8, SocketOrNull),
        ro("family", 8, 4).narrow(),
        ro("protocol", 12, 4).narrow(),
        ro("remote_ip4", 16, 4).narrow(),
        ro("remote_ip6[0]", 20, 4).narrow(),
        ro("remote_ip6[1]", 24, 4).narrow(),
        ro("remote_ip6[2]", 28, 4).narrow(),
        ro("remote_ip6[3]", 32, 4).narrow(),
        ro("remote_port", 36, 4).narrow(),
        ro("local_ip4", 40, 4).narrow(),
        ro("local_ip6[0]", 44, 4).narrow(),
        ro("local_ip6[1]", 48, 4).narrow(),
        ro("local_ip6[2]", 52, 4).narrow(),
        ro("local_ip6[3]", 56, 4).narrow(),
        ro("local_port", 60, 4).narrow(),
        ro("ingress_ifindex", 64, 4).narrow(),
    ],
    any_read: false,
};

static LIRC_MODE2: ContextDesc = ContextDesc {
    c_type: "unsigned int",
    size: 4,
    fields: &[ro("sample", 0, 4)],
    any_read: false,
};

static NETFILTER: ContextDesc = ContextDesc {
    c_type: "struct bpf_nf_ctx",
    size: 16,
    fields: &[ptr("state", 0, 8, Pointer), ptr("skb", 8, 8, Pointer)],
    any_read: false,
};

/// The context a program of type `t` receives in r1, or `None` for types
/// whose context is not a fixed structure (Raw: plain memory; Syscall: user
/// memory; Ext: the replaced program's; Unspec).
pub fn context_for(t: ProgType) -> Option<&'static ContextDesc> {
    use ProgType::*;
    Some(match t {
        SocketFilter => &SK_FILTER_CTX,
        SchedCls | SchedAct => &TC_CTX,
        CgroupSkb => &CGROUP_SKB_CTX,
        LwtIn | LwtOut | LwtXmit | LwtSeg6local => &LWT_CTX,
        SkSkb => &SK_SKB_CTX,
        FlowDissector => &FLOW_DISSECTOR_CTX,
        Xdp => &XDP_MD,
        Kprobe => &PT_REGS,
        Tracepoint => &TRACEPOINT,
        RawTracepoint | RawTracepointWritable => &RAW_TP_ARGS,
        Tracing | Lsm | StructOps => &BTF_ARGS,
        PerfEvent => &PERF_EVENT,
        SockOps => &SOCK_OPS,
        CgroupSockAddr => &SOCK_ADDR,
        CgroupSock => &BPF_SOCK,
        SkMsg => &SK_MSG_MD,
        CgroupSysctl => &SYSCTL,
        CgroupSockopt => &SOCKOPT,
        CgroupDevice => &CGROUP_DEV,
        SkReuseport => &SK_REUSEPORT,
        SkLookup => &SK_LOOKUP,
        LircMode2 => &LIRC_MODE2,
        Netfilter => &NETFILTER,
        Unspec | Raw | Syscall | Ext => return None,
    })
}

/// The field an access of `size` bytes at `offset` lies fully inside, if any.
pub fn field_at(desc: &ContextDesc, offset: u32, size: u32) -> Option<&'static CtxField> {
    let end = offset.checked_add(size)?;
    let i = desc.fields.partition_point(|f| f.offset + f.size <= offset);
    let f = desc.fields.get(i)?;
    (f.offset <= offset && end <= f.offset + f.size).then_some(f)
}

/// Checks one context access the way the kernel's `*_is_valid_access` does:
/// inside the structure, naturally aligned, inside one field (or anywhere for
/// `any_read` contexts), at the field's size unless narrow reads are allowed,
/// writes only to writable fields at full size. Returns the field (`None` for
/// an `any_read` access outside the named fields) and what the load yields.
pub fn check_access(
    desc: &ContextDesc,
    offset: i64,
    size: u32,
    write: bool,
) -> Result<(Option<&'static CtxField>, CtxFieldKind), String> {
    let ctype = desc.c_type;
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(format!("invalid access size {size} to {ctype}"));
    }
    let end = offset.checked_add(i64::from(size));
    let Some(offset) = u32::try_from(offset)
        .ok()
        .filter(|_| end.is_some_and(|e| e <= i64::from(desc.size)))
    else {
        return Err(format!(
            "invalid {ctype} access off={offset} size={size}: outside its {} bytes",
            desc.size
        ));
    };
    if offset % size != 0 {
        return Err(format!(
            "misaligned {ctype} access off={offset} size={size}"
        ));
    }
    let field = field_at(desc, offset, size);
    if desc.any_read {
        if write {
            return Err(format!("cannot write into {ctype} (off={offset})"));
        }
        return Ok((field, Scalar));
    }
    let Some(f) = field else {
        return Err(format!(
            "invalid {ctype} access off={offset} size={size}: no readable field there"
        ));
    };
    if write {
        if !f.writable {
            return Err(format!(
                "cannot write into {ctype}.{} (off={offset})",
                f.name
            ));
        }
        if size != f.size {
            return Err(format!(
                "write to {ctype}.{} must be {} bytes, not {size}",
                f.name, f.size
            ));
        }
    } else if size != f.size && !(f.narrow_reads && f.kind == Scalar) {
        return Err(format!(
            "read of {ctype}.{} must be {} bytes, not {size}",
            f.name, f.size
        ));
    }
    Ok((Some(f), f.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProgType::*;

    const ALL_TYPES: &[ProgType] = &[
        SocketFilter,
        Kprobe,
        SchedCls,
        SchedAct,
        Tracepoint,
        Xdp,
        PerfEvent,
        CgroupSkb,
        CgroupSock,
        LwtIn,
        LwtOut,
        LwtXmit,
        SockOps,
        SkSkb,
        CgroupDevice,
        SkMsg,
        RawTracepoint,
        CgroupSockAddr,
        LwtSeg6local,
        LircMode2,
        SkReuseport,
        FlowDissector,
        CgroupSysctl,
        RawTracepointWritable,
        CgroupSockopt,
        Tracing,
        StructOps,
        Lsm,
        SkLookup,
        Netfilter,
    ];

    fn read(t: ProgType, off: i64, size: u32) -> Result<CtxFieldKind, String> {
        check_access(context_for(t).unwrap(), off, size, false).map(|(_, k)| k)
    }

    fn write(t: ProgType, off: i64, size: u32) -> Result<CtxFieldKind, String> {
        check_access(context_for(t).unwrap(), off, size, true).map(|(_, k)| k)
    }

    #[test]
    fn tables_are_sorted_disjoint_and_inside() {
        for &t in ALL_TYPES {
            let d = context_for(t).unwrap();
            let mut end = 0;
            for f in d.fields {
                assert!(f.offset >= end, "{t}: {} overlaps", f.name);
                assert!(matches!(f.size, 1 | 2 | 4 | 8), "{t}: {}", f.name);
                assert_eq!(f.offset % f.size, 0, "{t}: {} misaligned", f.name);
                end = f.offset + f.size;
                assert!(!f.narrow_reads || f.kind == Scalar, "{t}: {}", f.name);
                assert!(!(f.writable && f.kind != Scalar), "{t}: {}", f.name);
                assert_eq!(field_at(d, f.offset, f.size).map(|g| g.name), Some(f.name));
            }
            assert!(end <= d.size, "{t}: fields end at {end} > {}", d.size);
            assert!(!d.any_read || d.fields.iter().all(|f| !f.writable), "{t}");
        }
        for t in [Raw, Unspec, Syscall, Ext] {
            assert!(context_for(t).is_none());
        }
    }

    #[test]
    fn uapi_offsets() {
        let at = |t: ProgType, name: &str| {
            let d = context_for(t).unwrap();
            d.fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| (f.offset, f.size))
        };
        assert_eq!(at(Xdp, "data_meta"), Some((8, 4)));
        assert_eq!(at(Xdp, "rx_queue_index"), Some((16, 4)));
        assert_eq!(at(SchedCls, "cb[4]"), Some((64, 4)));
        assert_eq!(at(SchedCls, "tc_classid"), Some((72, 4)));
        assert_eq!(at(SchedCls, "data"), Some((76, 4)));
        assert_eq!(at(SchedCls, "data_meta"), Some((140, 4)));
        assert_eq!(at(SchedCls, "sk"), Some((168, 8)));
        assert_eq!(at(SchedCls, "hwtstamp"), Some((184, 8)));
        assert_eq!(at(CgroupSkb, "local_port"), Some((136, 4)));
        assert_eq!(at(FlowDissector, "flow_keys"), Some((144, 8)));
        assert_eq!(at(SockOps, "sk_txhash"), Some((164, 4)));
        assert_eq!(at(SockOps, "skb_data_end"), Some((200, 8)));
        assert_eq!(at(CgroupSockAddr, "user_port"), Some((24, 4)));
        assert_eq!(at(CgroupSockAddr, "sk"), Some((64, 8)));
        assert_eq!(at(CgroupSock, "rx_queue_mapping"), Some((76, 4)));
        assert_eq!(at(SkMsg, "size"), Some((68, 4)));
        assert_eq!(at(CgroupSockopt, "retval"), Some((36, 4)));
        assert_eq!(at(Kprobe, "di"), Some((112, 8)));
        assert_eq!(at(PerfEvent, "sample_period"), Some((168, 8)));
        assert_eq!(at(SkLookup, "ingress_ifindex"), Some((64, 4)));
    }

    #[test]
    fn skb_rules_differ_per_type() {
        // Packet pointers for tc, cgroup_skb, lwt, sk_skb; none for socket filters.
        assert_eq!(read(SchedCls, 76, 4), Ok(PacketStart));
        assert_eq!(read(SchedCls, 80, 4), Ok(PacketEnd));
        assert_eq!(read(SchedCls, 140, 4), Ok(PacketMeta));
        assert_eq!(read(CgroupSkb, 76, 4), Ok(PacketStart));
        assert!(read(CgroupSkb, 140, 4).is_err());
        assert_eq!(read(LwtOut, 80, 4), Ok(PacketEnd));
        assert_eq!(read(SkSkb, 76, 4), Ok(PacketStart));
        assert!(read(SocketFilter, 76, 4).is_err());
        assert!(read(SocketFilter, 80, 4).is_err());
        // data must be read whole.
        assert!(read(SchedCls, 76, 2).is_err());
        // Writes: mark/priority/cb/tc_index/tc_classid for tc; cb only for socket filters.
        for off in [8, 32, 44, 48, 64, 72] {
            assert_eq!(write(SchedCls, off, 4), Ok(Scalar), "tc off {off}");
        }
        assert!(write(SchedCls, 0, 4).is_err(), "len is read-only");
        assert!(write(SchedCls, 8, 2).is_err(), "narrow write");
        assert_eq!(write(SocketFilter, 48, 4), Ok(Scalar));
        assert!(write(SocketFilter, 8, 4).is_err());
        assert!(write(SkSkb, 48, 4).is_err());
        assert_eq!(write(SkSkb, 44, 4), Ok(Scalar));
        assert!(read(SkSkb, 8, 4).is_err(), "sk_skb cannot see mark");
        assert!(write(LwtXmit, 44, 4).is_err());
        assert_eq!(write(LwtXmit, 8, 4), Ok(Scalar));
        // Socket fields are for cgroup_skb and sk_skb, not tc or socket filters.
        assert_eq!(read(CgroupSkb, 88, 4), Ok(Scalar));
        assert!(read(SchedCls, 88, 4).is_err());
        assert!(read(SocketFilter, 132, 4).is_err());
        // Narrow reads of plain fields, aligned only.
        assert_eq!(read(SocketFilter, 16, 2), Ok(Scalar));
        assert_eq!(read(SocketFilter, 18, 2), Ok(Scalar));
        assert_eq!(read(SocketFilter, 3, 1), Ok(Scalar));
        assert!(read(SocketFilter, 17, 2).is_err());
        assert!(read(SocketFilter, 0, 8).is_err(), "spans len and pkt_type");
        assert!(read(SocketFilter, 192, 4).is_err());
        assert!(read(SocketFilter, -4, 4).is_err());
        // sk is a nullable socket pointer read as 8 bytes.
        assert_eq!(read(SchedCls, 168, 8), Ok(SocketOrNull));
        assert!(read(SchedCls, 168, 4).is_err());
        assert!(
            read(SchedCls, 144, 8).is_err(),
            "flow_keys only for the dissector"
        );
        assert_eq!(read(FlowDissector, 144, 8), Ok(Pointer));
        assert!(read(FlowDissector, 0, 4).is_err());
        assert!(write(FlowDissector, 76, 4).is_err());
    }

    #[test]
    fn other_contexts() {
        assert_eq!(read(Xdp, 0, 4), Ok(PacketStart));
        assert_eq!(read(Xdp, 4, 4), Ok(PacketEnd));
        assert_eq!(read(Xdp, 8, 4), Ok(PacketMeta));
        assert_eq!(read(Xdp, 12, 4), Ok(Scalar));
        assert!(read(Xdp, 12, 2).is_err(), "xdp_md has no narrow reads");
        assert!(read(Xdp, 0, 8).is_err());
        assert!(write(Xdp, 12, 4).is_err());
        assert!(read(Xdp, 24, 4).is_err());
        // Tracing contexts: any aligned read inside, no writes.
        assert_eq!(read(Kprobe, 112, 8), Ok(Scalar));
        assert_eq!(read(Kprobe, 116, 4), Ok(Scalar));
        assert!(read(Kprobe, 164, 8).is_err());
        assert!(read(Kprobe, 161, 4).is_err());
        assert!(write(Kprobe, 0, 8).is_err());
        assert_eq!(read(Tracepoint, 2040, 8), Ok(Scalar));
        assert!(read(Tracepoint, 2048, 1).is_err());
        assert_eq!(read(RawTracepoint, 88, 8), Ok(Scalar));
        assert!(read(RawTracepoint, 96, 8).is_err());
        assert_eq!(read(PerfEvent, 168, 4), Ok(Scalar));
        assert!(
            read(PerfEvent, 80, 4).is_err(),
            "registers are read as longs"
        );
        // sock_ops
        assert_eq!(write(SockOps, 4, 4), Ok(Scalar));
        assert!(write(SockOps, 8, 4).is_err());
        assert_eq!(read(SockOps, 192, 8), Ok(PacketStart));
        assert_eq!(read(SockOps, 184, 8), Ok(SocketOrNull));
        assert!(read(SockOps, 0, 2).is_err());
        assert_eq!(read(SockOps, 212, 1), Ok(Scalar));
        // sock_addr
        assert_eq!(write(CgroupSockAddr, 24, 4), Ok(Scalar));
        assert_eq!(read(CgroupSockAddr, 24, 2), Ok(Scalar));
        assert!(write(CgroupSockAddr, 28, 4).is_err());
        assert_eq!(read(CgroupSockAddr, 64, 8), Ok(Pointer));
        // sk_msg, sockopt, sysctl
        assert_eq!(read(SkMsg, 0, 8), Ok(PacketStart));
        assert!(read(SkMsg, 0, 4).is_err());
        assert_eq!(read(CgroupSockopt, 16, 8), Ok(PacketEnd));
        assert_eq!(write(CgroupSockopt, 32, 4), Ok(Scalar));
        assert!(write(CgroupSysctl, 0, 4).is_err());
        assert_eq!(write(CgroupSysctl, 4, 4), Ok(Scalar));
        assert_eq!(write(CgroupSock, 0, 4), Ok(Scalar));
        assert!(write(CgroupSock, 4, 4).is_err());
        assert!(check_access(context_for(Xdp).unwrap(), 0, 3, false).is_err());
        assert!(check_access(context_for(Xdp).unwrap(), i64::MAX, 8, false).is_err());
    }
}
