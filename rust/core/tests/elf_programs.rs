//! What the ELF loader makes of particular objects: linked subprograms and
//! callbacks, map and global-data relocations, legacy and BTF map
//! definitions, CO-RE, line info, and precise errors for bad headers.
//!
//! Objects come from the shared corpus (`../shared/verifier-corpus`), the
//! project's examples (`examples/bpf`) and `tests/elf_data/callbacks.o`
//! and `builtins.o` (sources beside them).

use std::fs;
use std::path::{Path, PathBuf};

use ebpfvm_core::btf::{IntKind, TypeDesc};
use ebpfvm_core::elf::{ElfProgram, MapKind, Object, Pinning};
use ebpfvm_core::isa::*;
use ebpfvm_core::kernel::helper_protos::{
    BUILTIN_MEMCMP, BUILTIN_MEMCPY, BUILTIN_MEMMOVE, BUILTIN_MEMSET,
};
use ebpfvm_core::maps::{MapType, BPF_F_RDONLY_PROG};
use ebpfvm_core::progtype::ProgType;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus(path: &str) -> Object {
    let dir = manifest_dir().join("../../../shared/verifier-corpus");
    assert!(
        dir.is_dir(),
        "the shared verifier corpus is missing: expected {}",
        dir.display()
    );
    parse_file(&dir.join(path))
}

fn parse_file(path: &Path) -> Object {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Object::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn callbacks() -> Object {
    parse_file(&manifest_dir().join("tests/elf_data/callbacks.o"))
}

fn builtins() -> Object {
    parse_file(&manifest_dir().join("tests/elf_data/builtins.o"))
}

fn prog<'a>(obj: &'a Object, name: &str) -> &'a ElfProgram {
    obj.program(name)
        .unwrap_or_else(|| panic!("no program {name}"))
}

/// Absolute target of the call or callback load at `pc`.
fn target(p: &ElfProgram, pc: usize) -> usize {
    (pc as i64 + 1 + p.insns[pc].imm as i64) as usize
}

/// The name func_info gives the function starting at `insn`.
fn func_at(p: &ElfProgram, insn: usize) -> &str {
    p.func_info
        .iter()
        .find(|f| f.insn == insn)
        .map(|f| f.name.as_str())
        .unwrap_or_else(|| panic!("no function starts at {insn} of {}", p.name))
}

#[test]
fn bpf_to_bpf_calls_are_linked_transitively() {
    let obj = corpus("build/bpf2bpf.o");
    let func = prog(&obj, "func");
    assert_eq!(func.section, "test");
    assert!(!func.subprogram);
    assert!(func.program.is_ok(), "{:?}", func.program);
    let calls: Vec<usize> = (0..func.insns.len())
        .filter(|&pc| func.insns[pc].opc == OP_CALL && func.insns[pc].src == CALL_LOCAL)
        .collect();
    assert_eq!(
        calls.len(),
        4,
        "func calls add2 twice, add2 calls add1 twice"
    );
    // Both calls of func go to add2, both calls inside add2 go to add1.
    assert_eq!(func_at(func, target(func, calls[0])), "add2");
    assert_eq!(func_at(func, target(func, calls[1])), "add2");
    assert_eq!(func_at(func, target(func, calls[2])), "add1");
    assert_eq!(func_at(func, target(func, calls[3])), "add1");
    // add1 and add2 are appended once each.
    assert_eq!(func.func_info.len(), 3);
    let p = func.program.as_ref().unwrap();
    assert_eq!(p.functions().len(), 3);
    // .text functions are listed too, as subprograms.
    let add2 = prog(&obj, "add2");
    assert!(add2.subprogram && add2.prog_type.is_none() && add2.section == ".text");
}

