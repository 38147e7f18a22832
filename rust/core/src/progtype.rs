//! Program types (`enum bpf_prog_type`) and libbpf's mapping from `SEC()`
//! names to them.

use std::fmt;

/// Kernel program type numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ProgType {
    /// Not known from the section name; the user chooses at load time.
    Unspec = 0,
    SocketFilter = 1,
    Kprobe = 2,
    SchedCls = 3,
    SchedAct = 4,
    Tracepoint = 5,
    Xdp = 6,
    PerfEvent = 7,
    CgroupSkb = 8,
    CgroupSock = 9,
    LwtIn = 10,
    LwtOut = 11,
    LwtXmit = 12,
    SockOps = 13,
    SkSkb = 14,
    CgroupDevice = 15,
    SkMsg = 16,
    RawTracepoint = 17,
    CgroupSockAddr = 18,
    LwtSeg6local = 19,
    LircMode2 = 20,
    SkReuseport = 21,
    FlowDissector = 22,
    CgroupSysctl = 23,
    RawTracepointWritable = 24,
    CgroupSockopt = 25,
    Tracing = 26,
    StructOps = 27,
    Ext = 28,
    Lsm = 29,
    SkLookup = 30,
    Syscall = 31,
    Netfilter = 32,
    /// ebpfvm's own type for plain memory: r1 points at the input buffer,
    /// r2 holds its length (what `Program.load().run(buf)` has always done).
    Raw = 0x1000,
}

const NAMES: &[(ProgType, &str)] = &[
    (ProgType::Unspec, "unspec"),
    (ProgType::SocketFilter, "socket_filter"),
    (ProgType::Kprobe, "kprobe"),
    (ProgType::SchedCls, "sched_cls"),
    (ProgType::SchedAct, "sched_act"),
    (ProgType::Tracepoint, "tracepoint"),
    (ProgType::Xdp, "xdp"),
    (ProgType::PerfEvent, "perf_event"),
    (ProgType::CgroupSkb, "cgroup_skb"),
    (ProgType::CgroupSock, "cgroup_sock"),
    (ProgType::LwtIn, "lwt_in"),
    (ProgType::LwtOut, "lwt_out"),
    (ProgType::LwtXmit, "lwt_xmit"),
    (ProgType::SockOps, "sock_ops"),
    (ProgType::SkSkb, "sk_skb"),
    (ProgType::CgroupDevice, "cgroup_device"),
    (ProgType::SkMsg, "sk_msg"),
    (ProgType::RawTracepoint, "raw_tracepoint"),
    (ProgType::CgroupSockAddr, "cgroup_sock_addr"),
    (ProgType::LwtSeg6local, "lwt_seg6local"),
    (ProgType::LircMode2, "lirc_mode2"),
    (ProgType::SkReuseport, "sk_reuseport"),
    (ProgType::FlowDissector, "flow_dissector"),
    (ProgType::CgroupSysctl, "cgroup_sysctl"),
    (ProgType::RawTracepointWritable, "raw_tracepoint_writable"),
    (ProgType::CgroupSockopt, "cgroup_sockopt"),
    (ProgType::Tracing, "tracing"),
    (ProgType::StructOps, "struct_ops"),
    (ProgType::Ext, "ext"),
    (ProgType::Lsm, "lsm"),
    (ProgType::SkLookup, "sk_lookup"),
    (ProgType::Syscall, "syscall"),
    (ProgType::Netfilter, "netfilter"),
    (ProgType::Raw, "raw"),
];

