//! The verifier on the shared corpus of real objects
//! (`../shared/verifier-corpus/manifest.tsv`): every `reject` row must be
//! rejected (or fail to load), and the `accept` / `false_positive` rows that
//! pass may not fall below the recorded floor. Prints a table per project
//! (rows, verdicts, load failures, median and worst verification time, peak
//! heap use of one verification).
//!
//! Run it with the table shown:
//!     cargo test -p ebpfvm-core --release --test verifier_corpus -- --nocapture
//! and write the table as Markdown with `EBPFVM_CORPUS_REPORT=path`.
//! Times in debug builds say little; measure with `--release`.

mod verifier_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use ebpfvm_core::elf::{ElfProgram, Object};
use ebpfvm_core::maps::MapDef;
use ebpfvm_core::progtype::ProgType;
use ebpfvm_core::verifier::{verify, VerifyOptions};
use verifier_support::{human_bytes, median, ms, panic_text, shared_dir, PeakAlloc};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

/// Accept and false-positive rows the verifier accepted when this floor was
/// last raised; fewer is a regression. Raise it as the verifier improves.
const ACCEPT_FLOOR: usize = 491;
const FALSE_POSITIVE_FLOOR: usize = 100;

/// `reject` rows we accept knowingly, as (path, section, reason); any other
/// accepted `reject` row fails the test, and so does one of these once it
/// is rejected (remove it from the list then). Empty: every reject row is
/// rejected.
const KNOWN_ACCEPTED_REJECTS: &[(&str, &str, &str)] = &[];

/// `accept` / `false_positive` rows whose expectation comes from PREVAIL's
/// laxer model, as (path, function, why Linux rejects it). They must stay
/// rejected; the report lists them apart with the reason.
const PREVAIL_ONLY: &[(&str, &str, &str)] = &[
    (
        "build/bpf2bpf.o",
        "add1",
        "add1(int *x) stores through r1; as an entry point r1 is the socket \
         filter's __sk_buff, whose `len` Linux does not let programs write \
         (PREVAIL's context is writable; no Linux verdict exists for a .text \
         function)",
    ),
    (
        "build/bpf2bpf.o",
        "add2",
        "calls add1 with its own r1, the __sk_buff: the same store into \
         __sk_buff.len",
    ),
    (
        "build/byteswap.o",
        "func",
        "clang left dead `goto`s after each `exit`; Linux's check_cfg rejects \
         any unreachable instruction (PREVAIL ignores them)",
    ),
    (
        "build/correlated_branch.o",
        "ConvergedBranch",
        "the length is checked as the number `data_end - data`; Linux learns \
         packet ranges only from comparing a packet pointer with data_end \
         (pointer minus pointer is an unknown scalar there), PREVAIL tracks \
         the packet size symbolically",
    ),
];

/// Rows whose manifest type Linux cannot load them as, as (path,
/// function, type used, why).
const TYPE_OVERRIDES: &[(&str, &str, &str, &str)] = &[(
    "build/correlated_branch2.o",
    "ConvergedBranch",
    "sched_cls",
    "calls bpf_skb_store_bytes, which Linux gives tc programs but not socket \
     filters (the manifest's socket_filter is PREVAIL's default); the sample \
     is about stack reads guarded by correlated return codes",
)];

fn prevail_only(row: &Row) -> Option<&'static str> {
    PREVAIL_ONLY
        .iter()
        .find(|(p, f, _)| *p == row.path && *f == row.function)
        .map(|(_, _, why)| *why)
}

fn type_override(row: &Row) -> Option<(&'static str, &'static str)> {
    TYPE_OVERRIDES
        .iter()
        .find(|(p, f, _, _)| *p == row.path && *f == row.function)
        .map(|(_, _, t, why)| (*t, *why))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Accept,
    Reject,
    /// Safe (Linux loads it) but PREVAIL rejects it: we should accept.
    FalsePositive,
    /// No Linux verdict exists (PREVAIL-only tests, standalone subprograms).
    Unknown,
}

struct Row {
    line: usize,
    path: String,
    section: String,
    program_type: String,
    expected: Expect,
    function: String,
    prevail_issue: String,
}

enum Outcome {
    Accepted,
    Rejected { pc: Option<usize>, message: String },
    LoadFailed(String),
    Panicked(String),
}

struct Measured {
    outcome: Outcome,
    time: Duration,
    peak_bytes: usize,
    insns_processed: u64,
    prog_type: ProgType,
    type_guessed: bool,
}

