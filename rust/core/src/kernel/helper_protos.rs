//! Kernel helper ids, names and prototypes (`struct bpf_func_proto`), and which
//! program types may call which helper.
//!
//! Ids and names follow `___BPF_FUNC_MAPPER` in include/uapi/linux/bpf.h. The
//! prototypes follow the kernel's `bpf_func_proto` definitions. Where the
//! kernel has several variants of one helper (per program type) they agree on
//! the argument kinds we model; `gpl_only` is set only when every variant is
//! GPL-only (e.g. `perf_event_output` is GPL-only for tracing programs but not
//! for packet programs, so it is `false` here).
//!
//! Deliberate approximations (each errs on the side of rejecting):
//! - `ARG_PTR_TO_MAP_VALUE_OR_NULL` (the init-value argument of the
//!   `*_storage_get` helpers) is described as [`ArgKind::PtrToMapValue`], so a
//!   NULL init value is rejected.
//! - Helpers whose arguments are fixed-size kernel structures
//!   (`ARG_PTR_TO_FIXED_SIZE_MEM` other than 4/8-byte integers: the
//!   `tcp_raw_*_syncookie_*` family) have no prototype: [`proto`] returns
//!   `None`, so programs calling them are rejected.
//! - Helpers returning a non-NULL BTF object (`get_current_task_btf`,
//!   `task_pt_regs`) are described as returning [`RetKind::PtrToBtfIdOrNull`].
//!
//! Besides the kernel's helpers, ebpfvm has **builtins**: the C library
//! functions clang emits calls to when it does not inline them (`memset`,
//! `memcpy`, `memmove`, `memcmp`). The ELF loader turns such calls into
//! helper calls with ids in [`BUILTIN_IDS`], a range of ebpfvm's own far
//! above the kernel's ids (which end at [`MAX_KERNEL_HELPER_ID`]: the kernel
//! takes no new helpers, new functions are kfuncs), so a builtin can never
//! be mistaken for a kernel helper. [`proto`] describes them like helpers,
//! and every program type may call them ([`allowed`]).

use crate::progtype::ProgType;

/// The argument kinds of the kernel's `enum bpf_arg_type`, the subset programs meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Unused argument slot.
    DontCare,
    /// Any initialised value (scalar or pointer where the kernel allows).
    Anything,
    /// An initialised scalar, never a pointer (memset's fill byte).
    Scalar,
    /// `CONST_PTR_TO_MAP`.
    ConstMapPtr,
    /// Pointer to initialised memory of the map's key_size (stack, map value, ...).
    PtrToMapKey,
    /// Pointer to initialised memory of the map's value_size.
    PtrToMapValue,
    /// Memory of value_size the helper writes (e.g. pop/peek destination).
    PtrToUninitMapValue,
    /// Readable initialised memory; size in the next ConstSize/ConstSizeOrZero arg.
    PtrToMem,
    PtrToMemOrNull,
    /// Writable memory; size in the next ConstSize/ConstSizeOrZero arg.
    PtrToUninitMem,
    /// A known-bounded scalar > 0.
    ConstSize,
    /// A known-bounded scalar >= 0.
    ConstSizeOrZero,
    /// A known constant (ringbuf_reserve size).
    ConstAllocSizeOrZero,
    PtrToCtx,
    PtrToCtxOrNull,
    /// Stack only.
    PtrToStack,
    PtrToStackOrNull,
    /// Callback: lddw src=BPF_PSEUDO_FUNC.
    PtrToFunc,
    /// A bpf_spin_lock inside a map value.
    PtrToSpinLock,
    /// 8 writable bytes.
    PtrToLong,
    /// 4 writable bytes.
    PtrToInt,
    /// Pointer into a read-only map value holding a NUL-terminated string.
    PtrToConstStr,
    /// A record returned by ringbuf_reserve (released by the call).
    PtrToRingbufMem,
    PtrToSocket,
    PtrToSockCommon,
    PtrToBtfId,
    PtrToTimer,
    PtrToDynptr,
    PtrToKptr,
}

/// The return kinds of the kernel's `enum bpf_return_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetKind {
    Integer,
    Void,
    /// The first argument, unchanged (memset, memcpy and memmove return
    /// their destination).
    FirstArg,
    /// Map lookup.
    PtrToMapValueOrNull,
    PtrToMapValue,
    /// ringbuf_reserve: memory of the size in arg 2.
    PtrToRingbufMemOrNull,
    PtrToSocketOrNull,
    PtrToTcpSockOrNull,
    PtrToSockCommonOrNull,
    PtrToMemOrBtfId,
    PtrToBtfIdOrNull,
    PtrToMemOrNull,
}

/// One helper's prototype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelperProto {
    pub id: u32,
    /// Without the "bpf_" prefix, e.g. "map_lookup_elem".
    pub name: &'static str,
    pub ret: RetKind,
    /// Unused slots are DontCare.
    pub args: [ArgKind; 5],
    /// Invalidates packet pointers (xdp_adjust_head, skb_store_bytes, ...).
    pub changes_packet_data: bool,
    pub gpl_only: bool,
    /// The argument (0-based) holding the size of every memory argument,
    /// for builtins, whose memory arguments share one size (memcpy's r1
    /// and r2 are both sized by r3). `None`: each memory argument is
    /// sized by the argument right after it, as in every kernel helper.
    pub shared_size_arg: Option<u8>,
}