#[test]
fn callbacks_kconfig_and_text_globals() {
    let obj = callbacks();
    let loops = prog(&obj, "loops");
    assert_eq!(loops.prog_type, Some(ProgType::Xdp));
    assert!(loops.program.is_ok(), "{:?}", loops.program);
    let callbacks: Vec<usize> = (0..loops.insns.len())
        .filter(|&pc| loops.insns[pc].is_lddw() && loops.insns[pc].src == PSEUDO_FUNC)
        .collect();
    assert_eq!(callbacks.len(), 2);
    assert_eq!(func_at(loops, target(loops, callbacks[0])), "add_one");
    assert_eq!(func_at(loops, target(loops, callbacks[1])), "visit");
    let call = (0..loops.insns.len())
        .find(|&pc| loops.insns[pc].opc == OP_CALL && loops.insns[pc].src == CALL_LOCAL)
        .unwrap();
    assert_eq!(func_at(loops, target(loops, call)), "twice");

    // The map reference, and the .kconfig extern as a map value load.
    let counts = obj.map_index("counts").unwrap();
    let kconfig = obj.map_index(".kconfig").unwrap();
    let refs = loops.program.as_ref().unwrap().object_refs().to_vec();
    assert_eq!(refs.len(), 2);
    assert_eq!((refs[0].kind, refs[0].id), (PSEUDO_MAP_IDX, counts as i32));
    assert_eq!(
        (refs[1].kind, refs[1].id, refs[1].offset),
        (PSEUDO_MAP_IDX_VALUE, kconfig as i32, 0)
    );
    let k = &obj.maps[kconfig];
    assert_eq!(k.vars()[0].name, "CONFIG_HZ");
    assert_eq!(
        (k.def.value_size, k.def.flags & BPF_F_RDONLY_PROG),
        (4, BPF_F_RDONLY_PROG)
    );

    let twice = prog(&obj, "twice");
    assert!(twice.subprogram);
    assert_eq!(twice.insns.len(), 3);
    assert_eq!(obj.license.as_deref(), Some("GPL"));
}

#[test]
fn core_relocations_resolve_against_the_objects_own_btf() {
    let obj = callbacks();
    assert_eq!(obj.core_relocations_applied, 11);
    assert!(obj.warnings.is_empty(), "{:?}", obj.warnings);
    let f = prog(&obj, "fields");
    let imms: Vec<(u8, i32)> = f.insns.iter().map(|i| (i.opc, i.imm)).collect();
    // struct pkt { u32 a; u32 flag:3; u32 rest:29; u64 b; }: libbpf reads
    // `flag` with the 4-byte load at offset 4 and shifts by 61 both ways.
    assert!(imms.contains(&(0x67, 61)), "lshift 61 (lsh64 imm)");
    assert!(imms.contains(&(0x77, 61)), "rshift 61 (rsh64 imm)");
    // GREEN = 7 comes as a 64-bit immediate.
    assert!(f
        .insns
        .windows(2)
        .any(|w| w[0].is_lddw() && w[0].imm == 7 && w[1].imm == 0));
    // field size of b (8), offset of b (8), size of struct pkt (16)
    let movs: Vec<i32> = f
        .insns
        .iter()
        .filter(|i| i.opc == 0xb7)
        .map(|i| i.imm)
        .collect();
    assert!(
        movs.contains(&16) && movs.iter().filter(|&&v| v == 8).count() >= 2,
        "{movs:?}"
    );
    // The byte offset (4) and size (4) of the bitfield.
    assert!(movs.iter().filter(|&&v| v == 4).count() >= 2, "{movs:?}");
}

#[test]
fn corpus_core_relocations_keep_clang_values_for_plain_fields() {
    // Against the object's own BTF, non-bitfield relocations resolve to the
    // values clang already emitted: relocated code equals the raw code
    // everywhere but the relocated lddw and call instructions.
    for path in [
        "cilium-examples/tcprtt_bpf_bpfel.o",
        "cilium-examples/tcprtt_sockops_bpf_bpfel.o",
    ] {
        let dir = manifest_dir().join("../../../shared/verifier-corpus");
        let bytes = fs::read(dir.join(path)).unwrap();
        let obj = Object::parse(&bytes).unwrap();
        assert!(obj.core_relocations_applied > 0);
        assert!(obj.warnings.is_empty(), "{path}: {:?}", obj.warnings);
        for p in &obj.programs {
            assert!(p.program.is_ok(), "{path} {}: {:?}", p.name, p.program);
        }
        let text = obj
            .code_sections
            .iter()
            .find(|s| s.name.starts_with("fentry") || s.name.starts_with("sockops"))
            .unwrap();
        let raw = locate(&bytes, &text.insns);
        let mut pc = 0;
        while pc < text.insns.len() {
            let a = text.insns[pc];
            if a.is_lddw() {
                pc += 2;
                continue;
            }
            if a.opc != OP_CALL {
                assert_eq!(a, raw[pc], "{path} {} instruction {pc}", text.name);
            }
            pc += 1;
        }
    }
}

