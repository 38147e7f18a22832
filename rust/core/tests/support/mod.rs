//! Shared by the engines' conformance tests (included with `#[path]`):
//! the uBPF test helpers and the pre-assembled bpf_conformance programs.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use ebpfvm_core::error::ExecError;
use ebpfvm_core::helpers::{HelperError, HelperMemory, HelperRegistry};
use ebpfvm_core::interp::{LoadOptions, RunOutcome};

unsafe extern "C" fn gather_bytes(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    ((a & 0xff) << 32) | ((b & 0xff) << 24) | ((c & 0xff) << 16) | ((d & 0xff) << 8) | (e & 0xff)
}
unsafe extern "C" fn no_op(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0
}
unsafe extern "C" fn sqrti(x: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    (x as f64).sqrt() as u64
}
unsafe extern "C" fn unwind(x: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    x
}

fn memfrob(m: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    for b in m.slice_mut(a[0], a[1])? {
        *b ^= 42;
    }
    Ok(0)
}

fn strcmp_ext(m: &mut HelperMemory<'_>, a: [u64; 5]) -> Result<u64, HelperError> {
    let x = m.cstr(a[0], 4096)?.to_vec();
    let y = m.cstr(a[1], 4096)?;
    Ok(match x.as_slice().cmp(y) {
        std::cmp::Ordering::Less => -1i64 as u64,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    })
}

pub fn ubpf_helpers() -> HelperRegistry {
    let mut r = HelperRegistry::new();
    unsafe {
        r.register_native(0, gather_bytes).unwrap();
        r.register_native(2, no_op).unwrap();
        r.register_native(3, sqrti).unwrap();
        r.register_native(5, unwind).unwrap();
    }
    r.register(1, Arc::new(memfrob)).unwrap();
    r.register(4, Arc::new(strcmp_ext)).unwrap();
    r
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Load options with the uBPF helpers and its unwind rule (helper 5).
pub fn ubpf_options() -> LoadOptions {
    LoadOptions {
        helpers: ubpf_helpers(),
        unwind_helper: Some(5),
        ..LoadOptions::default()
    }
}

/// One test of `bpf_conformance.assembled.json`.
pub struct ConformanceCase {
    pub name: String,
    pub code: Vec<u8>,
    pub mem: Vec<u8>,
    pub result: u64,
}

/// All 313 cases; panics (never skips) when the shared data is missing.
pub fn conformance_cases() -> Vec<ConformanceCase> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/bpf_conformance.assembled.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): the shared folder must sit beside the repository",
            path.display()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let tests = json["tests"].as_array().expect("tests array");
    assert_eq!(tests.len(), 313);
    tests
        .iter()
        .map(|t| ConformanceCase {
            name: t["test"].as_str().expect("test name").to_string(),
            code: hex(t["code"].as_str().expect("code")),
            mem: t["mem"].as_str().map(hex).unwrap_or_default(),
            result: match &t["result"] {
                serde_json::Value::String(s) => {
                    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("result")
                }
                v => v.as_u64().expect("result"),
            },
        })
        .collect()
}

/// Runs every case with `run` and fails listing each mismatch.
pub fn check_all(run: impl Fn(&ConformanceCase, &mut [u8]) -> Result<RunOutcome, ExecError>) {
    let mut failures = Vec::new();
    for case in conformance_cases() {
        let mut mem = case.mem.clone();
        match run(&case, &mut mem) {
            Ok(o) if o.r0 == case.result => {}
            Ok(o) => failures.push(format!(
                "{}: got 0x{:x}, want 0x{:x}",
                case.name, o.r0, case.result
            )),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
