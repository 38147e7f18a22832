//! A run that ends without releasing what it took (a spin lock, a reserved
//! ring-buffer record) — an unverified program that faults, or forgets —
//! does not leave the lock held or the ring blocked for everyone after it.

use std::sync::Arc;

use ebpfvm_core::asm::assemble;
use ebpfvm_core::interp::{Executable, LoadOptions};
use ebpfvm_core::maps::ringbuf::RingBuf;
use ebpfvm_core::maps::{Map, MapDef, MapType};
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::helpers::kernel_helpers;
use ebpfvm_core::runtime::run::{run, Input};
use ebpfvm_core::runtime::{self, Environment, LoadedProgram};

fn load(src: &str, maps: Vec<Arc<Map>>) -> Arc<LoadedProgram> {
    let program = Program::from_insns(assemble(src).unwrap(), 4096).unwrap();
    let prepared = runtime::prepare(&program, ProgType::Raw, &maps).unwrap();
    let regions = runtime::map_regions(&maps);
    let env = Environment::new(maps);
    let exe = Executable::new(
        Arc::new(prepared),
        LoadOptions {
            helpers: kernel_helpers(&env),
            ..Default::default()
        },
    )
    .unwrap();
    Arc::new(LoadedProgram {
        id: runtime::next_program_id(),
        name: "cleanup".into(),
        prog_type: ProgType::Raw,
        runner: Arc::new(exe),
        regions,
        env,
    })
}

#[test]
fn a_faulting_run_does_not_leave_a_reserved_record_blocking_the_ring() {
    let ring = Map::create(MapDef::new(MapType::Ringbuf, 0, 0, 4096).named("events")).unwrap();
    // Reserves 8 bytes, then reads far out of bounds before submitting.
    let leaky = load(
        "lddw %r1, map_idx 0\nmov %r2, 8\nmov %r3, 0\ncall 131\nldxdw %r0, [%r10+4096]\nexit",
        vec![ring.clone()],
    );
    assert!(run(&leaky, Input::Memory(&mut [])).is_err());
    // A well-behaved producer after it: its record must reach the consumer.
    let good = load(
        "mov %r1, 7\nstxdw [%r10-8], %r1\nlddw %r1, map_idx 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130\nexit",
        vec![ring.clone()],
    );
    assert_eq!(run(&good, Input::Memory(&mut [])).unwrap().retval, 0);
    let rb = ring.downcast::<RingBuf>().unwrap();
    let mut seen = Vec::new();
    rb.consume(&mut |rec| {
        seen.push(rec.to_vec());
        true
    });
    assert_eq!(seen, vec![7u64.to_le_bytes().to_vec()]);
}

#[test]
fn a_lock_left_held_by_a_run_is_released_when_it_ends() {
    let m = Map::create(MapDef::new(MapType::Array, 4, 8, 1).named("locked")).unwrap();
    // Takes the lock in the value and exits without unlocking.
    let src = "
        mov %r1, 0
        stxw [%r10-4], %r1
        lddw %r1, map_idx 0
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, +3
        mov %r1, %r0
        call 93
        mov %r0, 1
        exit
    ";
    let forgetful = load(src, vec![m.clone()]);
    for _ in 0..3 {
        // Each run would wait a second and fault if the lock stayed held.
        let started = std::time::Instant::now();
        assert_eq!(run(&forgetful, Input::Memory(&mut [])).unwrap().retval, 1);
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }
    assert_eq!(m.lookup(&0u32.to_le_bytes()).unwrap(), vec![0u8; 8]);
}