/// Helper names by id (index = id); index 0 is `BPF_FUNC_unspec`, not a helper.
const NAMES: [&str; 212] = [
    "unspec",                         // 0
    "map_lookup_elem",                // 1
    "map_update_elem",                // 2
    "map_delete_elem",                // 3
    "probe_read",                     // 4
    "ktime_get_ns",                   // 5
    "trace_printk",                   // 6
    "get_prandom_u32",                // 7
    "get_smp_processor_id",           // 8
    "skb_store_bytes",                // 9
    "l3_csum_replace",                // 10
    "l4_csum_replace",                // 11
    "tail_call",                      // 12
    "clone_redirect",                 // 13
    "get_current_pid_tgid",           // 14
    "get_current_uid_gid",            // 15
    "get_current_comm",               // 16
    "get_cgroup_classid",             // 17
    "skb_vlan_push",                  // 18
    "skb_vlan_pop",                   // 19
    "skb_get_tunnel_key",             // 20
    "skb_set_tunnel_key",             // 21
    "perf_event_read",                // 22
    "redirect",                       // 23
    "get_route_realm",                // 24
    "perf_event_output",              // 25
    "skb_load_bytes",                 // 26
    "get_stackid",                    // 27
    "csum_diff",                      // 28
    "skb_get_tunnel_opt",             // 29
    "skb_set_tunnel_opt",             // 30
    "skb_change_proto",               // 31
    "skb_change_type",                // 32
    "skb_under_cgroup",               // 33
    "get_hash_recalc",                // 34
    "get_current_task",               // 35
    "probe_write_user",               // 36
    "current_task_under_cgroup",      // 37
    "skb_change_tail",                // 38
    "skb_pull_data",                  // 39
    "csum_update",                    // 40
    "set_hash_invalid",               // 41
    "get_numa_node_id",               // 42
    "skb_change_head",                // 43
    "xdp_adjust_head",                // 44
    "probe_read_str",                 // 45
    "get_socket_cookie",              // 46
    "get_socket_uid",                 // 47
    "set_hash",                       // 48
    "setsockopt",                     // 49
    "skb_adjust_room",                // 50
    "redirect_map",                   // 51
    "sk_redirect_map",                // 52
    "sock_map_update",                // 53
    "xdp_adjust_meta",                // 54
    "perf_event_read_value",          // 55
    "perf_prog_read_value",           // 56
    "getsockopt",                     // 57
    "override_return",                // 58
    "sock_ops_cb_flags_set",          // 59
    "msg_redirect_map",               // 60
    "msg_apply_bytes",                // 61
    "msg_cork_bytes",                 // 62
    "msg_pull_data",                  // 63
    "bind",                           // 64
    "xdp_adjust_tail",                // 65
    "skb_get_xfrm_state",             // 66
    "get_stack",                      // 67
    "skb_load_bytes_relative",        // 68
    "fib_lookup",                     // 69
    "sock_hash_update",               // 70
    "msg_redirect_hash",              // 71
    "sk_redirect_hash",               // 72
    "lwt_push_encap",                 // 73
    "lwt_seg6_store_bytes",           // 74
    "lwt_seg6_adjust_srh",            // 75
    "lwt_seg6_action",                // 76
    "rc_repeat",                      // 77
    "rc_keydown",                     // 78
    "skb_cgroup_id",                  // 79
    "get_current_cgroup_id",          // 80
    "get_local_storage",              // 81
    "sk_select_reuseport",            // 82
    "skb_ancestor_cgroup_id",         // 83
    "sk_lookup_tcp",                  // 84
    "sk_lookup_udp",                  // 85
    "sk_release",                     // 86
    "map_push_elem",                  // 87
    "map_pop_elem",                   // 88
    "map_peek_elem",                  // 89
    "msg_push_data",                  // 90
    "msg_pop_data",                   // 91
    "rc_pointer_rel",                 // 92
    "spin_lock",                      // 93
    "spin_unlock",                    // 94
    "sk_fullsock",                    // 95
    "tcp_sock",                       // 96
    "skb_ecn_set_ce",                 // 97
    "get_listener_sock",              // 98
    "skc_lookup_tcp",                 // 99
    "tcp_check_syncookie",            // 100
    "sysctl_get_name",                // 101
    "sysctl_get_current_value",       // 102
    "sysctl_get_new_value",           // 103
    "sysctl_set_new_value",           // 104
    "strtol",                         // 105
    "strtoul",                        // 106
    "sk_storage_get",                 // 107
    "sk_storage_delete",              // 108
    "send_signal",                    // 109
    "tcp_gen_syncookie",              // 110
    "skb_output",                     // 111
    "probe_read_user",                // 112
    "probe_read_kernel",              // 113
    "probe_read_user_str",            // 114
    "probe_read_kernel_str",          // 115
    "tcp_send_ack",                   // 116
    "send_signal_thread",             // 117
    "jiffies64",                      // 118
    "read_branch_records",            // 119
    "get_ns_current_pid_tgid",        // 120
    "xdp_output",                     // 121
    "get_netns_cookie",               // 122
    "get_current_ancestor_cgroup_id", // 123
    "sk_assign",                      // 124
    "ktime_get_boot_ns",              // 125
    "seq_printf",                     // 126
    "seq_write",                      // 127
    "sk_cgroup_id",                   // 128
    "sk_ancestor_cgroup_id",          // 129
    "ringbuf_output",                 // 130
    "ringbuf_reserve",                // 131
    "ringbuf_submit",                 // 132
    "ringbuf_discard",                // 133
    "ringbuf_query",                  // 134
    "csum_level",                     // 135
    "skc_to_tcp6_sock",               // 136
    "skc_to_tcp_sock",                // 137
    "skc_to_tcp_timewait_sock",       // 138
    "skc_to_tcp_request_sock",        // 139
    "skc_to_udp6_sock",               // 140
    "get_task_stack",                 // 141
    "load_hdr_opt",                   // 142
    "store_hdr_opt",                  // 143
    "reserve_hdr_opt",                // 144
    "inode_storage_get",              // 145
    "inode_storage_delete",           // 146
    "d_path",                         // 147
    "copy_from_user",                 // 148
    "snprintf_btf",                   // 149
    "seq_printf_btf",                 // 150
    "skb_cgroup_classid",             // 151
    "redirect_neigh",                 // 152
    "per_cpu_ptr",                    // 153
    "this_cpu_ptr",                   // 154
    "redirect_peer",                  // 155
    "task_storage_get",               // 156
    "task_storage_delete",            // 157
    "get_current_task_btf",           // 158
    "bprm_opts_set",                  // 159
    "ktime_get_coarse_ns",            // 160
    "ima_inode_hash",                 // 161
    "sock_from_file",                 // 162
    "check_mtu",                      // 163
    "for_each_map_elem",              // 164
    "snprintf",                       // 165
    "sys_bpf",                        // 166
    "btf_find_by_name_kind",          // 167
    "sys_close",                      // 168
    "timer_init",                     // 169
    "timer_set_callback",             // 170
    "timer_start",                    // 171
    "timer_cancel",                   // 172
    "get_func_ip",                    // 173
    "get_attach_cookie",              // 174
    "task_pt_regs",                   // 175
    "get_branch_snapshot",            // 176
    "trace_vprintk",                  // 177
    "skc_to_unix_sock",               // 178
    "kallsyms_lookup_name",           // 179
    "find_vma",                       // 180
    "loop",                           // 181
    "strncmp",                        // 182
    "get_func_arg",                   // 183
    "get_func_ret",                   // 184
    "get_func_arg_cnt",               // 185
    "get_retval",                     // 186
    "set_retval",                     // 187
    "xdp_get_buff_len",               // 188
    "xdp_load_bytes",                 // 189
    "xdp_store_bytes",                // 190
    "copy_from_user_task",            // 191
    "skb_set_tstamp",                 // 192
    "ima_file_hash",                  // 193
    "kptr_xchg",                      // 194
    "map_lookup_percpu_elem",         // 195
    "skc_to_mptcp_sock",              // 196
    "dynptr_from_mem",                // 197
    "ringbuf_reserve_dynptr",         // 198
    "ringbuf_submit_dynptr",          // 199
    "ringbuf_discard_dynptr",         // 200
    "dynptr_read",                    // 201
    "dynptr_write",                   // 202
    "dynptr_data",                    // 203
    "tcp_raw_gen_syncookie_ipv4",     // 204
    "tcp_raw_gen_syncookie_ipv6",     // 205
    "tcp_raw_check_syncookie_ipv4",   // 206
    "tcp_raw_check_syncookie_ipv6",   // 207
    "ktime_get_tai_ns",               // 208
    "user_ringbuf_drain",             // 209
    "cgrp_storage_get",               // 210
    "cgrp_storage_delete",            // 211
];