/// The raw instructions of the section whose relocated form is `insns`:
/// found in the file by their first non-lddw instruction run.
fn locate(bytes: &[u8], insns: &[Insn]) -> Vec<Insn> {
    // Sections are 8-aligned in these objects: scan every 8-aligned start.
    let words: Vec<Insn> = (0..bytes.len() / 8)
        .map(|k| Insn::decode(bytes[k * 8..k * 8 + 8].try_into().unwrap()))
        .collect();
    let first = &insns[..insns.len().min(4)];
    let start = (0..words.len())
        .find(|&k| words[k..].starts_with(first))
        .expect("section code found in the file");
    words[start..start + insns.len()].to_vec()
}

#[test]
fn global_data_sections_become_array_maps() {
    let obj = corpus("build/global_variable.o");
    let names: Vec<&str> = obj.maps.iter().map(|m| m.def.name.as_str()).collect();
    assert_eq!(names, [".bss", ".rodata", ".data"]);
    let bss = &obj.maps[0];
    assert_eq!(bss.initial_value.as_deref(), Some(&[0u8; 8][..]));
    assert_eq!(
        bss.vars()
            .iter()
            .map(|v| (v.name.as_str(), v.offset, v.size))
            .collect::<Vec<_>>(),
        [("global_var", 0, 4), ("global_var_2", 4, 4)]
    );
    let rodata = &obj.maps[1];
    assert_eq!(rodata.def.map_type, MapType::Array);
    assert_eq!(rodata.def.max_entries, 1);
    assert_ne!(rodata.def.flags & BPF_F_RDONLY_PROG, 0);
    assert!(matches!(&rodata.kind, MapKind::GlobalData { section, .. } if section == ".rodata"));
    // The value type of a data map is its DATASEC.
    let btf = obj.btf.as_ref().unwrap();
    let var = &rodata.vars()[0];
    assert!(matches!(
        btf.describe(var.type_id.unwrap()).unwrap(),
        TypeDesc::Int {
            size: 4,
            kind: IntKind::Plain,
            ..
        }
    ));
    // Loads of .bss+0, .bss+4, .rodata+0 and .data+0, as map value loads.
    let func = prog(&obj, "func");
    let refs: Vec<(u8, i32, i32)> = func
        .program
        .as_ref()
        .unwrap()
        .object_refs()
        .iter()
        .map(|r| (r.kind, r.id, r.offset))
        .collect();
    let v = PSEUDO_MAP_IDX_VALUE;
    assert_eq!(refs, [(v, 0, 0), (v, 0, 4), (v, 1, 0), (v, 2, 0)]);
}

#[test]
fn set_var_writes_the_initial_value() {
    let mut obj = parse_file(&manifest_dir().join("../../examples/bpf/globals_calls.o"));
    let i = obj.map_index(".rodata").unwrap();
    let rodata = &mut obj.maps[i];
    let scale = rodata
        .vars()
        .iter()
        .find(|v| v.name == "scale")
        .unwrap()
        .clone();
    assert_eq!(scale.size, 4);
    rodata.set_var("scale", &7u32.to_le_bytes()).unwrap();
    let init = rodata.initial_value.as_ref().unwrap();
    let at = scale.offset as usize;
    assert_eq!(&init[at..at + 4], &7u32.to_le_bytes());
    assert!(rodata
        .set_var("scale", &[1])
        .unwrap_err()
        .message
        .contains("4 bytes"));
    assert!(rodata.set_var("nope", &[1]).is_err());
    // A custom data section keeps its name and holds its initialiser.
    let stats = &obj.maps[obj.map_index(".data.stats").unwrap()];
    assert_eq!(stats.def.value_size, 16);
    assert_eq!(&stats.initial_value.as_ref().unwrap()[8..12], &[0xff; 4]);
    assert!(obj.programs.iter().all(|p| p.program.is_ok()));
}

