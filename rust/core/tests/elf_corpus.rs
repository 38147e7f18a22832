//! The ELF loader against the shared verifier corpus (`../shared/verifier-corpus`):
//! every object parses (or fails for a listed, genuine reason), every
//! program section of `manifest.tsv` is found, and what `objects.tsv`
//! says about each object agrees with what the loader reads.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use ebpfvm_core::elf::{MapKind, Object};
use ebpfvm_core::isa::{Insn, CALL_HELPER, CALL_LOCAL, OP_CALL};
use ebpfvm_core::maps::Map;

fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/verifier-corpus");
    assert!(
        dir.join("objects.tsv").is_file(),
        "the shared verifier corpus is missing: expected {} (the shared test data lives in ../shared beside the repository)",
        dir.display()
    );
    dir
}

/// Rows of a TSV file as maps from column name to value.
fn read_tsv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header line").split('\t').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t').chain(std::iter::repeat("")))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Objects outside `invalid/` that do not load, with the reason (a part of
/// the error message) and why that is genuinely unsupported.
const UNSUPPORTED: &[(&str, &str, &str)] = &[];

fn project(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn load_all() -> Vec<(String, Result<Object, String>)> {
    let dir = corpus_dir();
    read_tsv(&dir.join("objects.tsv"))
        .iter()
        .map(|row| {
            let path = row["path"].clone();
            let bytes = fs::read(dir.join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            let parsed = Object::parse(&bytes).map_err(|e| e.message);
            (path, parsed)
        })
        .collect()
}

#[test]
fn every_object_file_is_listed() {
    let dir = corpus_dir();
    let listed: Vec<String> = read_tsv(&dir.join("objects.tsv"))
        .into_iter()
        .map(|r| r["path"].clone())
        .collect();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if fs::read(&p).unwrap().starts_with(b"\x7fELF") {
                let rel = p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
                assert!(
                    listed.contains(&rel),
                    "{rel} is an ELF file missing from objects.tsv"
                );
            }
        }
    }
}