impl ProgType {
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("unspec", |(_, n)| n)
    }

    pub fn from_name(name: &str) -> Option<ProgType> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }

    pub fn from_u32(n: u32) -> Option<ProgType> {
        NAMES.iter().find(|(t, _)| *t as u32 == n).map(|(t, _)| *t)
    }

    /// The program type libbpf gives a `SEC()` name, or `None` when libbpf
    /// would not recognise it. Rules (as libbpf's `section_defs`): an entry
    /// ending in `+` matches the name itself or the name followed by `/...`
    /// (and `.`-suffixed variants are separate entries); others match
    /// exactly, or as a prefix followed by `/` for the legacy forms
    /// (`socket1`, `kprobe/sys_open`, `classifier/x`) that older loaders
    /// accept.
    pub fn from_section(section: &str) -> Option<ProgType> {
        use ProgType::*;
        // Longest prefixes first so `xdp.frags` is not taken for `xdp`.
        const PREFIXES: &[(&str, ProgType)] = &[
            ("sk_reuseport/migrate", SkReuseport),
            ("sk_reuseport", SkReuseport),
            ("kprobe.multi", Kprobe),
            ("kretprobe.multi", Kprobe),
            ("uprobe.multi.s", Kprobe),
            ("uprobe.multi", Kprobe),
            ("uretprobe.multi.s", Kprobe),
            ("uretprobe.multi", Kprobe),
            ("kprobe.session", Kprobe),
            ("uprobe.s", Kprobe),
            ("uretprobe.s", Kprobe),
            ("kretprobe", Kprobe),
            ("kprobe", Kprobe),
            ("uretprobe", Kprobe),
            ("uprobe", Kprobe),
            ("ksyscall", Kprobe),
            ("kretsyscall", Kprobe),
            ("usdt.s", Kprobe),
            ("usdt", Kprobe),
            ("tc/ingress", SchedCls),
            ("tc/egress", SchedCls),
            ("tcx/ingress", SchedCls),
            ("tcx/egress", SchedCls),
            ("netkit/primary", SchedCls),
            ("netkit/peer", SchedCls),
            ("tc", SchedCls),
            ("classifier", SchedCls),
            ("action", SchedAct),
            ("tracepoint", Tracepoint),
            ("tp_btf", Tracing),
            ("tp", Tracepoint),
            ("raw_tracepoint.w", RawTracepointWritable),
            ("raw_tp.w", RawTracepointWritable),
            ("raw_tracepoint", RawTracepoint),
            ("raw_tp", RawTracepoint),
            ("fentry.s", Tracing),
            ("fmod_ret.s", Tracing),
            ("fexit.s", Tracing),
            ("fentry", Tracing),
            ("fmod_ret", Tracing),
            ("fexit", Tracing),
            ("freplace", Ext),
            ("lsm_cgroup", Lsm),
            ("lsm.s", Lsm),
            ("lsm", Lsm),
            ("iter.s", Tracing),
            ("iter", Tracing),
            ("syscall", Syscall),
            ("xdp.frags/devmap", Xdp),
            ("xdp/devmap", Xdp),
            ("xdp.frags/cpumap", Xdp),
            ("xdp/cpumap", Xdp),
            ("xdp.frags", Xdp),
            ("xdp", Xdp),
            ("perf_event", PerfEvent),
            ("lwt_in", LwtIn),
            ("lwt_out", LwtOut),
            ("lwt_xmit", LwtXmit),
            ("lwt_seg6local", LwtSeg6local),
            ("sockops", SockOps),
            ("sk_skb/stream_parser", SkSkb),
            ("sk_skb/stream_verdict", SkSkb),
            ("sk_skb/verdict", SkSkb),
            ("sk_skb", SkSkb),
            ("sk_msg", SkMsg),
            ("lirc_mode2", LircMode2),
            ("flow_dissector", FlowDissector),
            ("cgroup_skb/ingress", CgroupSkb),
            ("cgroup_skb/egress", CgroupSkb),
            ("cgroup/skb", CgroupSkb),
            ("cgroup/sock_create", CgroupSock),
            ("cgroup/sock_release", CgroupSock),
            ("cgroup/sock", CgroupSock),
            ("cgroup/post_bind4", CgroupSock),
            ("cgroup/post_bind6", CgroupSock),
            ("cgroup/bind4", CgroupSockAddr),
            ("cgroup/bind6", CgroupSockAddr),
            ("cgroup/connect4", CgroupSockAddr),
            ("cgroup/connect6", CgroupSockAddr),
            ("cgroup/connect_unix", CgroupSockAddr),
            ("cgroup/sendmsg4", CgroupSockAddr),
            ("cgroup/sendmsg6", CgroupSockAddr),
            ("cgroup/sendmsg_unix", CgroupSockAddr),
            ("cgroup/recvmsg4", CgroupSockAddr),
            ("cgroup/recvmsg6", CgroupSockAddr),
            ("cgroup/recvmsg_unix", CgroupSockAddr),
            ("cgroup/getpeername4", CgroupSockAddr),
            ("cgroup/getpeername6", CgroupSockAddr),
            ("cgroup/getpeername_unix", CgroupSockAddr),
            ("cgroup/getsockname4", CgroupSockAddr),
            ("cgroup/getsockname6", CgroupSockAddr),
            ("cgroup/getsockname_unix", CgroupSockAddr),
            ("cgroup/sysctl", CgroupSysctl),
            ("cgroup/getsockopt", CgroupSockopt),
            ("cgroup/setsockopt", CgroupSockopt),
            ("cgroup/dev", CgroupDevice),
            ("struct_ops.s", StructOps),
            ("struct_ops", StructOps),
            ("sk_lookup", SkLookup),
            ("netfilter", Netfilter),
            // Legacy names older loaders (and the kernel's samples) use.
            ("socket", SocketFilter),
            ("cgroup_skb", CgroupSkb),
            ("cgroup_sock", CgroupSock),
            ("sockopt", CgroupSockopt),
            ("perf", PerfEvent),
        ];
        for &(prefix, t) in PREFIXES {
            if let Some(rest) = section.strip_prefix(prefix) {
                if rest.is_empty()
                    || rest.starts_with('/')
                    || (prefix == "socket" && rest.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Some(t);
                }
            }
        }
        None
    }

    /// Whether programs of this type see packet data through `data` /
    /// `data_end` context fields.
    pub fn has_packet(self) -> bool {
        use ProgType::*;
        matches!(
            self,
            SocketFilter
                | SchedCls
                | SchedAct
                | Xdp
                | CgroupSkb
                | LwtIn
                | LwtOut
                | LwtXmit
                | LwtSeg6local
                | SkSkb
                | SkMsg
                | FlowDissector
                | SkReuseport
        )
    }
}