#[test]
fn btf_maps_of_maps_and_program_arrays() {
    let obj = corpus("build/map_in_map.o");
    let outer = &obj.maps[obj.map_index("array_of_maps").unwrap()];
    assert_eq!(outer.def.map_type, MapType::ArrayOfMaps);
    assert_eq!(outer.def.value_size, 4);
    let inner = outer.inner.as_ref().unwrap();
    assert_eq!(
        (inner.def.map_type, inner.def.key_size, inner.def.value_size),
        (MapType::Array, 4, 4)
    );
    assert_eq!(outer.def.inner.as_deref(), Some(&inner.def));
    assert_eq!(outer.map_in_map_init, [(0, "inner_map".to_string())]);

    let obj = corpus("build/prog_array.o");
    let pa = &obj.maps[0];
    assert_eq!(pa.def.map_type, MapType::ProgArray);
    let init: Vec<(u32, &str)> = pa
        .prog_array_init
        .iter()
        .map(|(s, n)| (*s, n.as_str()))
        .collect();
    assert_eq!(
        init,
        [(0, "func0"), (1, "func1"), (2, "func2"), (3, "func3")]
    );
    // The key type is described from BTF.
    let btf = obj.btf.as_ref().unwrap();
    assert_eq!(btf.describe(pa.key_type.unwrap()).unwrap().size(), 4);
}

#[test]
fn legacy_map_sections() {
    // struct bpf_load_map_def (28 bytes), several maps in one section.
    let obj = corpus("linux/sockex3_kern.o");
    let maps: Vec<(&str, MapType, u32, u32)> = obj
        .maps
        .iter()
        .map(|m| {
            (
                m.def.name.as_str(),
                m.def.map_type,
                m.def.key_size,
                m.def.max_entries,
            )
        })
        .collect();
    assert_eq!(
        maps,
        [
            ("jmp_table", MapType::ProgArray, 4, 8),
            ("percpu_map", MapType::Array, 4, 32),
            ("hash_map", MapType::Hash, 16, 1024)
        ]
    );
    // Old objects have no function symbols: one program per section.
    let p = prog(&obj, "socket/3");
    assert_eq!(p.prog_type, Some(ProgType::SocketFilter));
    let ids: Vec<i32> = p
        .program
        .as_ref()
        .unwrap()
        .object_refs()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [1, 0, 0, 2, 0, 2, 0]);
    assert_eq!(obj.license.as_deref(), Some("GPL"));
    assert_eq!(obj.kernel_version, None);

    // Inner maps of legacy maps of maps, by inner_map_idx across sections.
    let obj = corpus("build/map_in_map_legacy.o");
    let outer = &obj.maps[0];
    assert_eq!(outer.inner.as_ref().unwrap().def.name, "inner_map");

    // iproute2's struct bpf_elf_map (36 bytes) carries pinning.
    let obj = corpus("cilium/bpf_xdp_dsr_linux.o");
    assert!(obj.maps.iter().any(|m| m.pinning == Pinning::GlobalNs));
    // RELA relocations (Open vSwitch's datapath).
    let obj = corpus("ovs/datapath.o");
    assert!(obj.relocations_applied > 0);
    assert!(obj.kernel_version.is_some());
    assert!(obj.programs.iter().all(|p| p.program.is_ok()));
}

#[test]
fn line_info_gives_source_lines_per_instruction() {
    let obj = callbacks();
    let loops = prog(&obj, "loops");
    let first = &loops.line_info[0];
    assert_eq!((first.insn, first.file.as_str()), (0, "./callbacks.c"));
    assert!(first.source.contains("int loops"), "{first:?}");
    let src = fs::read_to_string(manifest_dir().join("tests/elf_data/callbacks.c")).unwrap();
    let lines: Vec<&str> = src.lines().collect();
    for l in loops.line_info.iter().filter(|l| l.line > 0) {
        assert!(l.insn < loops.insns.len());
        assert_eq!(lines[l.line as usize - 1], l.source, "line {}", l.line);
    }
    // Every instruction has a line: the last record at or before it.
    let lddw = loops.insns.iter().position(|i| i.is_lddw()).unwrap();
    assert!(loops
        .line_at(lddw)
        .unwrap()
        .source
        .contains("bpf_loop(10, add_one"));
    assert!(loops.line_at(lddw + 1).unwrap().source.contains("bpf_loop"));
    assert_eq!(loops.func_at(lddw).unwrap().name, "loops");
    assert_eq!(loops.func_at(loops.insns.len() - 1).unwrap().name, "twice");
    // Records of appended subprograms are renumbered into the program.
    let add_one_start = loops
        .func_info
        .iter()
        .find(|f| f.name == "add_one")
        .unwrap()
        .insn;
    assert!(loops
        .line_info
        .iter()
        .any(|l| l.insn >= add_one_start && l.source.contains("*sum += index")));
}