fn read_manifest(dir: &Path) -> Vec<Row> {
    let path = dir.join("manifest.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .expect("manifest has a header")
        .1
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("manifest.tsv has no `{name}` column"))
    };
    let (c_path, c_section, c_type, c_expected, c_function, c_issue) = (
        col("path"),
        col("section"),
        col("program_type"),
        col("expected"),
        col("function"),
        col("prevail_issue_kind"),
    );
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let get = |c: usize| f.get(c).copied().unwrap_or("").to_string();
        let expected = match get(c_expected).as_str() {
            "accept" => Expect::Accept,
            "reject" => Expect::Reject,
            "false_positive" => Expect::FalsePositive,
            "unknown" => Expect::Unknown,
            other => panic!("manifest.tsv line {}: unknown expectation `{other}`", i + 1),
        };
        rows.push(Row {
            line: i + 1,
            path: get(c_path),
            section: get(c_section),
            program_type: get(c_type),
            expected,
            function: get(c_function),
            prevail_issue: get(c_issue),
        });
    }
    rows
}

/// The programs a row names: those of its section called `function`
/// (`*` = every program of the object).
fn pick<'o>(obj: &'o Object, row: &Row) -> Vec<&'o ElfProgram> {
    let in_section = |p: &&ElfProgram| row.section == "*" || p.section == row.section;
    let named: Vec<&ElfProgram> = obj
        .programs
        .iter()
        .filter(in_section)
        .filter(|p| row.function == "*" || p.name == row.function)
        .collect();
    if !named.is_empty() {
        return named;
    }
    // Objects without function symbols name programs after their section.
    obj.programs
        .iter()
        .filter(in_section)
        .filter(|p| p.name == row.section)
        .collect()
}

fn verify_row(obj: &Result<Object, String>, row: &Row) -> Measured {
    let failed = |msg: String| Measured {
        outcome: Outcome::LoadFailed(msg),
        time: Duration::ZERO,
        peak_bytes: 0,
        insns_processed: 0,
        prog_type: ProgType::Unspec,
        type_guessed: false,
    };
    let obj = match obj {
        Ok(o) => o,
        Err(e) => return failed(e.clone()),
    };
    let progs = pick(obj, row);
    if progs.is_empty() {
        let in_section: Vec<&str> = obj
            .programs
            .iter()
            .filter(|p| p.section == row.section)
            .map(|p| p.name.as_str())
            .take(4)
            .collect();
        return failed(format!(
            "the loader found no program `{}` in section `{}` (it has {} programs; in that section: {}{})",
            row.function,
            row.section,
            obj.programs.len(),
            in_section.join(", "),
            if in_section.len() == 4 { ", ..." } else { "" }
        ));
    }
    let maps: Vec<MapDef> = obj.maps.iter().map(|m| m.def.clone()).collect();
    // libbpf (and cilium's loader) freeze `.rodata` after filling it: the
    // kernel verifier reads its values as constants.
    let frozen: Vec<Option<&[u8]>> = obj
        .maps
        .iter()
        .map(|m| {
            m.def
                .name
                .starts_with(".rodata")
                .then_some(m.initial_value.as_deref())
                .flatten()
        })
        .collect();
    let mut total = Measured {
        outcome: Outcome::Accepted,
        time: Duration::ZERO,
        peak_bytes: 0,
        insns_processed: 0,
        prog_type: ProgType::Unspec,
        type_guessed: false,
    };
    for prog in progs {
        // The manifest's type, else libbpf's reading of the section name,
        // else a socket filter (PREVAIL's default for its generic tests).
        let manifest_type = type_override(row).map_or(row.program_type.as_str(), |(t, _)| t);
        let (prog_type, guessed) = match ProgType::from_name(manifest_type) {
            Some(t) => (t, false),
            None => (prog.prog_type.unwrap_or(ProgType::SocketFilter), true),
        };
        total.prog_type = prog_type;
        total.type_guessed = guessed;
        let program = match &prog.program {
            Ok(p) => p,
            Err(e) => {
                total.outcome = Outcome::LoadFailed(format!("{}: {e}", prog.name));
                return total;
            }
        };
        let line_info: Vec<(usize, String)> = prog
            .line_info
            .iter()
            .map(|l| (l.insn, format!("{}:{}: {}", l.file, l.line, l.source)))
            .collect();
        let opts = VerifyOptions {
            prog_type,
            maps: &maps,
            line_info: &line_info,
            frozen_values: &frozen,
            ..VerifyOptions::default()
        };
        let base = ALLOC.reset_peak();
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| verify(program, &opts)));
        total.time += start.elapsed();
        total.peak_bytes = total.peak_bytes.max(ALLOC.peak().saturating_sub(base));
        match result {
            Err(p) => {
                total.outcome = Outcome::Panicked(format!("{}: {}", prog.name, panic_text(&*p)));
                return total;
            }
            Ok(Ok(v)) => total.insns_processed += v.stats.insns_processed,
            Ok(Err(e)) => {
                total.insns_processed += e.stats.insns_processed;
                total.outcome = Outcome::Rejected {
                    pc: e.pc,
                    message: format!("{}: {}", prog.name, e.message),
                };
                return total;
            }
        }
    }
    total
}

