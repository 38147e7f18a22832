//! ebpfvm's builtins (memset, memcpy, memmove, memcmp, which clang calls
//! when it does not inline them) give the same results and the same faults
//! in every engine: from assembled programs, and from the clang-built
//! fixture rust/core/tests/elf_data/builtins.o run as XDP programs.

use std::sync::Arc;

use ebpfvm_core::asm::assemble;
use ebpfvm_core::elf::Object;
use ebpfvm_core::interp::{LoadOptions, Runner};
use ebpfvm_core::maps::Map;
use ebpfvm_core::program::Program;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::runtime::run::{run, Input};
use ebpfvm_core::runtime::{self, helpers::kernel_helpers, Environment, LoadedProgram};
use ebpfvm_jit::engine::{Engine, EngineKind};
use ebpfvm_jit::JitTier;

/// The interpreter and each JIT tier on its own.
const KINDS: [(EngineKind, JitTier); 3] = [
    (EngineKind::Interpreter, JitTier::Optimized),
    (EngineKind::Jit, JitTier::Baseline),
    (EngineKind::Jit, JitTier::Optimized),
];

fn load_raw(src: &str, kind: (EngineKind, JitTier)) -> Engine {
    let p = Program::from_insns(assemble(src).unwrap(), 4096).unwrap();
    let prepared = runtime::prepare(&p, ProgType::Raw, &[]).unwrap();
    let env = Environment::new(vec![]);
    let opts = LoadOptions {
        helpers: kernel_helpers(&env),
        ..LoadOptions::default()
    };
    Engine::load_with_tier(kind.0, kind.1, Arc::new(prepared), opts).unwrap()
}

#[test]
fn builtins_compute_the_same_in_every_engine() {
    // memset(buf+8, 'z', 4); memcpy(buf+12, buf, 4); memmove(buf+1, buf, 3);
    // r0 = memcmp(buf, buf+8, 4) << 8 | (memset's return - buf).
    let src = "
        mov %r6, %r1
        mov %r1, %r6
        add %r1, 8
        mov %r2, 0x7a
        mov %r3, 4
        call 1024
        sub %r0, %r6
        mov %r7, %r0
        mov %r1, %r6
        add %r1, 12
        mov %r2, %r6
        mov %r3, 4
        call 1025
        mov %r1, %r6
        add %r1, 1
        mov %r2, %r6
        mov %r3, 3
        call 1026
        mov %r1, %r6
        mov %r2, %r6
        add %r2, 8
        mov %r3, 4
        call 1027
        lsh %r0, 8
        or %r0, %r7
        exit";
    for kind in KINDS {
        let mut buf = *b"abcd\0\0\0\0\0\0\0\0\0\0\0\0";
        let out = load_raw(src, kind).run(&mut buf).unwrap();
        assert_eq!(&buf, b"aabc\0\0\0\0zzzzabcd", "{kind:?}");
        assert_eq!(
            out.r0,
            ((b'a' as i64 - b'z' as i64) << 8) as u64 | 8,
            "{kind:?}"
        );
    }
}

#[test]
fn builtins_of_zero_bytes_touch_nothing() {
    // n = 0 touches nothing, whatever the pointers.
    let src = "mov %r1, 0\nmov %r2, 0\nmov %r3, 0\ncall 1025\n\
               mov %r1, 0\nmov %r2, 0\nmov %r3, 0\ncall 1027\nexit";
    for kind in KINDS {
        assert_eq!(load_raw(src, kind).run(&mut []).unwrap().r0, 0, "{kind:?}");
    }
}

