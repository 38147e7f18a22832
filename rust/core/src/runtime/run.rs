//! Running a [`LoadedProgram`] as its type: building the context and the
//! packet buffer, following tail calls, and reporting what the kernel's
//! test-run facility reports (return value, packet and context after).

use std::mem::MaybeUninit;
use std::sync::Arc;

use crate::error::{ExecError, FaultKind};
use crate::interp::{Region, RunSetup, STACK_BYTES};
use crate::progtype::ProgType;

use super::context::{self, Layout, Packet};
use super::{LoadedProgram, RunState};

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    /// r0 of the last program run (after tail calls).
    pub retval: u64,
    /// Instructions executed by the program that finished (tail-called
    /// programs that jumped away are not counted).
    pub instructions: u64,
    /// The packet after the run (packet programs), else empty.
    pub data: Vec<u8>,
    /// The public context structure after the run (`xdp_md`, `__sk_buff`,
    /// or the context bytes given).
    pub ctx: Vec<u8>,
    pub tail_calls: u32,
    /// The target of `bpf_redirect*`, if the program redirected.
    pub redirect: Option<u64>,
}

/// Marks the end of a program that made a tail call (the payload of the
/// helper's abort); the target is in [`RunState::tail_call`].
pub struct TailCallTaken;

/// How the run's input is given.
pub enum Input<'a> {
    /// Packet programs: the frame (from the Ethernet header) and the
    /// initial public context (`None` = zeroes; pointer fields and the
    /// fields derived from the packet are filled in).
    Packet {
        packet: &'a [u8],
        ctx: Option<&'a [u8]>,
    },
    /// Programs whose context is plain bytes (tracing programs: a
    /// `pt_regs`, a tracepoint record): r1 points at a copy of them.
    Context(&'a [u8]),
    /// Raw programs: r1 = the buffer, r2 = its length; the program may
    /// modify it.
    Memory(&'a mut [u8]),
}

/// Runs `prog` on `input`.
pub fn run(prog: &Arc<LoadedProgram>, input: Input<'_>) -> Result<RunResult, ExecError> {
    let mut state = RunState::new(prog.prog_type);
    match input {
        Input::Memory(buf) => {
            let ptr = buf.as_mut_ptr() as u64;
            let len = buf.len() as u64;
            let input = Primary::Fixed {
                lo: ptr,
                len,
                writable: true,
            };
            let (r0, n, tc) = drive(prog, &mut state, ptr, len, &[], input)?;
            Ok(RunResult {
                retval: r0,
                instructions: n,
                data: Vec::new(),
                ctx: Vec::new(),
                tail_calls: tc,
                redirect: None,
            })
        }
        Input::Context(bytes) => {
            // Zero-padded to the whole context structure (the verifier
            // proves accesses against its full size), 8-byte aligned:
            // tracing contexts are read as u64s.
            let size = crate::kernel::contexts::context_for(prog.prog_type)
                .map_or(0, |d| d.size as usize)
                .max(bytes.len());
            let mut ctx = vec![0u64; size.div_ceil(8).max(1)];
            let p = ctx.as_mut_ptr() as *mut u8;
            // SAFETY: ctx has at least bytes.len() bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
            let addr = p as u64;
            let region = [Region {
                lo: addr,
                len: size as u64,
                writable: false,
            }];
            state.ctx = addr;
            let input = Primary::Fixed {
                lo: 0,
                len: 0,
                writable: false,
            };
            let (r0, n, tc) = drive(prog, &mut state, addr, 0, &region, input)?;
            Ok(RunResult {
                retval: r0,
                instructions: n,
                data: Vec::new(),
                // SAFETY: as above.
                ctx: unsafe { std::slice::from_raw_parts(p, bytes.len()) }.to_vec(),
                tail_calls: tc,
                redirect: state.redirect,
            })
        }
        Input::Packet { packet, ctx } => run_packet(prog, &mut state, packet, ctx),
    }
}

fn fail(msg: String) -> ExecError {
    ExecError::new(0, FaultKind::HelperFailed, msg)
}

fn run_packet(
    prog: &Arc<LoadedProgram>,
    state: &mut RunState,
    packet: &[u8],
    ctx_in: Option<&[u8]>,
) -> Result<RunResult, ExecError> {
    let t = prog.prog_type;
    let layout: Layout =
        context::layout(t).ok_or_else(|| fail(format!("a {t} program does not take a packet")))?;
    let is_xdp = t == ProgType::Xdp;
    if !is_xdp && packet.len() < 14 {
        return Err(fail(format!(
            "a {t} program needs a packet of at least 14 bytes (an Ethernet header), got {}",
            packet.len()
        )));
    }
    // The kernel's test run hands L2 programs the frame from the Ethernet
    // header, and other skb programs the frame from the network header.
    let l2 = matches!(t, ProgType::Xdp | ProgType::SchedCls | ProgType::SchedAct);
    let headroom = context::XDP_HEADROOM;
    let cap = context::XDP_FRAME.max(headroom + packet.len() + context::XDP_TAIL_RESERVE);
    let mut buf = vec![0u64; cap.div_ceil(8)];
    let base = buf.as_mut_ptr() as *mut u8;
    // SAFETY: buf holds cap bytes; the packet fits after the headroom.
    unsafe { std::ptr::copy_nonoverlapping(packet.as_ptr(), base.add(headroom), packet.len()) };
    let frame = base as u64 + headroom as u64;
    let end = frame + packet.len() as u64;
    let data = if l2 { frame } else { frame + 14 };
    let pkt = Packet {
        buf: base as u64,
        cap: (cap - context::XDP_TAIL_RESERVE) as u64,
        data,
        data_end: end,
        data_meta: data,
        layout,
    };

    let mut ctx = vec![0u64; layout.size().div_ceil(8)];
    let cp = ctx.as_mut_ptr() as *mut u8;
    if let Some(init) = ctx_in {
        if init.len() > layout.public_size {
            return Err(fail(format!(
                "context for a {t} program is at most {} bytes, got {}",
                layout.public_size,
                init.len()
            )));
        }
        // SAFETY: ctx holds layout.size() >= public_size bytes.
        unsafe { std::ptr::copy_nonoverlapping(init.as_ptr(), cp, init.len()) };
    }
    if !is_xdp {
        // Fields the kernel derives from the packet.
        // SAFETY: all offsets are inside the public __sk_buff.
        let put = |off: usize, v: u32| unsafe { (cp.add(off) as *mut u32).write_unaligned(v) };
        put(0, (end - data) as u32); // len
        put(16, u16::from_ne_bytes([packet[12], packet[13]]) as u32); // protocol (__be16)
        put(160, packet.len() as u32); // wire_len
    }
    // SAFETY: cp is a run-time context of this layout.
    unsafe { pkt.store_pointers(cp as u64) };
    state.ctx = cp as u64;
    state.packet = Some(pkt);

    let ctx_region = [Region {
        lo: cp as u64,
        len: layout.size() as u64,
        writable: !is_xdp,
    }];
    let (r0, n, tc) = drive(prog, state, cp as u64, 0, &ctx_region, Primary::Packet)?;
    let p = state
        .packet
        .ok_or_else(|| fail("the packet went missing".into()))?;
    let out_lo = if l2 {
        p.data
    } else {
        p.data.saturating_sub(14).max(p.buf)
    };
    // SAFETY: helpers keep [data_meta, data_end) inside buf, and the
    // network-header programs' data is at least 14 bytes into it.
    let out =
        unsafe { std::slice::from_raw_parts(out_lo as *const u8, (p.data_end - out_lo) as usize) }
            .to_vec();
    // SAFETY: the public part of the context.
    let ctx_out = unsafe { std::slice::from_raw_parts(cp, layout.public_size) }.to_vec();
    drop(buf);
    Ok(RunResult {
        retval: r0,
        instructions: n,
        data: out,
        ctx: ctx_out,
        tail_calls: tc,
        redirect: state.redirect,
    })
}

/// Where a run's primary region comes from.
#[derive(Clone, Copy)]
enum Primary {
    Fixed {
        lo: u64,
        len: u64,
        writable: bool,
    },
    /// The packet in [`RunState::packet`], which helpers may move.
    Packet,
}

/// Runs `prog` and the programs it tail-calls. Returns (r0, instructions
/// of the last program, tail calls made).
fn drive(
    prog: &Arc<LoadedProgram>,
    state: &mut RunState,
    r1: u64,
    r2: u64,
    fixed: &[Region],
    primary: Primary,
) -> Result<(u64, u64, u32), ExecError> {
    let state_ptr: *mut RunState = state;
    let mark = super::helpers::run_mark();
    let mut chain = Vec::new();
    let r = drive_from(prog, state_ptr, r1, r2, fixed, primary, &mut chain);
    // SAFETY: every program of the run is alive (`prog` and the tail-called
    // ones in `chain`), and with them the maps whose locks and records are
    // cleaned up.
    unsafe { super::helpers::end_run(&mark) };
    drop(chain);
    r
}

fn drive_from(
    prog: &Arc<LoadedProgram>,
    state_ptr: *mut RunState,
    r1: u64,
    r2: u64,
    fixed: &[Region],
    primary: Primary,
    chain: &mut Vec<Arc<LoadedProgram>>,
) -> Result<(u64, u64, u32), ExecError> {
    let mut current = prog.clone();
    let mut stack = MaybeUninit::<[u64; STACK_BYTES / 8]>::uninit();
    let mut regions = Vec::with_capacity(fixed.len() + current.regions.len());
    loop {
        regions.clear();
        regions.extend_from_slice(fixed);
        regions.extend_from_slice(&current.regions);
        // SAFETY: no helper runs between here and run_setup.
        let (lo, len, writable) = match primary {
            Primary::Fixed { lo, len, writable } => (lo, len, writable),
            Primary::Packet => match unsafe { (*state_ptr).packet } {
                Some(p) => (p.data_meta, p.data_end - p.data_meta, true),
                None => (0, 0, false),
            },
        };
        let setup = RunSetup {
            r1,
            r2,
            input_lo: lo,
            input_len: len,
            input_writable: writable,
            regions: &regions,
            state: state_ptr as usize,
        };
        // SAFETY: every region is owned by the caller (packet, context) or
        // by the program's maps (kept alive by `current.env`) for the run;
        // the state is the RunState helpers of these programs expect.
        let r = unsafe {
            current
                .runner
                .run_setup(&setup, stack.as_mut_ptr() as *mut u8)
        };
        // SAFETY: the run is over; nothing else refers to the state.
        let st = unsafe { &mut *state_ptr };
        match r {
            Ok(o) => return Ok((o.r0, o.instructions, st.tail_calls)),
            Err(e) if e.payload.as_ref().is_some_and(|p| p.is::<TailCallTaken>()) => {
                current = st.tail_call.take().ok_or_else(|| {
                    ExecError::new(e.pc, FaultKind::HelperFailed, "tail call without a target")
                })?;
                chain.push(current.clone());
            }
            Err(e) => return Err(e),
        }
    }
}