#[test]
fn corpus_objects_parse_and_agree_with_inventory() {
    let dir = corpus_dir();
    let rows = read_tsv(&dir.join("objects.tsv"));
    let loaded = load_all();
    #[derive(Default)]
    struct Stats {
        objects: usize,
        programs: usize,
        checked: usize,
        maps: usize,
        relocs: usize,
        core: usize,
        failures: Vec<String>,
    }
    let mut table: BTreeMap<String, Stats> = BTreeMap::new();
    let mut problems = Vec::new();
    for (row, (path, parsed)) in rows.iter().zip(&loaded) {
        let st = table.entry(project(path).to_string()).or_default();
        st.objects += 1;
        let invalid = path.starts_with("invalid/");
        let obj = match parsed {
            Ok(o) => o,
            Err(e) => {
                st.failures.push(format!("{path}: {e}"));
                if !invalid {
                    match UNSUPPORTED.iter().find(|u| u.0 == path) {
                        Some(u) if e.contains(u.1) => {}
                        _ => problems.push(format!("{path} does not load: {e}")),
                    }
                }
                continue;
            }
        };
        st.programs += obj.programs.len();
        st.checked += obj.programs.iter().filter(|p| p.program.is_ok()).count();
        st.maps += obj.maps.len();
        st.relocs += obj.relocations_applied;
        st.core += obj.core_relocations_applied;
        if invalid {
            continue;
        }
        // Instructions (an lddw counts once) over all executable sections.
        let insns: usize = obj
            .code_sections
            .iter()
            .map(|s| {
                let lddw = s.insns.iter().filter(|i| i.is_lddw()).count();
                s.insns.len() - lddw
            })
            .sum();
        if row["insns"].parse::<usize>().ok() != Some(insns) {
            problems.push(format!(
                "{path}: {insns} instructions, objects.tsv says {}",
                row["insns"]
            ));
        }
        let count = |pred: &dyn Fn(&str) -> bool| {
            obj.maps
                .iter()
                .filter(|m| matches!(&m.kind, MapKind::Regular { section } if pred(section)))
                .count()
        };
        let legacy = count(&|s| s == "maps" || s.starts_with("maps/"));
        let btf_maps = count(&|s| s == ".maps");
        if row["legacy_maps"].parse::<usize>().ok() != Some(legacy) {
            problems.push(format!(
                "{path}: {legacy} legacy maps, objects.tsv says {}",
                row["legacy_maps"]
            ));
        }
        if row["btf_maps"].parse::<usize>().ok() != Some(btf_maps) {
            problems.push(format!(
                "{path}: {btf_maps} BTF maps, objects.tsv says {}",
                row["btf_maps"]
            ));
        }
        let style = match (legacy > 0, btf_maps > 0) {
            (true, false) => "legacy",
            (false, true) => "btf",
            (false, false) => "none",
            (true, true) => "both",
        };
        if style != row["maps_style"] {
            problems.push(format!(
                "{path}: map style {style}, objects.tsv says {}",
                row["maps_style"]
            ));
        }
        // Executable sections with code, helper calls and BPF-to-BPF calls
        // in them (before linking).
        let counted = |pred: &dyn Fn(&Insn) -> bool| -> usize {
            obj.code_sections
                .iter()
                .map(|s| s.insns.iter().filter(|i| pred(i)).count())
                .sum()
        };
        let exec = obj
            .code_sections
            .iter()
            .filter(|s| !s.insns.is_empty())
            .count();
        let helpers = counted(&|i| i.opc == OP_CALL && i.src == CALL_HELPER);
        let local = counted(&|i| i.opc == OP_CALL && i.src == CALL_LOCAL);
        let num = |column: &str| row[column].parse::<usize>().ok();
        // objects.tsv counts calls to undefined functions (memset, externs)
        // apart; here those the loader resolves (builtins, kernel helpers
        // declared as externs) are helper calls, the others BPF-to-BPF
        // calls left unresolved.
        let all_expected = [
            num("helper_calls"),
            num("local_calls"),
            num("external_calls"),
        ]
        .into_iter()
        .sum::<Option<usize>>();
        let externs = num("external_calls").unwrap_or(0);
        if helpers < num("helper_calls").unwrap_or(0)
            || helpers > num("helper_calls").unwrap_or(0) + externs
        {
            problems.push(format!(
                "{path}: {helpers} helper calls, objects.tsv says {:?} helper calls and {externs} external calls",
                num("helper_calls")
            ));
        }
        for (what, ours, expected) in [
            ("executable sections", exec, num("exec_sections")),
            (
                "helper, local and external calls",
                helpers + local,
                all_expected,
            ),
        ] {
            if expected != Some(ours) {
                problems.push(format!(
                    "{path}: {ours} {what}, objects.tsv says {expected:?}"
                ));
            }
        }
        let mut data: Vec<String> = obj
            .maps
            .iter()
            .filter(|m| m.is_global_data() && m.def.name != ".kconfig")
            .map(|m| format!("{}:{}", m.def.name, m.def.value_size))
            .collect();
        data.sort();
        let mut expected: Vec<String> = row["global_data_sections"]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        expected.sort();
        if data != expected {
            problems.push(format!(
                "{path}: global data {data:?}, objects.tsv says {expected:?}"
            ));
        }
        let license = obj.license.clone().unwrap_or_default();
        if license != row["license_section"] {
            problems.push(format!(
                "{path}: license {license:?}, objects.tsv says {:?}",
                row["license_section"]
            ));
        }
        if row["core_relocs"].parse::<usize>().ok() != Some(obj.core_relocations_applied) {
            problems.push(format!(
                "{path}: {} CO-RE relocations applied, objects.tsv lists {}",
                obj.core_relocations_applied, row["core_relocs"]
            ));
        }
        if row["BTF"] == "1" && obj.btf.is_none() {
            problems.push(format!(
                "{path}: has .BTF but none was parsed: {:?}",
                obj.warnings
            ));
        }
    }
    println!(
        "{:<18} {:>7} {:>8} {:>8} {:>5} {:>7} {:>5} {:>8}",
        "project", "objects", "programs", "checked", "maps", "relocs", "core", "failures"
    );
    for (name, st) in &table {
        println!(
            "{:<18} {:>7} {:>8} {:>8} {:>5} {:>7} {:>5} {:>8}",
            name,
            st.objects,
            st.programs,
            st.checked,
            st.maps,
            st.relocs,
            st.core,
            st.failures.len()
        );
        for f in &st.failures {
            println!("    failed: {f}");
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn manifest_sections_are_programs() {
    let dir = corpus_dir();
    let manifest = read_tsv(&dir.join("manifest.tsv"));
    let mut cache: HashMap<String, Result<Object, String>> = HashMap::new();
    let mut missing = Vec::new();
    for row in &manifest {
        let path = &row["path"];
        let obj = cache.entry(path.clone()).or_insert_with(|| {
            let bytes = fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            Object::parse(&bytes).map_err(|e| e.message)
        });
        let obj = match obj {
            Ok(o) => o,
            Err(e) => {
                if !path.starts_with("invalid/") {
                    missing.push(format!("{path}: does not load: {e}"));
                }
                continue;
            }
        };
        let section = &row["section"];
        let function = &row["function"];
        let found = obj
            .programs
            .iter()
            .any(|p| &p.section == section && (&p.name == function || function.is_empty()));
        if !found {
            let have: Vec<String> = obj
                .programs
                .iter()
                .map(|p| format!("{}:{}", p.section, p.name))
                .collect();
            missing.push(format!(
                "{path}: no program {function} in section {section} (have {have:?})"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{} manifest rows not found:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn invalid_objects_give_errors_or_objects_without_panicking() {
    let dir = corpus_dir().join("invalid");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = fs::read(&p).unwrap();
        match Object::parse(&bytes) {
            Ok(o) => println!("{}: loads, {} programs", p.display(), o.programs.len()),
            Err(e) => {
                assert!(!e.message.is_empty());
                println!("{}: {}", p.display(), e.message)
            }
        }
        n += 1;
    }
    assert!(n >= 10, "expected the invalid/ objects, found {n}");
}

#[test]
fn create_every_map() {
    let mut ok = 0;
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for (_, parsed) in load_all() {
        let Ok(obj) = parsed else { continue };
        for spec in &obj.maps {
            match Map::create(spec.def.clone()) {
                Ok(_) => ok += 1,
                Err(e) => {
                    *failed
                        .entry(format!("{}: {e}", spec.def.map_type))
                        .or_default() += 1
                }
            }
        }
    }
    println!(
        "map creation: {ok} succeeded, {} failed",
        failed.values().sum::<usize>()
    );
    for (why, n) in &failed {
        println!("    {n:>4} x {why}");
    }
    assert!(ok > 0, "no map could be created");
}
