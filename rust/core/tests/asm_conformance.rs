// Assembler and disassembler checked against the shared conformance data
// (see shared/conformance/FORMAT.md). The data must be present: a missing
// folder fails the tests instead of skipping them.
//
// Plain `//` comments only: the scratch crate `include!`s this file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ebpfvm_core as core_crate;

use core_crate::asm::assemble;
use core_crate::disasm::disassemble;
use core_crate::isa::{encode_all, Insn};

fn conformance_dir() -> PathBuf {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    let dir = shared.join("conformance");
    if !dir.join("bpf_conformance").is_dir() || !dir.join("ubpf").is_dir() {
        panic!(
            "conformance data not found: expected {} with bpf_conformance/ and ubpf/ \
             (the shared folder sits beside the repository root)",
            dir.display()
        );
    }
    dir
}

/// Removes a `#` comment, a trailing `\r` and surrounding blanks.
fn clean(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// Parses a `.data` file (FORMAT.md §2.1) into section name -> lines, with
/// comments and blank lines removed and `-- name @ file` includes resolved
/// relative to the file's folder.
fn parse_data(path: &Path) -> BTreeMap<String, Vec<String>> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = clean(line);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("--") {
            let (name, include) = match rest.split_once('@') {
                Some((n, f)) => (n.trim(), Some(f.trim())),
                None => (rest.trim(), None),
            };
            assert!(
                !sections.contains_key(name),
                "{}: section '{name}' repeats",
                path.display()
            );
            let mut body = Vec::new();
            if let Some(file) = include {
                let inc = path.parent().expect("file has a folder").join(file);
                let inc_text = fs::read_to_string(&inc)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", inc.display()));
                body.extend(
                    inc_text
                        .lines()
                        .map(clean)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
            sections.insert(name.to_string(), body);
            current = Some(name.to_string());
        } else if let Some(name) = &current {
            sections
                .get_mut(name)
                .expect("current section exists")
                .push(line.to_string());
        }
        // Lines before the first section are licence headers.
    }
    sections
}

/// Parses a `-- raw` section: one 64-bit little-endian word per token.
fn parse_raw(lines: &[String], path: &Path) -> Vec<Insn> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(|tok| {
            let word = match tok.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => tok.parse::<u64>(),
            }
            .unwrap_or_else(|e| panic!("{}: bad raw word '{tok}': {e}", path.display()));
            Insn::decode(&word.to_le_bytes())
        })
        .collect()
}

fn assemble_file(lines: &[String], path: &Path) -> Vec<Insn> {
    assemble(&lines.join("\n")).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// All `.data` files under `dir`, recursively, sorted.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let p = entry.expect("directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "data") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Disassembles `insns`, reassembles the text and requires the same bytes.
fn check_roundtrip(insns: &[Insn], path: &Path) {
    let text = disassemble(insns);
    let back = assemble(&text).unwrap_or_else(|e| {
        panic!(
            "{}: disassembly does not assemble: {e}\n{text}",
            path.display()
        )
    });
    assert_eq!(
        hex(&encode_all(&back)),
        hex(&encode_all(insns)),
        "{}: round trip changed the bytes; disassembly:\n{text}",
        path.display()
    );
}

#[test]
fn bpf_conformance_asm_matches_upstream_assembler() {
    let dir = conformance_dir();
    let json_path = dir.join("bpf_conformance.assembled.json");
    let json: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(&json_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", json_path.display())),
    )
    .expect("valid JSON");
    let tests = json["tests"].as_array().expect("'tests' array");
    let mut checked = 0;
    for t in tests {
        let name = t["test"].as_str().expect("'test' name");
        let code = t["code"].as_str().expect("'code' hex");
        let path = dir.join(name);
        let sections = parse_data(&path);
        let asm = sections
            .get("asm")
            .unwrap_or_else(|| panic!("{name}: no asm section"));
        let insns = assemble_file(asm, &path);
        assert_eq!(hex(&encode_all(&insns)), code, "{name}: bytecode differs");
        checked += 1;
    }
    let files = data_files(&dir.join("bpf_conformance")).len();
    assert_eq!(files, 313, "bpf_conformance file count");
    assert_eq!(checked, files, "every bpf_conformance file is in the JSON");
}

#[test]
fn ubpf_assembler_tests_match_raw() {
    let dir = conformance_dir().join("ubpf");
    for name in ["alu", "alu64", "jmp", "ldx", "st", "stx"] {
        let path = dir.join(format!("{name}.data"));
        let sections = parse_data(&path);
        let asm = assemble_file(&sections["asm"], &path);
        let raw = parse_raw(&sections["raw"], &path);
        assert!(!raw.is_empty(), "{name}: empty raw section");
        assert_eq!(
            hex(&encode_all(&asm)),
            hex(&encode_all(&raw)),
            "{name}: assembly differs from the expected raw words"
        );
    }
}

#[test]
fn every_asm_program_roundtrips() {
    let dir = conformance_dir();
    for (suite, expected) in [("bpf_conformance", 313), ("ubpf", 71)] {
        let mut count = 0;
        for path in data_files(&dir.join(suite)) {
            let sections = parse_data(&path);
            let Some(asm) = sections.get("asm") else {
                continue;
            };
            // Every program must assemble, including the invalid-register
            // error tests (%r11 and up are accepted by the assembler).
            let insns = assemble_file(asm, &path);
            assert!(!insns.is_empty(), "{}: empty program", path.display());
            check_roundtrip(&insns, &path);
            count += 1;
        }
        assert_eq!(count, expected, "{suite}: number of asm programs");
    }
}

#[test]
fn every_raw_program_roundtrips() {
    let dir = conformance_dir();
    let mut count = 0;
    let mut slots = 0;
    for suite in ["bpf_conformance", "ubpf"] {
        for path in data_files(&dir.join(suite)) {
            let sections = parse_data(&path);
            let Some(raw) = sections.get("raw") else {
                continue;
            };
            let insns = parse_raw(raw, &path);
            check_roundtrip(&insns, &path);
            count += 1;
            slots += insns.len();
        }
    }
    assert_eq!(count, 19, "number of raw programs");
    assert!(
        slots > 65536,
        "the too-many-instructions program is included"
    );
}