#[derive(Default)]
struct ProjectStats {
    rows: usize,
    accept: usize,
    accept_ok: usize,
    false_positive: usize,
    false_positive_ok: usize,
    reject: usize,
    reject_ok: usize,
    unknown: usize,
    unknown_accepted: usize,
    load_failures: usize,
    panics: usize,
    times: Vec<Duration>,
    worst: Duration,
    worst_row: String,
    peak_bytes: usize,
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[test]
fn verifier_corpus() {
    let dir = shared_dir().join("verifier-corpus");
    let rows = read_manifest(&dir);
    assert!(
        rows.len() > 600,
        "manifest.tsv has only {} rows",
        rows.len()
    );

    let mut objects: BTreeMap<String, Result<Object, String>> = BTreeMap::new();
    let mut projects: BTreeMap<String, ProjectStats> = BTreeMap::new();
    let mut problems = Vec::new(); // reject rows accepted, panics
    let mut accept_failures = Vec::new();
    let mut guessed_types = 0;
    let mut known_seen = 0;
    let mut prevail_rows = Vec::new();
    let mut overridden = Vec::new();

    for row in &rows {
        let obj = objects.entry(row.path.clone()).or_insert_with(|| {
            let bytes = std::fs::read(dir.join(&row.path)).map_err(|e| format!("read: {e}"))?;
            catch_unwind(|| Object::parse(&bytes))
                .map_err(|p| format!("ELF loader panicked: {}", panic_text(&*p)))?
                .map_err(|e| format!("ELF: {e}"))
        });
        let m = verify_row(obj, row);
        let project = row.path.split('/').next().unwrap_or("").to_string();
        let st = projects.entry(project).or_default();
        st.rows += 1;
        let what = format!(
            "{}:{} [{}] ({})",
            row.path, row.section, row.function, row.line
        );
        if m.type_guessed {
            guessed_types += 1;
        }
        let accepted = matches!(m.outcome, Outcome::Accepted);
        match &m.outcome {
            Outcome::LoadFailed(_) => st.load_failures += 1,
            Outcome::Panicked(msg) => {
                st.panics += 1;
                problems.push(format!("PANIC {what}: {msg}"));
            }
            Outcome::Accepted | Outcome::Rejected { .. } => {
                st.times.push(m.time);
                if m.time >= st.worst {
                    st.worst = m.time;
                    st.worst_row = format!(
                        "{}:{} ({} insns processed)",
                        row.path, row.section, m.insns_processed
                    );
                }
                st.peak_bytes = st.peak_bytes.max(m.peak_bytes);
            }
        }
        let why = match &m.outcome {
            Outcome::Accepted => String::new(),
            Outcome::Rejected { pc, message } => match pc {
                Some(pc) => format!("rejected at {pc}: {}", first_line(message)),
                None => format!("rejected: {}", first_line(message)),
            },
            Outcome::LoadFailed(e) => format!("load failed: {}", first_line(e)),
            Outcome::Panicked(e) => format!("panicked: {}", first_line(e)),
        };
        let prevail_reason = prevail_only(row);
        if let Some(reason) = prevail_reason {
            if accepted {
                problems.push(format!(
                    "ACCEPTED {what} as {}, which Linux rejects: {reason}",
                    m.prog_type
                ));
            } else {
                prevail_rows.push(format!(
                    "{what} as {}: {why}\n      Linux rejects it too: {reason}",
                    m.prog_type
                ));
            }
        }
        if let Some((t, reason)) = type_override(row) {
            overridden.push(format!(
                "{what} runs as {t}, not {}: {reason}",
                row.program_type
            ));
        }
        match row.expected {
            Expect::Accept => {
                st.accept += 1;
                if accepted {
                    st.accept_ok += 1;
                } else if prevail_reason.is_none() {
                    accept_failures.push(format!("accept {what} as {}: {why}", m.prog_type));
                }
            }
            Expect::FalsePositive => {
                st.false_positive += 1;
                if accepted {
                    st.false_positive_ok += 1;
                } else if prevail_reason.is_none() {
                    accept_failures.push(format!(
                        "false_positive ({}) {what} as {}: {why}",
                        row.prevail_issue, m.prog_type
                    ));
                }
            }
            Expect::Reject => {
                st.reject += 1;
                let known = KNOWN_ACCEPTED_REJECTS
                    .iter()
                    .any(|(p, sec, _)| *p == row.path && *sec == row.section);
                if accepted {
                    if known {
                        known_seen += 1;
                    } else {
                        problems.push(format!("ACCEPTED reject row {what} as {}", m.prog_type));
                    }
                } else {
                    st.reject_ok += 1;
                    if known {
                        problems.push(format!(
                            "{what} is now rejected: remove it from KNOWN_ACCEPTED_REJECTS"
                        ));
                    }
                }
            }
            Expect::Unknown => {
                st.unknown += 1;
                if accepted {
                    st.unknown_accepted += 1;
                }
            }
        }
    }

    let table = render(&mut projects);
    println!("{table}");
    println!(
        "{guessed_types} rows have no Linux program type in the manifest and ran as the \
         loader's guess or a socket filter"
    );
    println!("{known_seen} reject rows accepted for the known reasons in KNOWN_ACCEPTED_REJECTS");
    if !overridden.is_empty() {
        println!("\nRows run as another type than the manifest's:");
        for o in &overridden {
            println!("  {o}");
        }
    }
    if !prevail_rows.is_empty() {
        println!(
            "\nRows only PREVAIL's laxer model accepts, rejected as Linux would ({}):",
            prevail_rows.len()
        );
        for r in &prevail_rows {
            println!("  {r}");
        }
    }
    if !accept_failures.is_empty() {
        println!("\nSafe programs not accepted ({}):", accept_failures.len());
        for f in &accept_failures {
            println!("  {f}");
        }
    }
    if let Ok(path) = std::env::var("EBPFVM_CORPUS_REPORT") {
        let mut md = String::from("# Verifier corpus results\n\n");
        md.push_str(&table);
        if !prevail_rows.is_empty() {
            let _ = writeln!(
                md,
                "\n## Rows only PREVAIL accepts (rejected as Linux would)\n"
            );
            for r in &prevail_rows {
                let _ = writeln!(md, "- {r}");
            }
        }
        if !accept_failures.is_empty() {
            let _ = writeln!(md, "\n## Safe programs not accepted\n");
            for f in &accept_failures {
                let _ = writeln!(md, "- {f}");
            }
        }
        std::fs::write(&path, md).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        println!("report written to {path}");
    }

    let sum = |f: fn(&ProjectStats) -> usize| projects.values().map(f).sum::<usize>();
    assert!(
        problems.is_empty(),
        "{} unsound or crashing verdicts:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let accepted = sum(|s| s.accept_ok);
    let fp_accepted = sum(|s| s.false_positive_ok);
    assert!(
        accepted >= ACCEPT_FLOOR,
        "regression: {accepted} accept rows accepted, the floor is {ACCEPT_FLOOR}"
    );
    assert!(
        fp_accepted >= FALSE_POSITIVE_FLOOR,
        "regression: {fp_accepted} false-positive rows accepted, the floor is {FALSE_POSITIVE_FLOOR}"
    );
}

fn render(projects: &mut BTreeMap<String, ProjectStats>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| project | rows | accept ok | false-positive ok | reject ok | unknown accepted | load failures | median | worst | peak heap | worst program |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut all = ProjectStats::default();
    for (name, s) in projects.iter_mut() {
        let _ = writeln!(
            out,
            "| {name} | {} | {}/{} | {}/{} | {}/{} | {}/{} | {} | {} | {} | {} | {} |",
            s.rows,
            s.accept_ok,
            s.accept,
            s.false_positive_ok,
            s.false_positive,
            s.reject_ok,
            s.reject,
            s.unknown_accepted,
            s.unknown,
            s.load_failures + s.panics,
            ms(median(&mut s.times)),
            ms(s.worst),
            human_bytes(s.peak_bytes),
            s.worst_row,
        );
        all.rows += s.rows;
        all.accept += s.accept;
        all.accept_ok += s.accept_ok;
        all.false_positive += s.false_positive;
        all.false_positive_ok += s.false_positive_ok;
        all.reject += s.reject;
        all.reject_ok += s.reject_ok;
        all.unknown += s.unknown;
        all.unknown_accepted += s.unknown_accepted;
        all.load_failures += s.load_failures + s.panics;
        all.times.extend_from_slice(&s.times);
        if s.worst >= all.worst {
            all.worst = s.worst;
            all.worst_row = s.worst_row.clone();
        }
        all.peak_bytes = all.peak_bytes.max(s.peak_bytes);
    }
    let _ = writeln!(
        out,
        "| **all** | {} | {}/{} | {}/{} | {}/{} | {}/{} | {} | {} | {} | {} | {} |",
        all.rows,
        all.accept_ok,
        all.accept,
        all.false_positive_ok,
        all.false_positive,
        all.reject_ok,
        all.reject,
        all.unknown_accepted,
        all.unknown,
        all.load_failures,
        ms(median(&mut all.times)),
        ms(all.worst),
        human_bytes(all.peak_bytes),
        all.worst_row,
    );
    out
}