const fn proto_of(id: u32, ret: RetKind, list: &[ArgKind]) -> HelperProto {
    let mut args = [ArgKind::DontCare; 5];
    let mut i = 0;
    while i < list.len() {
        args[i] = list[i];
        i += 1;
    }
    HelperProto {
        id,
        name: NAMES[id as usize],
        ret,
        args,
        changes_packet_data: false,
        gpl_only: false,
        shared_size_arg: None,
    }
}

impl HelperProto {
    /// The argument (0-based) holding the size of memory argument `i`.
    pub fn size_arg_of(&self, i: usize) -> usize {
        self.shared_size_arg.map_or(i + 1, usize::from)
    }

    const fn gpl(mut self) -> Self {
        self.gpl_only = true;
        self
    }

    const fn pkt(mut self) -> Self {
        self.changes_packet_data = true;
        self
    }
}

use ArgKind::*;
use RetKind as R;

const MAP: ArgKind = ConstMapPtr;
const CTX: ArgKind = PtrToCtx;
const ANY: ArgKind = Anything;

/// Every prototype, sorted by id.
static PROTOS: &[HelperProto] = &[
    proto_of(1, R::PtrToMapValueOrNull, &[MAP, PtrToMapKey]),
    proto_of(2, R::Integer, &[MAP, PtrToMapKey, PtrToMapValue, ANY]),
    proto_of(3, R::Integer, &[MAP, PtrToMapKey]),
    proto_of(4, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(5, R::Integer, &[]),
    proto_of(6, R::Integer, &[PtrToMem, ConstSize]).gpl(),
    proto_of(7, R::Integer, &[]),
    proto_of(8, R::Integer, &[]),
    proto_of(9, R::Integer, &[CTX, ANY, PtrToMem, ConstSize, ANY]).pkt(),
    proto_of(10, R::Integer, &[CTX, ANY, ANY, ANY, ANY]).pkt(),
    proto_of(11, R::Integer, &[CTX, ANY, ANY, ANY, ANY]).pkt(),
    proto_of(12, R::Void, &[CTX, MAP, ANY]),
    proto_of(13, R::Integer, &[CTX, ANY, ANY]).pkt(),
    proto_of(14, R::Integer, &[]),
    proto_of(15, R::Integer, &[]),
    proto_of(16, R::Integer, &[PtrToUninitMem, ConstSize]),
    proto_of(17, R::Integer, &[CTX]),
    proto_of(18, R::Integer, &[CTX, ANY, ANY]).pkt(),
    proto_of(19, R::Integer, &[CTX]).pkt(),
    proto_of(20, R::Integer, &[CTX, PtrToUninitMem, ConstSize, ANY]),
    proto_of(21, R::Integer, &[CTX, PtrToMem, ConstSize, ANY]),
    proto_of(22, R::Integer, &[MAP, ANY]).gpl(),
    proto_of(23, R::Integer, &[ANY, ANY]),
    proto_of(24, R::Integer, &[CTX]),
    proto_of(25, R::Integer, &[CTX, MAP, ANY, PtrToMem, ConstSizeOrZero]),
    proto_of(26, R::Integer, &[CTX, ANY, PtrToUninitMem, ConstSize]),
    proto_of(27, R::Integer, &[CTX, MAP, ANY]).gpl(),
    proto_of(
        28,
        R::Integer,
        &[
            PtrToMemOrNull,
            ConstSizeOrZero,
            PtrToMemOrNull,
            ConstSizeOrZero,
            ANY,
        ],
    ),
    proto_of(29, R::Integer, &[CTX, PtrToUninitMem, ConstSize]),
    proto_of(30, R::Integer, &[CTX, PtrToMem, ConstSize]),
    proto_of(31, R::Integer, &[CTX, ANY, ANY]).pkt(),
    proto_of(32, R::Integer, &[CTX, ANY]),
    proto_of(33, R::Integer, &[CTX, MAP, ANY]),
    proto_of(34, R::Integer, &[CTX]),
    proto_of(35, R::Integer, &[]).gpl(),
    proto_of(36, R::Integer, &[ANY, PtrToMem, ConstSize]).gpl(),
    proto_of(37, R::Integer, &[MAP, ANY]),
    proto_of(38, R::Integer, &[CTX, ANY, ANY]).pkt(),
    proto_of(39, R::Integer, &[CTX, ANY]).pkt(),
    proto_of(40, R::Integer, &[CTX, ANY]),
    proto_of(41, R::Void, &[CTX]),
    proto_of(42, R::Integer, &[]),
    proto_of(43, R::Integer, &[CTX, ANY, ANY]).pkt(),
    proto_of(44, R::Integer, &[CTX, ANY]).pkt(),
    proto_of(45, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(46, R::Integer, &[CTX]),
    proto_of(47, R::Integer, &[CTX]),
    proto_of(48, R::Integer, &[CTX, ANY]),
    proto_of(49, R::Integer, &[CTX, ANY, ANY, PtrToMem, ConstSize]),
    proto_of(50, R::Integer, &[CTX, ANY, ANY, ANY]).pkt(),
    proto_of(51, R::Integer, &[MAP, ANY, ANY]),
    proto_of(52, R::Integer, &[CTX, MAP, ANY, ANY]),
    proto_of(53, R::Integer, &[CTX, MAP, PtrToMapKey, ANY]),
    proto_of(54, R::Integer, &[CTX, ANY]).pkt(),
    proto_of(55, R::Integer, &[MAP, ANY, PtrToUninitMem, ConstSize]).gpl(),
    proto_of(56, R::Integer, &[CTX, PtrToUninitMem, ConstSize]).gpl(),
    proto_of(57, R::Integer, &[CTX, ANY, ANY, PtrToUninitMem, ConstSize]),
    proto_of(58, R::Integer, &[CTX, ANY]).gpl(),
    proto_of(59, R::Integer, &[CTX, ANY]),
    proto_of(60, R::Integer, &[CTX, MAP, ANY, ANY]),
    proto_of(61, R::Integer, &[CTX, ANY]),
    proto_of(62, R::Integer, &[CTX, ANY]),
    proto_of(63, R::Integer, &[CTX, ANY, ANY, ANY]).pkt(),
    proto_of(64, R::Integer, &[CTX, PtrToMem, ConstSize]),
    proto_of(65, R::Integer, &[CTX, ANY]).pkt(),
    proto_of(66, R::Integer, &[CTX, ANY, PtrToUninitMem, ConstSize, ANY]),
    proto_of(67, R::Integer, &[CTX, PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(68, R::Integer, &[CTX, ANY, PtrToUninitMem, ConstSize, ANY]),
    // The helper reads and writes `params`: the kernel wants it initialised.
    proto_of(69, R::Integer, &[CTX, PtrToMem, ConstSize, ANY]),
    proto_of(70, R::Integer, &[CTX, MAP, PtrToMapKey, ANY]),
    proto_of(71, R::Integer, &[CTX, MAP, PtrToMapKey, ANY]),
    proto_of(72, R::Integer, &[CTX, MAP, PtrToMapKey, ANY]),
    proto_of(73, R::Integer, &[CTX, ANY, PtrToMem, ConstSize]).pkt(),
    proto_of(74, R::Integer, &[CTX, ANY, PtrToMem, ConstSize]).pkt(),
    proto_of(75, R::Integer, &[CTX, ANY, ANY]).pkt(),
    proto_of(76, R::Integer, &[CTX, ANY, PtrToMem, ConstSize]).pkt(),
    proto_of(77, R::Integer, &[CTX]).gpl(),
    proto_of(78, R::Integer, &[CTX, ANY, ANY, ANY]).gpl(),
    proto_of(79, R::Integer, &[CTX]),
    proto_of(80, R::Integer, &[]),
    proto_of(81, R::PtrToMapValue, &[MAP, ANY]),
    proto_of(82, R::Integer, &[CTX, MAP, PtrToMapKey, ANY]),
    proto_of(83, R::Integer, &[CTX, ANY]),
    proto_of(
        84,
        R::PtrToSocketOrNull,
        &[CTX, PtrToMem, ConstSize, ANY, ANY],
    ),
    proto_of(
        85,
        R::PtrToSocketOrNull,
        &[CTX, PtrToMem, ConstSize, ANY, ANY],
    ),
    proto_of(86, R::Integer, &[PtrToSockCommon]),
    proto_of(87, R::Integer, &[MAP, PtrToMapValue, ANY]),
    proto_of(88, R::Integer, &[MAP, PtrToUninitMapValue]),
    proto_of(89, R::Integer, &[MAP, PtrToUninitMapValue]),
    proto_of(90, R::Integer, &[CTX, ANY, ANY, ANY]).pkt(),
    proto_of(91, R::Integer, &[CTX, ANY, ANY, ANY]).pkt(),
    proto_of(92, R::Integer, &[CTX, ANY, ANY]).gpl(),
    proto_of(93, R::Void, &[PtrToSpinLock]),
    proto_of(94, R::Void, &[PtrToSpinLock]),
    proto_of(95, R::PtrToSocketOrNull, &[PtrToSockCommon]),
    proto_of(96, R::PtrToTcpSockOrNull, &[PtrToSockCommon]),
    proto_of(97, R::Integer, &[CTX]),
    proto_of(98, R::PtrToSocketOrNull, &[PtrToSockCommon]),
    proto_of(
        99,
        R::PtrToSockCommonOrNull,
        &[CTX, PtrToMem, ConstSize, ANY, ANY],
    ),
    proto_of(
        100,
        R::Integer,
        &[PtrToSockCommon, PtrToMem, ConstSize, PtrToMem, ConstSize],
    ),
    proto_of(101, R::Integer, &[CTX, PtrToUninitMem, ConstSize, ANY]),
    proto_of(102, R::Integer, &[CTX, PtrToUninitMem, ConstSize]),
    proto_of(103, R::Integer, &[CTX, PtrToUninitMem, ConstSize]),
    proto_of(104, R::Integer, &[CTX, PtrToMem, ConstSize]),
    proto_of(105, R::Integer, &[PtrToMem, ConstSize, ANY, PtrToLong]),
    proto_of(106, R::Integer, &[PtrToMem, ConstSize, ANY, PtrToLong]),
    proto_of(
        107,
        R::PtrToMapValueOrNull,
        &[MAP, PtrToSockCommon, PtrToMapValue, ANY],
    ),
    proto_of(108, R::Integer, &[MAP, PtrToSockCommon]),
    proto_of(109, R::Integer, &[ANY]),
    proto_of(
        110,
        R::Integer,
        &[PtrToSockCommon, PtrToMem, ConstSize, PtrToMem, ConstSize],
    ),
    proto_of(
        111,
        R::Integer,
        &[PtrToBtfId, MAP, ANY, PtrToMem, ConstSizeOrZero],
    )
    .gpl(),
    proto_of(112, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(113, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(114, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(115, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]).gpl(),
    proto_of(116, R::Integer, &[PtrToBtfId, ANY]),
    proto_of(117, R::Integer, &[ANY]),
    proto_of(118, R::Integer, &[]),
    proto_of(
        119,
        R::Integer,
        &[CTX, PtrToMemOrNull, ConstSizeOrZero, ANY],
    )
    .gpl(),
    proto_of(120, R::Integer, &[ANY, ANY, PtrToUninitMem, ConstSize]),
    proto_of(
        121,
        R::Integer,
        &[PtrToBtfId, MAP, ANY, PtrToMem, ConstSizeOrZero],
    )
    .gpl(),
    proto_of(122, R::Integer, &[PtrToCtxOrNull]),
    proto_of(123, R::Integer, &[ANY]),
    proto_of(124, R::Integer, &[CTX, PtrToSockCommon, ANY]),
    proto_of(125, R::Integer, &[]),
    proto_of(
        126,
        R::Integer,
        &[
            PtrToBtfId,
            PtrToMem,
            ConstSize,
            PtrToMemOrNull,
            ConstSizeOrZero,
        ],
    )
    .gpl(),
    proto_of(127, R::Integer, &[PtrToBtfId, PtrToMem, ConstSizeOrZero]).gpl(),
    proto_of(128, R::Integer, &[PtrToSockCommon]),
    proto_of(129, R::Integer, &[PtrToSockCommon, ANY]),
    proto_of(130, R::Integer, &[MAP, PtrToMem, ConstSizeOrZero, ANY]),
    proto_of(
        131,
        R::PtrToRingbufMemOrNull,
        &[MAP, ConstAllocSizeOrZero, ANY],
    ),
    proto_of(132, R::Void, &[PtrToRingbufMem, ANY]),
    proto_of(133, R::Void, &[PtrToRingbufMem, ANY]),
    proto_of(134, R::Integer, &[MAP, ANY]),
    proto_of(135, R::Integer, &[CTX, ANY]),
    proto_of(136, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(137, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(138, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(139, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(140, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(
        141,
        R::Integer,
        &[PtrToBtfId, PtrToUninitMem, ConstSizeOrZero, ANY],
    ),
    // The helper fills `searchby_res`: the kernel passes it as (initialised) ARG_PTR_TO_MEM.
    proto_of(142, R::Integer, &[CTX, PtrToMem, ConstSize, ANY]),
    proto_of(143, R::Integer, &[CTX, PtrToMem, ConstSize, ANY]),
    proto_of(144, R::Integer, &[CTX, ANY, ANY]),
    proto_of(
        145,
        R::PtrToMapValueOrNull,
        &[MAP, PtrToBtfId, PtrToMapValue, ANY],
    ),
    proto_of(146, R::Integer, &[MAP, PtrToBtfId]),
    proto_of(147, R::Integer, &[PtrToBtfId, PtrToMem, ConstSizeOrZero]),
    proto_of(148, R::Integer, &[PtrToUninitMem, ConstSizeOrZero, ANY]),
    proto_of(
        149,
        R::Integer,
        &[PtrToMem, ConstSize, PtrToMem, ConstSize, ANY],
    )
    .gpl(),
    proto_of(
        150,
        R::Integer,
        &[PtrToBtfId, PtrToMem, ConstSizeOrZero, ANY],
    )
    .gpl(),
    proto_of(151, R::Integer, &[CTX]),
    proto_of(
        152,
        R::Integer,
        &[ANY, PtrToMemOrNull, ConstSizeOrZero, ANY],
    ),
    proto_of(153, R::PtrToBtfIdOrNull, &[PtrToBtfId, ANY]),
    proto_of(154, R::PtrToMemOrBtfId, &[PtrToBtfId]),
    proto_of(155, R::Integer, &[ANY, ANY]),
    proto_of(
        156,
        R::PtrToMapValueOrNull,
        &[MAP, PtrToBtfId, PtrToMapValue, ANY],
    ),
    proto_of(157, R::Integer, &[MAP, PtrToBtfId]),
    proto_of(158, R::PtrToBtfIdOrNull, &[]).gpl(),
    proto_of(159, R::Integer, &[PtrToBtfId, ANY]),
    proto_of(160, R::Integer, &[]),
    proto_of(161, R::Integer, &[PtrToBtfId, PtrToUninitMem, ConstSize]),
    proto_of(162, R::PtrToBtfIdOrNull, &[PtrToBtfId]),
    proto_of(163, R::Integer, &[CTX, ANY, PtrToInt, ANY, ANY]),
    proto_of(164, R::Integer, &[MAP, PtrToFunc, PtrToStackOrNull, ANY]),
    proto_of(
        165,
        R::Integer,
        &[
            PtrToMemOrNull,
            ConstSizeOrZero,
            PtrToConstStr,
            PtrToMemOrNull,
            ConstSizeOrZero,
        ],
    )
    .gpl(),
    proto_of(166, R::Integer, &[ANY, PtrToMem, ConstSize]),
    proto_of(167, R::Integer, &[PtrToMem, ConstSize, ANY, ANY]),
    proto_of(168, R::Integer, &[ANY]),
    proto_of(169, R::Integer, &[PtrToTimer, MAP, ANY]).gpl(),
    proto_of(170, R::Integer, &[PtrToTimer, PtrToFunc]).gpl(),
    proto_of(171, R::Integer, &[PtrToTimer, ANY, ANY]).gpl(),
    proto_of(172, R::Integer, &[PtrToTimer]).gpl(),
    proto_of(173, R::Integer, &[CTX]),
    proto_of(174, R::Integer, &[CTX]),
    proto_of(175, R::PtrToBtfIdOrNull, &[PtrToBtfId]).gpl(),
    proto_of(176, R::Integer, &[PtrToUninitMem, ConstSizeOrZero]).gpl(),
    proto_of(
        177,
        R::Integer,
        &[PtrToMem, ConstSize, PtrToMemOrNull, ConstSizeOrZero],
    )
    .gpl(),
    proto_of(178, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(
        179,
        R::Integer,
        &[PtrToMem, ConstSizeOrZero, ANY, PtrToLong],
    ),
    proto_of(
        180,
        R::Integer,
        &[PtrToBtfId, ANY, PtrToFunc, PtrToStackOrNull, ANY],
    ),
    proto_of(181, R::Integer, &[ANY, PtrToFunc, PtrToStackOrNull, ANY]),
    proto_of(182, R::Integer, &[PtrToMem, ConstSize, PtrToConstStr]),
    proto_of(183, R::Integer, &[CTX, ANY, PtrToLong]),
    proto_of(184, R::Integer, &[CTX, PtrToLong]),
    proto_of(185, R::Integer, &[CTX]),
    proto_of(186, R::Integer, &[]),
    proto_of(187, R::Integer, &[ANY]),
    proto_of(188, R::Integer, &[CTX]),
    proto_of(189, R::Integer, &[CTX, ANY, PtrToUninitMem, ConstSize]),
    proto_of(190, R::Integer, &[CTX, ANY, PtrToMem, ConstSize]),
    proto_of(
        191,
        R::Integer,
        &[PtrToUninitMem, ConstSizeOrZero, ANY, PtrToBtfId, ANY],
    )
    .gpl(),
    proto_of(192, R::Integer, &[CTX, ANY, ANY]),
    proto_of(193, R::Integer, &[PtrToBtfId, PtrToUninitMem, ConstSize]),
    proto_of(194, R::PtrToBtfIdOrNull, &[PtrToKptr, PtrToBtfId]),
    proto_of(195, R::PtrToMapValueOrNull, &[MAP, PtrToMapKey, ANY]),
    proto_of(196, R::PtrToBtfIdOrNull, &[PtrToSockCommon]),
    proto_of(
        197,
        R::Integer,
        &[PtrToUninitMem, ConstSizeOrZero, ANY, PtrToDynptr],
    ),
    proto_of(198, R::Integer, &[MAP, ANY, ANY, PtrToDynptr]),
    proto_of(199, R::Void, &[PtrToDynptr, ANY]),
    proto_of(200, R::Void, &[PtrToDynptr, ANY]),
    proto_of(
        201,
        R::Integer,
        &[PtrToUninitMem, ConstSizeOrZero, PtrToDynptr, ANY, ANY],
    ),
    proto_of(
        202,
        R::Integer,
        &[PtrToDynptr, ANY, PtrToMem, ConstSizeOrZero, ANY],
    ),
    proto_of(
        203,
        R::PtrToMemOrNull,
        &[PtrToDynptr, ANY, ConstAllocSizeOrZero],
    ),
    // 204..=207 (tcp_raw_*_syncookie_*) take fixed-size headers: not described.
    proto_of(208, R::Integer, &[]),
    proto_of(209, R::Integer, &[MAP, PtrToFunc, PtrToStackOrNull, ANY]),
    proto_of(
        210,
        R::PtrToMapValueOrNull,
        &[MAP, PtrToBtfId, PtrToMapValue, ANY],
    ),
    proto_of(211, R::Integer, &[MAP, PtrToBtfId]),
];

/// Helper ids reserved for ebpfvm's builtins (see the module docs).
pub const BUILTIN_IDS: std::ops::RangeInclusive<u32> = 0x400..=0x4ff;
/// `void *memset(void *dst, int c, size_t n)`.
pub const BUILTIN_MEMSET: u32 = 0x400;
/// `void *memcpy(void *dst, const void *src, size_t n)`.
pub const BUILTIN_MEMCPY: u32 = 0x401;
/// `void *memmove(void *dst, const void *src, size_t n)`.
pub const BUILTIN_MEMMOVE: u32 = 0x402;
/// `int memcmp(const void *a, const void *b, size_t n)`.
pub const BUILTIN_MEMCMP: u32 = 0x403;

const fn builtin(id: u32, name: &'static str, ret: RetKind, args: [ArgKind; 3]) -> HelperProto {
    HelperProto {
        id,
        name,
        ret,
        args: [args[0], args[1], args[2], DontCare, DontCare],
        changes_packet_data: false,
        gpl_only: false,
        // n, in r3, sizes both pointers.
        shared_size_arg: Some(2),
    }
}

/// The builtins, sorted by id.
static BUILTIN_PROTOS: &[HelperProto] = &[
    builtin(
        BUILTIN_MEMSET,
        "memset",
        R::FirstArg,
        [PtrToUninitMem, Scalar, ConstSizeOrZero],
    ),
    builtin(
        BUILTIN_MEMCPY,
        "memcpy",
        R::FirstArg,
        [PtrToUninitMem, PtrToMem, ConstSizeOrZero],
    ),
    builtin(
        BUILTIN_MEMMOVE,
        "memmove",
        R::FirstArg,
        [PtrToUninitMem, PtrToMem, ConstSizeOrZero],
    ),
    builtin(
        BUILTIN_MEMCMP,
        "memcmp",
        R::Integer,
        [PtrToMem, PtrToMem, ConstSizeOrZero],
    ),
];

/// The prototype of helper or builtin `id`, or `None` for unknown ids and
/// for the few helpers whose arguments we cannot describe (see the module
/// docs).
pub fn proto(id: u32) -> Option<&'static HelperProto> {
    let table = if BUILTIN_IDS.contains(&id) {
        BUILTIN_PROTOS
    } else {
        PROTOS
    };
    table
        .binary_search_by_key(&id, |p| p.id)
        .ok()
        .map(|i| &table[i])
}

/// The id of the builtin a C library call names: `memset` or clang's
/// `__builtin_memset`, and so on.
pub fn builtin_id(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("__builtin_").unwrap_or(name);
    BUILTIN_PROTOS.iter().find(|p| p.name == bare).map(|p| p.id)
}

/// The name of builtin `id` ("memset"), `None` for anything else.
pub fn builtin_name(id: u32) -> Option<&'static str> {
    BUILTIN_PROTOS.iter().find(|p| p.id == id).map(|p| p.name)
}

/// The id of a helper by name; accepts "map_lookup_elem" and "bpf_map_lookup_elem".
pub fn helper_id(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("bpf_").unwrap_or(name);
    NAMES
        .iter()
        .skip(1)
        .position(|n| *n == bare)
        .map(|i| i as u32 + 1)
}

/// The name of helper `id` without the "bpf_" prefix.
pub fn helper_name(id: u32) -> Option<&'static str> {
    match id {
        0 => None,
        _ => NAMES.get(id as usize).copied(),
    }
}

/// The highest helper id the kernel ABI we describe defines.
pub const MAX_KERNEL_HELPER_ID: u32 = NAMES.len() as u32 - 1;

/// `bpf_base_func_proto` for a privileged loader (CAP_BPF and CAP_PERFMON):
/// maps, time, randomness, ring buffers, loops, dynptrs, spin locks, timers,
/// `trace_printk`, `probe_read_*`, `snprintf`, ...
const BASE: &[u32] = &[
    1, 2, 3, 5, 6, 7, 8, 12, 14, 35, 42, 87, 88, 89, 93, 94, 105, 106, 112, 113, 114, 115, 118,
    120, 125, 130, 131, 132, 133, 134, 149, 153, 154, 158, 164, 165, 169, 170, 171, 172, 175, 177,
    181, 182, 194, 195, 197, 198, 199, 200, 201, 202, 203, 208, 209, 210, 211,
];

/// `bpf_sk_base_func_proto`: socket casts and coarse time for networking types.
const SK_BASE: &[u32] = &[136, 137, 138, 139, 140, 160, 178, 196];

/// `bpf_tracing_func_proto`: what every tracing type may call.
const TRACING_COMMON: &[u32] = &[
    4, 15, 16, 22, 36, 37, 45, 55, 80, 109, 117, 123, 141, 148, 156, 157, 176, 180, 191,
];

/// Perf output and stack walking, common to kprobe, tracepoint, raw tracepoint,
/// perf event and BTF tracing programs.
const TRACE_OUTPUT: &[u32] = &[25, 27, 67, 174];
const KPROBE: &[u32] = &[58, 173];
const PERF_EVENT: &[u32] = &[56, 119];
/// fentry/fexit/fmod_ret, BTF tracepoints, iterators.
const BTF_TRACING: &[u32] = &[
    107, 108, 111, 116, 121, 126, 127, 136, 137, 138, 139, 140, 147, 150, 162, 173, 178, 183, 184,
    185, 196,
];
const LSM: &[u32] = &[145, 146, 159, 161, 186, 187, 193];
const SYSCALL: &[u32] = &[166, 167, 168, 179];

/// `cgroup_common_func_proto` and `cgroup_current_func_proto`.
const CGROUP: &[u32] = &[15, 16, 17, 80, 81, 123, 186, 187];

const SOCKET_FILTER: &[u32] = &[25, 26, 46, 47, 68];
const TC: &[u32] = &[
    9, 10, 11, 13, 17, 18, 19, 20, 21, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 38, 39, 40, 41,
    43, 46, 47, 48, 50, 66, 68, 69, 79, 83, 84, 85, 86, 95, 96, 97, 98, 99, 100, 107, 108, 110,
    124, 135, 151, 152, 155, 163, 192,
];
const XDP: &[u32] = &[
    23, 25, 28, 44, 51, 54, 65, 69, 84, 85, 86, 99, 100, 110, 163, 188, 189, 190,
];
const CGROUP_SKB: &[u32] = &[
    25, 26, 46, 47, 68, 79, 83, 84, 85, 86, 95, 96, 97, 98, 99, 107, 108, 128, 129,
];
const LWT_OUT: &[u32] = &[8, 17, 24, 25, 26, 28, 33, 34, 39];
const LWT_IN: &[u32] = &[73];
const LWT_XMIT: &[u32] = &[9, 10, 11, 13, 20, 21, 23, 29, 30, 38, 40, 41, 43, 73, 135];
const LWT_SEG6LOCAL: &[u32] = &[74, 75, 76];
const SOCK_OPS: &[u32] = &[25, 46, 49, 53, 57, 59, 70, 96, 107, 108, 122, 142, 143, 144];
const SK_SKB: &[u32] = &[9, 25, 26, 38, 39, 43, 46, 47, 50, 52, 72, 84, 85, 86, 99];
const SK_MSG: &[u32] = &[
    15, 17, 25, 60, 61, 62, 63, 71, 80, 90, 91, 107, 108, 122, 123,
];
const CGROUP_SOCK: &[u32] = &[25, 46, 107, 108, 122];
const CGROUP_SOCK_ADDR: &[u32] = &[25, 46, 49, 57, 64, 84, 85, 86, 99, 107, 108, 122];
const FLOW_DISSECTOR: &[u32] = &[26];
const CGROUP_SYSCTL: &[u32] = &[101, 102, 103, 104];
const CGROUP_SOCKOPT: &[u32] = &[49, 57, 96, 107, 108, 122];
const SK_REUSEPORT: &[u32] = &[26, 46, 68, 82];
const SK_LOOKUP: &[u32] = &[25, 86, 124];
const LIRC_MODE2: &[u32] = &[77, 78, 92];
/// ebpfvm's plain-memory type: the helpers that need no kernel context.
const RAW: &[u32] = &[4, 15, 16, 28, 45];

/// The helper-id sets (besides [`BASE`]) a program type draws on.
fn tables(t: ProgType) -> &'static [&'static [u32]] {
    use ProgType::*;
    match t {
        SocketFilter => &[SK_BASE, SOCKET_FILTER],
        SchedCls | SchedAct => &[SK_BASE, TC],
        Xdp => &[SK_BASE, XDP],
        CgroupSkb => &[SK_BASE, CGROUP, CGROUP_SKB],
        LwtIn => &[LWT_OUT, LWT_IN],
        LwtOut => &[LWT_OUT],
        LwtXmit => &[LWT_OUT, LWT_XMIT],
        LwtSeg6local => &[LWT_OUT, LWT_SEG6LOCAL],
        SockOps => &[SK_BASE, CGROUP, SOCK_OPS],
        SkSkb => &[SK_BASE, SK_SKB],
        SkMsg => &[SK_BASE, SK_MSG],
        CgroupSock => &[SK_BASE, CGROUP, CGROUP_SOCK],
        CgroupSockAddr => &[SK_BASE, CGROUP, CGROUP_SOCK_ADDR],
        CgroupDevice => &[CGROUP],
        CgroupSysctl => &[CGROUP, CGROUP_SYSCTL],
        CgroupSockopt => &[CGROUP, CGROUP_SOCKOPT],
        FlowDissector => &[FLOW_DISSECTOR],
        SkReuseport => &[SK_REUSEPORT],
        SkLookup => &[SK_BASE, SK_LOOKUP],
        LircMode2 => &[LIRC_MODE2],
        Kprobe => &[TRACING_COMMON, TRACE_OUTPUT, KPROBE],
        Tracepoint | RawTracepoint | RawTracepointWritable => &[TRACING_COMMON, TRACE_OUTPUT],
        PerfEvent => &[TRACING_COMMON, TRACE_OUTPUT, PERF_EVENT],
        Tracing | StructOps => &[TRACING_COMMON, TRACE_OUTPUT, BTF_TRACING],
        Lsm => &[TRACING_COMMON, TRACE_OUTPUT, BTF_TRACING, LSM],
        Syscall => &[TRACING_COMMON, SYSCALL],
        Netfilter => &[],
        Unspec | Raw => &[RAW],
        // Ext takes the helper table of the program it replaces, which we do
        // not know: everything described is allowed.
        Ext => &[],
    }
}

/// Whether a program of type `t` may call helper `id` (the kernel's per-type
/// func_proto tables, for a privileged loader, approximately: packet helpers
/// only for packet programs, probe helpers for tracing types, ...). Helpers
/// with no prototype are never allowed; builtins always are.
pub fn allowed(t: ProgType, id: u32) -> bool {
    if proto(id).is_none() {
        return false;
    }
    if t == ProgType::Ext || BUILTIN_IDS.contains(&id) {
        return true;
    }
    BASE.contains(&id) || tables(t).iter().any(|set| set.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protos_are_sorted_named_and_consistent() {
        for pair in PROTOS.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "{} before {}",
                pair[0].id,
                pair[1].id
            );
        }
        for p in PROTOS {
            assert_eq!(helper_name(p.id), Some(p.name));
            // Every memory argument has its size in the next slot, and sizes follow memory.
            for (i, a) in p.args.iter().enumerate() {
                let sized = matches!(a, PtrToMem | PtrToMemOrNull | PtrToUninitMem);
                let next = p.args.get(i + 1).copied();
                if sized {
                    assert!(
                        matches!(next, Some(ConstSize | ConstSizeOrZero)),
                        "{}: arg {} has no size after it",
                        p.name,
                        i + 1
                    );
                }
                if matches!(a, ConstSize | ConstSizeOrZero) {
                    let prev = i.checked_sub(1).map(|j| p.args[j]);
                    assert!(
                        matches!(prev, Some(PtrToMem | PtrToMemOrNull | PtrToUninitMem)),
                        "{}: size arg {} follows no memory",
                        p.name,
                        i + 1
                    );
                }
            }
            // DontCare only trails.
            if let Some(first) = p.args.iter().position(|a| *a == DontCare) {
                assert!(p.args[first..].iter().all(|a| *a == DontCare), "{}", p.name);
            }
        }
    }

    #[test]
    fn names_and_ids_round_trip() {
        assert_eq!(helper_id("map_lookup_elem"), Some(1));
        assert_eq!(helper_id("bpf_map_lookup_elem"), Some(1));
        assert_eq!(helper_id("bpf_xdp_adjust_tail"), Some(65));
        assert_eq!(helper_id("ringbuf_reserve"), Some(131));
        assert_eq!(helper_id("loop"), Some(181));
        assert_eq!(helper_id("cgrp_storage_delete"), Some(211));
        assert_eq!(helper_id("unspec"), None);
        assert_eq!(helper_id("no_such_helper"), None);
        assert_eq!(helper_name(0), None);
        assert_eq!(helper_name(212), None);
        assert_eq!(MAX_KERNEL_HELPER_ID, 211);
        for id in 1..=MAX_KERNEL_HELPER_ID {
            assert_eq!(helper_id(helper_name(id).unwrap()), Some(id));
        }
    }

    #[test]
    fn key_prototypes_match_the_kernel() {
        let lookup = proto(1).unwrap();
        assert_eq!(lookup.ret, RetKind::PtrToMapValueOrNull);
        assert_eq!(lookup.args[..2], [ConstMapPtr, PtrToMapKey]);
        let update = proto(helper_id("map_update_elem").unwrap()).unwrap();
        assert_eq!(
            update.args[..4],
            [ConstMapPtr, PtrToMapKey, PtrToMapValue, Anything]
        );
        let reserve = proto(131).unwrap();
        assert_eq!(reserve.ret, RetKind::PtrToRingbufMemOrNull);
        assert_eq!(reserve.args[1], ConstAllocSizeOrZero);
        assert_eq!(proto(132).unwrap().args[0], PtrToRingbufMem);
        assert_eq!(proto(88).unwrap().args[1], PtrToUninitMapValue);
        assert!(proto(44).unwrap().changes_packet_data);
        assert!(proto(9).unwrap().changes_packet_data);
        assert!(!proto(26).unwrap().changes_packet_data);
        assert!(proto(113).unwrap().gpl_only);
        assert!(!proto(1).unwrap().gpl_only);
        assert_eq!(proto(181).unwrap().args[1], PtrToFunc);
        assert_eq!(proto(12).unwrap().ret, RetKind::Void);
        assert!(proto(204).is_none());
        assert!(proto(0).is_none());
        assert!(proto(1000).is_none());
    }

    #[test]
    fn builtins_have_their_own_ids_and_prototypes() {
        assert!(*BUILTIN_IDS.start() > MAX_KERNEL_HELPER_ID);
        assert!(*BUILTIN_IDS.end() <= crate::helpers::MAX_HELPER_ID);
        for (name, id) in [
            ("memset", BUILTIN_MEMSET),
            ("memcpy", BUILTIN_MEMCPY),
            ("memmove", BUILTIN_MEMMOVE),
            ("memcmp", BUILTIN_MEMCMP),
        ] {
            assert!(BUILTIN_IDS.contains(&id));
            assert_eq!(builtin_id(name), Some(id));
            assert_eq!(builtin_id(&format!("__builtin_{name}")), Some(id));
            assert_eq!(builtin_name(id), Some(name));
            assert_eq!(helper_name(id), None, "{name} is no kernel helper");
            let p = proto(id).unwrap();
            assert_eq!((p.id, p.name), (id, name));
            // Both pointers are sized by n, in r3.
            assert_eq!(p.size_arg_of(0), 2);
            assert_eq!(p.size_arg_of(1), 2);
            assert_eq!(p.args[2], ConstSizeOrZero);
            assert_eq!(p.args[3..], [DontCare, DontCare]);
        }
        for t in [
            ProgType::Xdp,
            ProgType::RawTracepoint,
            ProgType::CgroupSysctl,
            ProgType::Raw,
            ProgType::Netfilter,
        ] {
            assert!(allowed(t, BUILTIN_MEMSET), "{t}");
        }
        assert_eq!(
            proto(BUILTIN_MEMSET).unwrap().args[..2],
            [PtrToUninitMem, Scalar]
        );
        assert_eq!(
            proto(BUILTIN_MEMCPY).unwrap().args[..2],
            [PtrToUninitMem, PtrToMem]
        );
        assert_eq!(
            proto(BUILTIN_MEMCMP).unwrap().args[..2],
            [PtrToMem, PtrToMem]
        );
        assert_eq!(proto(BUILTIN_MEMCMP).unwrap().ret, RetKind::Integer);
        assert_eq!(proto(BUILTIN_MEMMOVE).unwrap().ret, RetKind::FirstArg);
        assert!(proto(*BUILTIN_IDS.end()).is_none());
        assert!(!allowed(ProgType::Xdp, *BUILTIN_IDS.end()));
        assert_eq!(builtin_id("strcpy"), None);
        assert_eq!(builtin_id("bpf_memset"), None);
        // Kernel helper ids are unaffected.
        assert_eq!(proto(1).unwrap().size_arg_of(0), 1);
    }

    #[test]
    fn per_type_tables() {
        use ProgType::*;
        let id = |n| helper_id(n).unwrap();
        // Everyone may use maps.
        for t in [
            Xdp,
            SchedCls,
            SocketFilter,
            Kprobe,
            Tracepoint,
            CgroupSockAddr,
            Raw,
        ] {
            assert!(allowed(t, 1), "{t}");
        }
        assert!(allowed(Xdp, id("xdp_adjust_head")));
        assert!(!allowed(SchedCls, id("xdp_adjust_head")));
        assert!(allowed(SchedCls, id("skb_store_bytes")));
        assert!(!allowed(Xdp, id("skb_store_bytes")));
        assert!(!allowed(SocketFilter, id("skb_store_bytes")));
        assert!(allowed(SocketFilter, id("skb_load_bytes")));
        // The corpus's wronghelper.o: sock_map_update is not for XDP.
        assert!(!allowed(Xdp, id("sock_map_update")));
        assert!(allowed(SockOps, id("sock_map_update")));
        assert!(allowed(Kprobe, id("probe_read")));
        assert!(allowed(Kprobe, id("override_return")));
        assert!(!allowed(Tracepoint, id("override_return")));
        assert!(!allowed(Xdp, id("probe_read")));
        assert!(!allowed(Xdp, id("get_current_comm")));
        assert!(allowed(Xdp, id("probe_read_kernel")));
        assert!(allowed(Kprobe, id("get_current_comm")));
        assert!(allowed(Raw, id("trace_printk")));
        assert!(!allowed(Raw, id("perf_event_output")));
        assert!(allowed(Tracing, id("get_func_arg")));
        assert!(!allowed(Kprobe, id("get_func_arg")));
        assert!(!allowed(Ext, 204));
        assert!(allowed(Ext, id("skb_store_bytes")));
    }
}