impl fmt::Display for ProgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::ProgType::{self, *};

    #[test]
    fn libbpf_section_names() {
        let cases: &[(&str, Option<ProgType>)] = &[
            ("xdp", Some(Xdp)),
            ("xdp.frags", Some(Xdp)),
            ("xdp/devmap", Some(Xdp)),
            ("xdp_prog", None),
            ("tc", Some(SchedCls)),
            ("tc/ingress", Some(SchedCls)),
            ("classifier", Some(SchedCls)),
            ("socket", Some(SocketFilter)),
            ("socket1", Some(SocketFilter)),
            ("kprobe/sys_open", Some(Kprobe)),
            ("kretprobe/tcp_v4_connect", Some(Kprobe)),
            ("uprobe//bin/bash:readline", Some(Kprobe)),
            ("tracepoint/syscalls/sys_enter_open", Some(Tracepoint)),
            ("tp/sched/sched_switch", Some(Tracepoint)),
            ("raw_tp/sched_switch", Some(RawTracepoint)),
            ("raw_tracepoint.w/x", Some(RawTracepointWritable)),
            ("fentry/do_unlinkat", Some(Tracing)),
            ("cgroup/connect4", Some(CgroupSockAddr)),
            ("cgroup/sock", Some(CgroupSock)),
            ("lsm/file_open", Some(Lsm)),
            ("from-netdev", None),
            (".text", None),
        ];
        for &(sec, want) in cases {
            assert_eq!(ProgType::from_section(sec), want, "{sec}");
        }
    }

    #[test]
    fn names_round_trip() {
        for t in [Xdp, SchedCls, Raw, Kprobe, Netfilter] {
            assert_eq!(ProgType::from_name(t.name()), Some(t));
            assert_eq!(ProgType::from_u32(t as u32), Some(t));
        }
    }
}