#[test]
fn builtins_fault_the_same_in_every_engine() {
    for (src, what) in [
        ("mov %r2, 0\nmov %r3, 17\ncall 1024\nexit", "write 17 bytes"),
        (
            "mov %r2, %r1\nlddw %r1, 0x10000\nmov %r3, 4\ncall 1025\nexit",
            "write 4 bytes at 0x10000",
        ),
        (
            "lddw %r2, 0x10000\nmov %r3, 4\ncall 1026\nexit",
            "read 4 bytes at 0x10000",
        ),
        (
            "mov %r2, %r1\nmov %r3, -1\ncall 1027\nexit",
            "read 18446744073709551615 bytes",
        ),
    ] {
        let mut faults = Vec::new();
        for kind in KINDS {
            let mut buf = [0u8; 16];
            let err = load_raw(src, kind).run(&mut buf).unwrap_err();
            assert!(err.reason.contains(what), "{kind:?}: {}\n{src}", err.reason);
            assert_eq!(buf, [0; 16], "{kind:?} wrote before faulting");
            faults.push((err.pc, err.reason));
        }
        assert_eq!(faults[0], faults[1], "{src}");
    }
}

/// `program` of the builtins fixture, loaded in `kind` with fresh maps;
/// also returns the `blobs` map.
fn load_fixture(program: &str, kind: (EngineKind, JitTier)) -> (Arc<LoadedProgram>, Arc<Map>) {
    let path = format!(
        "{}/../core/tests/elf_data/builtins.o",
        env!("CARGO_MANIFEST_DIR")
    );
    let obj = Object::parse(&std::fs::read(path).unwrap()).unwrap();
    let (maps, _) = runtime::object::create_maps(&obj, None).unwrap();
    let code = obj.program(program).unwrap().program.as_ref().unwrap();
    let prepared = runtime::prepare(code, ProgType::Xdp, &maps).unwrap();
    let env = Environment::new(maps.clone());
    let opts = LoadOptions {
        helpers: kernel_helpers(&env),
        ..LoadOptions::default()
    };
    let engine = Engine::load_with_tier(kind.0, kind.1, Arc::new(prepared), opts).unwrap();
    let runner: Arc<dyn Runner + Send + Sync> = Arc::new(engine);
    let blobs = maps[obj.map_index("blobs").unwrap()].clone();
    let loaded = Arc::new(LoadedProgram {
        id: runtime::next_program_id(),
        name: program.into(),
        prog_type: ProgType::Xdp,
        runner,
        regions: runtime::map_regions(&maps),
        env,
    });
    (loaded, blobs)
}

fn run_xdp(prog: &Arc<LoadedProgram>) -> u64 {
    let packet = [0u8; 64];
    run(
        prog,
        Input::Packet {
            packet: &packet,
            ctx: None,
        },
    )
    .unwrap()
    .retval
}

#[test]
fn clang_built_builtin_calls_run_in_every_engine() {
    let pattern: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    for kind in KINDS {
        let (copy, blobs) = load_fixture("copy_blob", kind);
        blobs.update(&0u32.to_le_bytes(), &pattern, 0).unwrap();
        assert_eq!(run_xdp(&copy), 2, "{kind:?}");
        assert_eq!(blobs.lookup(&1u32.to_le_bytes()).unwrap(), pattern);

        let (fill, blobs) = load_fixture("fill_blob", kind);
        assert_eq!(run_xdp(&fill), 2, "{kind:?}");
        assert_eq!(blobs.lookup(&0u32.to_le_bytes()).unwrap(), vec![0xa5; 2048]);

        let (shift, blobs) = load_fixture("shift_blob", kind);
        blobs.update(&0u32.to_le_bytes(), &pattern, 0).unwrap();
        assert_eq!(run_xdp(&shift), 2, "{kind:?}");
        let after = blobs.lookup(&0u32.to_le_bytes()).unwrap();
        assert_eq!(after[8..], pattern[..2040], "{kind:?}");

        let (cmp, blobs) = load_fixture("compare_blobs", kind);
        let mut other = pattern.clone();
        other[2000] = other[2000].wrapping_add(1);
        blobs.update(&0u32.to_le_bytes(), &pattern, 0).unwrap();
        blobs.update(&1u32.to_le_bytes(), &other, 0).unwrap();
        assert_eq!(run_xdp(&cmp), 1, "{kind:?}");

        let (clear, blobs) = load_fixture("clear_stack", kind);
        let mut v = vec![0u8; 2048];
        v[0] = 50;
        blobs.update(&0u32.to_le_bytes(), &v, 0).unwrap();
        assert_eq!(run_xdp(&clear), 350, "{kind:?}");
    }
}
