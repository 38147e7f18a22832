//! Pinned maps: a map file is the complete map, shared by every process
//! that opens it, and it keeps every update that returned even if its
//! writer is killed with SIGKILL.
//!
//! Tests that need a second process run this test binary again with
//! `EBPFVM_PIN_CHILD` naming what the child does (see `child_entry`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ebpfvm_core::maps::{cpu, Map, MapDef, MapError, MapType, BPF_ANY, BPF_EXIST, BPF_NOEXIST};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ebpfvm-pin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn def(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapDef {
    MapDef::new(map_type, key_size, value_size, max_entries).named("pinned")
}

fn open(def: &MapDef, path: &Path) -> Arc<Map> {
    Map::open_pinned(def.clone(), path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

fn k32(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

fn v64(v: u64) -> [u8; 8] {
    v.to_ne_bytes()
}

fn as_u64(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes[..8].try_into().unwrap())
}

/// The hash map the cross-process tests share.
fn shared_hash() -> MapDef {
    def(MapType::Hash, 4, 8, 1 << 16)
}

fn shared_counter() -> MapDef {
    def(MapType::Array, 4, 8, 4)
}

// ---------------------------------------------------------- child side

const COUNTER_ADDS: u64 = 200_000;

/// What a child process does, chosen by `EBPFVM_PIN_CHILD`; it reports on
/// stdout, one line per fact, which the parent reads.
#[test]
#[ignore = "entry point of child processes started by the other tests"]
fn child_entry() {
    let Ok(mode) = std::env::var("EBPFVM_PIN_CHILD") else {
        return;
    };
    let path = PathBuf::from(std::env::var("EBPFVM_PIN_PATH").unwrap());
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        "read" => {
            let map = open(&shared_hash(), &path);
            let mut cursor: Option<Vec<u8>> = None;
            while let Some(key) = map.next_key(cursor.as_deref()).unwrap() {
                let value = map.lookup(&key).unwrap();
                let k = u32::from_ne_bytes(key[..].try_into().unwrap());
                writeln!(out, "@@ {k}={}", as_u64(&value)).unwrap();
                cursor = Some(key);
            }
        }
        "write" => {
            let map = open(&shared_hash(), &path);
            for i in 0..100u32 {
                map.update(&k32(i + 1000), &v64(i as u64 * 5), BPF_NOEXIST)
                    .unwrap();
            }
            writeln!(out, "@@ written").unwrap();
        }
        "write-until-killed" => {
            let map = open(&shared_hash(), &path);
            for i in 0u32.. {
                map.update(&k32(i % (1 << 16)), &v64(i as u64 * 3), BPF_ANY)
                    .unwrap();
                // Every update has returned once its line is out.
                writeln!(out, "@@ {i}").unwrap();
                out.flush().unwrap();
            }
        }
        "count" => {
            let map = open(&shared_counter(), &path);
            let ptr = map.imp().lookup_ptr(&k32(1), 0).unwrap();
            let counter = unsafe { AtomicU64::from_ptr(ptr.as_ptr().cast()) };
            writeln!(out, "@@ ready").unwrap();
            out.flush().unwrap();
            for _ in 0..COUNTER_ADDS {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            writeln!(out, "@@ counted").unwrap();
        }
        "insert-odd" => {
            let map = open(&shared_hash(), &path);
            for i in (1..20_000u32).step_by(2) {
                map.update(&k32(i), &v64(i as u64), BPF_NOEXIST).unwrap();
            }
            writeln!(out, "@@ inserted").unwrap();
        }
        "percpu" => {
            // A different CPU count here must not change the pinned map.
            cpu::set_num_cpus(cpu::num_cpus() + 3).unwrap();
            let map = open(&def(MapType::PercpuArray, 4, 8, 2), &path);
            let value = map.lookup(&k32(1)).unwrap();
            writeln!(out, "@@ cpus={} bytes={}", map.num_cpus(), value.len()).unwrap();
            for slot in value.chunks(8) {
                writeln!(out, "@@ slot={}", as_u64(slot)).unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(mode: &str, path: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_entry",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("EBPFVM_PIN_CHILD", mode)
    .env("EBPFVM_PIN_PATH", path)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Runs a child to completion and returns its report lines.
fn run_child(mode: &str, path: &Path) -> Vec<String> {
    let output = child(mode, path).output().unwrap();
    assert!(
        output.status.success(),
        "child '{mode}' failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    report_lines(&output.stdout)
}

/// The child's own lines, marked with "@@ " (the test harness prints its
/// banner around them, sometimes on the same line).
fn report_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(report_of)
        .map(str::to_owned)
        .collect()
}

fn report_of(line: &str) -> Option<&str> {
    line.find("@@ ").map(|at| line[at + 3..].trim_end())
}

// --------------------------------------------------------------- tests

#[test]
fn reopening_after_drop_finds_every_kind_of_map_as_left() {
    let dir = TempDir::new("reopen");
    let hash = def(MapType::Hash, 8, 16, 100);
    let array = def(MapType::Array, 4, 12, 10);
    let percpu = def(MapType::PercpuArray, 4, 4, 3);
    let percpu_hash = def(MapType::PercpuHash, 4, 4, 3);
    {
        let m = open(&hash, &dir.path("hash"));
        for i in 0..50u64 {
            m.update(&i.to_ne_bytes(), &[i as u8; 16], BPF_ANY).unwrap();
        }
        m.delete(&7u64.to_ne_bytes()).unwrap();
        assert_eq!(m.pin_path(), Some(dir.path("hash").as_path()));
        open(&array, &dir.path("array"))
            .update(&k32(9), &[3; 12], BPF_ANY)
            .unwrap();
        let m = open(&percpu, &dir.path("percpu"));
        let all = vec![1; m.user_value_size()];
        m.update(&k32(2), &all, BPF_ANY).unwrap();
        let m = open(&percpu_hash, &dir.path("percpu_hash"));
        m.imp()
            .update_from_program(&k32(5), &[4; 4], BPF_ANY, 0)
            .unwrap();
    }
    let m = open(&hash, &dir.path("hash"));
    assert_eq!(m.len(), 49);
    for i in 0..50u64 {
        let got = m.lookup(&i.to_ne_bytes());
        if i == 7 {
            assert_eq!(got, Err(MapError::NotFound));
        } else {
            assert_eq!(got.unwrap(), vec![i as u8; 16]);
        }
    }
    let m = open(&array, &dir.path("array"));
    assert_eq!(m.lookup(&k32(9)).unwrap(), vec![3; 12]);
    assert_eq!(m.lookup(&k32(8)).unwrap(), vec![0; 12]);
    let m = open(&percpu, &dir.path("percpu"));
    assert_eq!(m.lookup(&k32(2)).unwrap(), vec![1; m.user_value_size()]);
    let m = open(&percpu_hash, &dir.path("percpu_hash"));
    let value = m.lookup(&k32(5)).unwrap();
    assert_eq!(&value[..4], &[4; 4]);
    assert!(value[8..].iter().all(|b| *b == 0));
}

#[test]
fn lru_order_survives_reopening() {
    let dir = TempDir::new("lru");
    let lru = def(MapType::LruHash, 4, 8, 3);
    {
        let m = open(&lru, &dir.path("lru"));
        for i in 1..=3 {
            m.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
        }
        assert!(m.imp().lookup_ptr(&k32(1), 0).is_some());
    }
    let m = open(&lru, &dir.path("lru"));
    // 2 is the least recently used: it goes first.
    m.update(&k32(4), &v64(4), BPF_ANY).unwrap();
    assert_eq!(m.lookup(&k32(2)), Err(MapError::NotFound));
    for i in [1, 3, 4] {
        assert_eq!(as_u64(&m.lookup(&k32(i)).unwrap()), i as u64);
    }
}

#[test]
fn two_opens_of_one_path_share_the_same_memory() {
    let dir = TempDir::new("shared");
    let path = dir.path("map");
    let a = open(&shared_hash(), &path);
    let b = open(&shared_hash(), &path);
    a.update(&k32(1), &v64(11), BPF_ANY).unwrap();
    assert_eq!(as_u64(&b.lookup(&k32(1)).unwrap()), 11);
    b.delete(&k32(1)).unwrap();
    assert_eq!(a.lookup(&k32(1)), Err(MapError::NotFound));
    assert_eq!(a.len(), 0);
}

#[test]
fn racing_creators_end_up_with_one_map() {
    let dir = TempDir::new("race");
    let path = dir.path("map");
    let maps: Vec<Arc<Map>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| open(&shared_hash(), &path)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, m) in maps.iter().enumerate() {
        m.update(&k32(i as u32), &v64(i as u64), BPF_NOEXIST)
            .unwrap();
    }
    for m in &maps {
        assert_eq!(m.len(), maps.len());
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("map")]);
}

#[test]
fn a_different_definition_is_refused_naming_the_field() {
    let dir = TempDir::new("mismatch");
    let path = dir.path("map");
    drop(open(&def(MapType::Hash, 4, 8, 16), &path));
    let cases = [
        (def(MapType::Hash, 4, 16, 16), "value_size"),
        (def(MapType::Hash, 8, 8, 16), "key_size"),
        (def(MapType::Hash, 4, 8, 32), "max_entries"),
        (def(MapType::LruHash, 4, 8, 16), "map_type"),
        (def(MapType::Array, 4, 8, 16), "map_type"),
    ];
    for (other, field) in cases {
        match Map::open_pinned(other.clone(), &path) {
            Err(MapError::Invalid(m)) => assert!(m.contains(field), "{other:?}: {m}"),
            r => panic!("{other:?} opened a mismatching pin: {r:?}"),
        }
    }
    let mut flagged = def(MapType::Hash, 4, 8, 16);
    flagged.flags = ebpfvm_core::maps::BPF_F_NO_PREALLOC;
    assert!(matches!(
        Map::open_pinned(flagged, &path),
        Err(MapError::Invalid(m)) if m.contains("map_flags")
    ));
    // The original definition still opens it.
    drop(open(&def(MapType::Hash, 4, 8, 16), &path));
}

#[test]
fn broken_files_are_refused() {
    let dir = TempDir::new("broken");
    let hash = def(MapType::Hash, 4, 8, 64);
    let path = dir.path("map");
    drop(open(&hash, &path));
    let full = std::fs::read(&path).unwrap();

    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    assert!(
        matches!(Map::open_pinned(hash.clone(), &path), Err(MapError::Io(m)) if m.contains("truncated"))
    );

    std::fs::write(&path, &full[..50]).unwrap();
    assert!(
        matches!(Map::open_pinned(hash.clone(), &path), Err(MapError::Io(m)) if m.contains("truncated"))
    );

    let mut garbage = full.clone();
    garbage[..8].copy_from_slice(b"NOTAMAP!");
    std::fs::write(&path, &garbage).unwrap();
    assert!(
        matches!(Map::open_pinned(hash.clone(), &path), Err(MapError::Invalid(m)) if m.contains("magic"))
    );

    let missing_dir = dir.path("no/such/dir/map");
    assert!(matches!(
        Map::open_pinned(hash.clone(), &missing_dir),
        Err(MapError::Io(_))
    ));
    assert!(matches!(
        Map::open_pinned(hash.clone(), &dir.0),
        Err(MapError::Io(_))
    ));

    // Pinning is for the storage-backed types only.
    let queue = MapDef::new(MapType::Queue, 0, 8, 4);
    assert!(Map::open_pinned(queue, &dir.path("queue")).is_err());
}

#[test]
fn a_second_process_sees_what_the_first_wrote() {
    let dir = TempDir::new("processes");
    let path = dir.path("map");
    let map = open(&shared_hash(), &path);
    for i in 0..100u32 {
        map.update(&k32(i), &v64(i as u64 * 7), BPF_ANY).unwrap();
    }
    let mut lines = run_child("read", &path);
    lines.sort();
    let mut expected: Vec<String> = (0..100u32)
        .map(|i| format!("{i}={}", i as u64 * 7))
        .collect();
    expected.sort();
    assert_eq!(lines, expected);
    // And the other way round, while this process keeps the map open.
    assert_eq!(run_child("write", &path), vec!["written"]);
    assert_eq!(map.len(), 200);
    for i in 0..100u32 {
        assert_eq!(as_u64(&map.lookup(&k32(i + 1000)).unwrap()), i as u64 * 5);
    }
}

#[test]
fn a_per_cpu_pin_keeps_its_cpu_count_in_other_processes() {
    let dir = TempDir::new("percpu");
    let path = dir.path("map");
    let map = open(&def(MapType::PercpuArray, 4, 8, 2), &path);
    let ncpus = map.num_cpus();
    let value: Vec<u8> = (0..ncpus as u64)
        .flat_map(|c| (c + 10).to_ne_bytes())
        .collect();
    map.update(&k32(1), &value, BPF_ANY).unwrap();
    let lines = run_child("percpu", &path);
    let mut expected = vec![format!("cpus={ncpus} bytes={}", ncpus * 8)];
    expected.extend((0..ncpus).map(|c| format!("slot={}", c + 10)));
    assert_eq!(lines, expected);
}

#[test]
fn updates_that_returned_survive_sigkill() {
    let dir = TempDir::new("sigkill");
    let path = dir.path("map");
    drop(open(&shared_hash(), &path));
    let mut writer = child("write-until-killed", &path).spawn().unwrap();
    let stdout = writer.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut confirmed: Option<u32> = None;
    let mut line = String::new();
    while confirmed.is_none_or(|n| n < 3000) {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "writer stopped early"
        );
        if let Some(Ok(n)) = report_of(&line).map(str::parse::<u32>) {
            confirmed = Some(n);
        }
    }
    writer.kill().unwrap(); // SIGKILL
                            // Lines written before the kill still count as confirmed.
    for rest in reader.lines() {
        if let Some(Ok(n)) = report_of(&rest.unwrap()).map(str::parse::<u32>) {
            confirmed = Some(n);
        }
    }
    // Reap it: a zombie still counts as alive for the lock's owner check.
    writer.wait().unwrap();
    let last = confirmed.unwrap();
    // The pipe holds far fewer lines than the keys, so none wrapped around.
    assert!(last < 1 << 16);
    let map = open(&shared_hash(), &path);
    for i in 0..=last {
        let value = map
            .lookup(&k32(i))
            .unwrap_or_else(|e| panic!("confirmed update {i} of {last} lost: {e}"));
        assert_eq!(as_u64(&value), i as u64 * 3);
    }
    // At most the one update in flight when the kill hit is beyond them.
    assert!(map.len() == last as usize + 1 || map.len() == last as usize + 2);
    // The map still works for writers (the lock is free or taken over).
    map.update(&k32(u32::MAX), &v64(1), BPF_ANY).unwrap();
}

#[test]
fn two_processes_update_one_map_at_once() {
    let dir = TempDir::new("two-writers");
    let counter_path = dir.path("counter");
    let hash_path = dir.path("hash");
    let counter = open(&shared_counter(), &counter_path);
    let hash = open(&shared_hash(), &hash_path);
    let mut counting = child("count", &counter_path).spawn().unwrap();
    let mut inserting = child("insert-odd", &hash_path).spawn().unwrap();
    let ptr = counter.imp().lookup_ptr(&k32(1), 0).unwrap();
    let cell = unsafe { AtomicU64::from_ptr(ptr.as_ptr().cast()) };
    for _ in 0..COUNTER_ADDS {
        cell.fetch_add(1, Ordering::Relaxed);
    }
    for i in (0..20_000u32).step_by(2) {
        hash.update(&k32(i), &v64(i as u64), BPF_NOEXIST).unwrap();
    }
    for (name, child) in [("count", &mut counting), ("insert-odd", &mut inserting)] {
        let status = child.wait().unwrap();
        assert!(status.success(), "child {name} failed");
    }
    assert_eq!(as_u64(&counter.lookup(&k32(1)).unwrap()), 2 * COUNTER_ADDS);
    assert_eq!(hash.len(), 20_000);
    for i in 0..20_000u32 {
        assert_eq!(as_u64(&hash.lookup(&k32(i)).unwrap()), i as u64);
    }
}

/// Offsets inside the pinned file's header (see `maps/region.rs`): the
/// lock word (`u64`: holder pid, and its start time in the high half) and
/// the entry count.
const LOCK_OFFSET: usize = 48;
const COUNT_OFFSET: usize = 56;

/// Writes `owner` into the lock word and `count` into the entry count, as
/// a writer killed in the middle of an update would leave them.
fn forge_dead_writer(path: &Path, owner: u64, count: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[LOCK_OFFSET..LOCK_OFFSET + 8].copy_from_slice(&owner.to_ne_bytes());
    bytes[COUNT_OFFSET..COUNT_OFFSET + 4].copy_from_slice(&count.to_ne_bytes());
    std::fs::write(path, &bytes).unwrap();
}

/// Checks that the map at `path` (LRU, 8 entries, keys 0..5 inserted in
/// order) works at once and has been repaired.
fn check_repaired(lru: &MapDef, path: &Path) {
    let m = open(lru, path);
    // A lock that is never taken over would hang the lookup: fail instead.
    let (done, finished) = std::sync::mpsc::channel();
    let looker = Arc::clone(&m);
    std::thread::spawn(move || {
        let _ = done.send(looker.lookup(&k32(3)));
    });
    let found = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the dead writer's lock was not taken over");
    assert_eq!(as_u64(&found.unwrap()), 3);
    assert_eq!(m.len(), 5, "the count is rebuilt from the table");
    // The free slots and the LRU order are intact: filling the map evicts
    // the oldest key first.
    for i in 5..9 {
        m.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
    }
    assert_eq!(m.len(), 8);
    assert_eq!(m.lookup(&k32(0)), Err(MapError::NotFound));
    assert_eq!(as_u64(&m.lookup(&k32(1)).unwrap()), 1);
}

fn lru_with_five(dir: &TempDir, name: &str) -> (MapDef, PathBuf) {
    let lru = def(MapType::LruHash, 4, 8, 8);
    let path = dir.path(name);
    let m = open(&lru, &path);
    for i in 0..5 {
        m.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
    }
    (lru, path)
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over_and_the_map_repaired() {
    let dir = TempDir::new("dead-lock");
    let (lru, path) = lru_with_five(&dir, "map");
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    forge_dead_writer(&path, dead_pid as u64, 7);
    check_repaired(&lru, &path);
}

#[test]
fn a_lock_naming_a_recycled_pid_is_taken_over() {
    let dir = TempDir::new("recycled-pid");
    let (lru, path) = lru_with_five(&dir, "map");
    // Our own pid is alive, but with another start time it names an
    // earlier process that had the same pid.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let start: u64 = after_name
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let other_start = (start as u32 ^ 0x5555) as u64;
    forge_dead_writer(&path, other_start << 32 | std::process::id() as u64, 7);
    check_repaired(&lru, &path);
}

mod corrupt_files {
    use super::*;
    use proptest::prelude::*;

    /// Any damage to a pin's table (everything after the lock word) gives
    /// errors or wrong answers, never a panic, a hang or a bad access.
    fn damage_then_use(map_type: MapType, damage: &[(usize, u8)]) {
        let dir = TempDir::new(&format!("corrupt-{}", map_type.name()));
        let map_def = def(map_type, 4, 8, 16);
        let path = dir.path("map");
        {
            let m = open(&map_def, &path);
            for i in 0..12u32 {
                m.update(&k32(i), &v64(i as u64), BPF_ANY).unwrap();
            }
            m.delete(&k32(3)).unwrap();
            m.delete(&k32(7)).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let first = LOCK_OFFSET + 8;
        for &(at, value) in damage {
            let at = first + at % (bytes.len() - first);
            bytes[at] = value;
        }
        std::fs::write(&path, &bytes).unwrap();
        let Ok(m) = Map::open_pinned(map_def.clone(), &path) else {
            return;
        };
        for i in 0..20u32 {
            let _ = m.lookup(&k32(i));
            let _ = m.imp().lookup_ptr(&k32(i), 0);
            let _ = m.update(&k32(i + 100), &v64(1), BPF_ANY);
            let _ = m.update(&k32(i), &v64(2), BPF_EXIST);
            let _ = m.delete(&k32(i / 2));
        }
        let mut cursor: Option<Vec<u8>> = None;
        for _ in 0..100 {
            match m.next_key(cursor.as_deref()) {
                Ok(Some(next)) => cursor = Some(next),
                _ => break,
            }
        }
        assert!(m.len() <= 16);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn damaged_hash_files_never_crash(
            damage in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..40)
        ) {
            damage_then_use(MapType::Hash, &damage);
        }

        #[test]
        fn damaged_lru_files_never_crash(
            damage in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..40)
        ) {
            damage_then_use(MapType::LruHash, &damage);
        }
    }
}