#[test]
fn externs_named_after_kernel_helpers_become_helper_calls() {
    let obj = corpus("build/externalfunction.o");
    let func = prog(&obj, "func");
    assert!(func.program.is_ok(), "{:?}", func.program);
    // `call -1` with a relocation to bpf_map_lookup_elem: helper 1 now.
    let call = func.insns[6];
    assert_eq!((call.opc, call.src, call.imm), (OP_CALL, CALL_HELPER, 1));
}

/// The helper call instructions of a program, by id.
fn helper_calls(p: &ElfProgram) -> Vec<u32> {
    p.insns
        .iter()
        .filter(|i| i.opc == OP_CALL && i.src == CALL_HELPER)
        .map(|i| i.imm as u32)
        .collect()
}

#[test]
fn c_library_calls_become_builtins() {
    let obj = builtins();
    for (name, builtin) in [
        ("copy_blob", BUILTIN_MEMCPY),
        ("fill_blob", BUILTIN_MEMSET),
        ("shift_blob", BUILTIN_MEMMOVE),
        ("compare_blobs", BUILTIN_MEMCMP),
        ("clear_stack", BUILTIN_MEMSET),
    ] {
        let p = prog(&obj, name);
        assert!(p.program.is_ok(), "{name}: {:?}", p.program);
        let calls = helper_calls(p);
        assert_eq!(
            calls.iter().filter(|&&id| id == builtin).count(),
            1,
            "{name}: {calls:?}"
        );
        // Nothing is left as a BPF-to-BPF call to a missing function.
        assert!(
            !p.insns
                .iter()
                .any(|i| i.opc == OP_CALL && i.src == CALL_LOCAL),
            "{name}"
        );
    }
}

#[test]
fn unresolved_externs_fail_only_their_programs() {
    let obj = builtins();
    let p = prog(&obj, "calls_unknown");
    let err = p.program.as_ref().unwrap_err();
    assert_eq!(err.pc, Some(1));
    assert!(
        err.reason
            .contains("call to 'no_such_function', an undefined function"),
        "{err}"
    );
    assert!(prog(&obj, "fill_blob").program.is_ok());
}

fn header_error(mutate: impl Fn(&mut Vec<u8>)) -> String {
    let mut bytes = fs::read(manifest_dir().join("tests/elf_data/callbacks.o")).unwrap();
    mutate(&mut bytes);
    Object::parse(&bytes).unwrap_err().message
}

#[test]
fn precise_errors_for_bad_headers() {
    assert!(header_error(|b| b[5] = 2).contains("big-endian"));
    assert!(header_error(|b| b[4] = 1).contains("32-bit"));
    assert!(header_error(|b| b[0] = 0).contains("not an ELF"));
    assert!(header_error(|b| b[18] = 62).contains("not BPF (247)"));
    assert!(header_error(|b| b.truncate(40)).contains("ELF header"));
    // Section header table cut off.
    let e = header_error(|b| {
        let n = b.len() - 100;
        b.truncate(n)
    });
    assert!(e.contains("section"), "{e}");
}

#[test]
fn describe_map_value_types() {
    let obj = corpus("cilium-examples/kprobe_percpu_bpf_bpfel.o");
    let btf = obj.btf.as_ref().unwrap();
    assert!(obj.maps.iter().any(|m| m.value_type.is_some()));
    for m in &obj.maps {
        if let Some(v) = m.value_type {
            let desc = btf.describe(v).unwrap();
            assert_eq!(desc.size(), m.def.value_size as u64, "{}", m.def.name);
        }
    }
}
