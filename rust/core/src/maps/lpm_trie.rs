//! `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix-match tables (routing, ACLs).
//!
//! A key is a u32 prefix length (host order) followed by the address bytes
//! (network order, most significant bit first). Updates and deletes name an
//! exact prefix; lookups return the value of the longest stored prefix that
//! covers the key's address (within the key's own prefix length).
//!
//! The structure is the kernel's: a path-compressed binary trie in which
//! every node carries a prefix, and *intermediate* nodes (no value) join two
//! subtrees that diverge. A lookup visits at most one node per distinct
//! stored prefix length on the path, so IPv4 and IPv6 tables with many
//! prefixes stay fast. Nodes live in an arena addressed by index; values
//! live in a [`SlotStore`] so their addresses stay valid for programs.
//! Iteration (`next_key`) is post-order, more specific prefixes before the
//! prefixes that cover them, as in the kernel.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::reference_maps::{
    check_create_flags, check_update_flags, def_error, SlotStore, BPF_F_ACCESS_MASK,
    BPF_F_NUMA_NODE,
};
use super::{MapDef, MapError, MapImpl, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST};

/// Bytes of the prefix-length field at the start of every key.
const PREFIXLEN_BYTES: usize = 4;
/// The kernel's key and value bounds (`LPM_KEY_SIZE_MAX`, ...).
const MAX_DATA_BYTES: u32 = 256;
const MAX_VALUE_SIZE: u32 = (4 << 20) - 512;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    prefixlen: u32,
    child: [u32; 2],
    /// Value slot, or `NIL` for an intermediate node.
    value: u32,
}

impl Node {
    fn is_intermediate(&self) -> bool {
        self.value == NIL
    }
}

/// Where a node hangs: the root pointer or a child pointer of a node.
#[derive(Clone, Copy)]
enum Link {
    Root,
    Child(u32, usize),
}

struct Trie {
    data_len: usize,
    max_prefixlen: u32,
    nodes: Vec<Node>,
    /// Node `i`'s address bytes are `data[i * data_len..][..data_len]`.
    data: Vec<u8>,
    free_nodes: Vec<u32>,
    root: u32,
    entries: usize,
    values: SlotStore,
}

/// A parsed key: prefix length and address bytes.
#[derive(Clone, Copy)]
struct Key<'a> {
    prefixlen: u32,
    data: &'a [u8],
}

fn bit(data: &[u8], index: u32) -> usize {
    ((data[(index / 8) as usize] >> (7 - index % 8)) & 1) as usize
}

/// Number of leading bits `a` and `b` share, at most `limit`.
fn common_prefix(a: &[u8], b: &[u8], limit: u32) -> u32 {
    let mut matched = 0u32;
    let mut chunks_a = a.chunks_exact(8);
    let mut chunks_b = b.chunks_exact(8);
    for (x, y) in (&mut chunks_a).zip(&mut chunks_b) {
        if matched >= limit {
            return limit;
        }
        let diff = u64::from_be_bytes(x.try_into().unwrap_or_default())
            ^ u64::from_be_bytes(y.try_into().unwrap_or_default());
        if diff != 0 {
            return (matched + diff.leading_zeros()).min(limit);
        }
        matched += 64;
    }
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        if matched >= limit {
            return limit;
        }
        let diff = x ^ y;
        if diff != 0 {
            return (matched + diff.leading_zeros()).min(limit);
        }
        matched += 8;
    }
    matched.min(limit)
}

impl Trie {
    fn node_data(&self, node: u32) -> &[u8] {
        let start = node as usize * self.data_len;
        &self.data[start..start + self.data_len]
    }

    /// Bits `node`'s prefix shares with `key`, within both prefix lengths.
    fn match_len(&self, node: u32, key: Key) -> u32 {
        let limit = self.nodes[node as usize].prefixlen.min(key.prefixlen);
        common_prefix(self.node_data(node), key.data, limit)
    }

    fn alloc_node(&mut self, prefixlen: u32, data: &[u8], value: u32) -> u32 {
        let node = Node {
            prefixlen,
            child: [NIL, NIL],
            value,
        };
        let index = match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.data.resize(self.nodes.len() * self.data_len, 0);
                self.nodes.len() as u32 - 1
            }
        };
        let start = index as usize * self.data_len;
        self.data[start..start + self.data_len].copy_from_slice(data);
        index
    }

    fn free_node(&mut self, node: u32) {
        self.free_nodes.push(node);
    }

    fn set_link(&mut self, link: Link, target: u32) {
        match link {
            Link::Root => self.root = target,
            Link::Child(parent, dir) => self.nodes[parent as usize].child[dir] = target,
        }
    }

    /// The value slot of the longest prefix covering `key`.
    fn longest_match(&self, key: Key) -> Option<u32> {
        let mut found = None;
        let mut node = self.root;
        while node != NIL {
            let n = self.nodes[node as usize];
            let matched = self.match_len(node, key);
            if matched == self.max_prefixlen {
                found = Some(n.value).filter(|&v| v != NIL).or(found);
                break;
            }
            if matched < n.prefixlen {
                break;
            }
            if !n.is_intermediate() {
                found = Some(n.value);
            }
            node = n.child[bit(key.data, n.prefixlen)];
        }
        found
    }

    /// The node storing exactly `key`'s prefix, with the path from the
    /// root to it (inclusive).
    fn find_exact(&self, key: Key) -> Option<Vec<u32>> {
        let mut path = Vec::new();
        let mut node = self.root;
        while node != NIL {
            let n = self.nodes[node as usize];
            if self.match_len(node, key) < n.prefixlen {
                return None;
            }
            path.push(node);
            if n.prefixlen == key.prefixlen {
                return (!n.is_intermediate()).then_some(path);
            }
            node = n.child[bit(key.data, n.prefixlen)];
        }
        None
    }

    fn update(
        &mut self,
        key: Key,
        value: &[u8],
        flags: u64,
        max_entries: usize,
    ) -> Result<(), MapError> {
        let mut link = Link::Root;
        let mut node = self.root;
        let mut matched = 0;
        while node != NIL {
            let n = self.nodes[node as usize];
            matched = self.match_len(node, key);
            if n.prefixlen != matched
                || n.prefixlen == key.prefixlen
                || n.prefixlen == self.max_prefixlen
            {
                break;
            }
            let dir = bit(key.data, n.prefixlen);
            link = Link::Child(node, dir);
            node = n.child[dir];
        }
        let exact = node != NIL && self.nodes[node as usize].prefixlen == matched;
        if exact && !self.nodes[node as usize].is_intermediate() {
            if flags == BPF_NOEXIST {
                return Err(MapError::Exists);
            }
            let n = self.nodes[node as usize];
            self.write_data(node, key.data);
            self.values.write(n.value, value);
            return Ok(());
        }
        if flags == BPF_EXIST {
            return Err(MapError::NotFound);
        }
        if self.entries >= max_entries {
            return Err(MapError::NoSpace);
        }
        let slot = self.values.alloc().ok_or(MapError::NoSpace)?;
        self.values.write(slot, value);
        self.entries += 1;
        if exact {
            // An intermediate node with exactly this prefix becomes an entry.
            self.nodes[node as usize].value = slot;
            self.write_data(node, key.data);
            return Ok(());
        }
        let new = self.alloc_node(key.prefixlen, key.data, slot);
        if node == NIL {
            self.set_link(link, new);
        } else if matched == key.prefixlen {
            // The new prefix covers `node`: it goes above it.
            let dir = bit(self.node_data(node), matched);
            self.nodes[new as usize].child[dir] = node;
            self.set_link(link, new);
        } else {
            // The prefixes diverge after `matched` bits: join them.
            let joined = self.node_data(node).to_vec();
            let im = self.alloc_node(matched, &joined, NIL);
            let key_dir = bit(key.data, matched);
            self.nodes[im as usize].child[key_dir] = new;
            self.nodes[im as usize].child[1 - key_dir] = node;
            self.set_link(link, im);
        }
        Ok(())
    }

    fn write_data(&mut self, node: u32, data: &[u8]) {
        let start = node as usize * self.data_len;
        self.data[start..start + self.data_len].copy_from_slice(data);
    }

    fn delete(&mut self, key: Key) -> Result<(), MapError> {
        let mut parent = NIL;
        let mut parent_link = Link::Root;
        let mut link = Link::Root;
        let mut node = self.root;
        while node != NIL {
            let n = self.nodes[node as usize];
            let matched = self.match_len(node, key);
            if n.prefixlen != matched || n.prefixlen == key.prefixlen {
                break;
            }
            parent = node;
            parent_link = link;
            let dir = bit(key.data, n.prefixlen);
            link = Link::Child(node, dir);
            node = n.child[dir];
        }
        if node == NIL {
            return Err(MapError::NotFound);
        }
        let n = self.nodes[node as usize];
        if n.prefixlen != key.prefixlen
            || n.is_intermediate()
            || self.match_len(node, key) != n.prefixlen
        {
            return Err(MapError::NotFound);
        }
        self.values.release(n.value);
        self.entries -= 1;
        match n.child {
            [a, b] if a != NIL && b != NIL => self.nodes[node as usize].value = NIL,
            [NIL, NIL] if parent != NIL && self.nodes[parent as usize].is_intermediate() => {
                // The joining node has nothing left to join: its other
                // subtree takes its place.
                let p = self.nodes[parent as usize];
                let sibling = if p.child[0] == node {
                    p.child[1]
                } else {
                    p.child[0]
                };
                self.set_link(parent_link, sibling);
                self.free_node(parent);
                self.free_node(node);
            }
            [a, b] => {
                // Zero or one child: it (or nothing) takes the node's place.
                self.set_link(link, if a != NIL { a } else { b });
                self.free_node(node);
            }
        }
        Ok(())
    }

    /// The first node in post-order below `node` (always an entry: only
    /// leaves come first, and leaves are never intermediate).
    fn first_below(&self, mut node: u32) -> u32 {
        loop {
            let n = self.nodes[node as usize];
            if n.child[0] != NIL {
                node = n.child[0];
            } else if n.child[1] != NIL {
                node = n.child[1];
            } else {
                return node;
            }
        }
    }

    /// The entry after `key` in post-order; the first entry if `key` is
    /// `None` or not stored.
    fn next_node(&self, key: Option<Key>) -> Option<u32> {
        if self.root == NIL {
            return None;
        }
        let Some(mut path) = key.and_then(|k| self.find_exact(k)) else {
            return Some(self.first_below(self.root));
        };
        while let Some(current) = path.pop() {
            let &parent = path.last()?;
            let p = self.nodes[parent as usize];
            if p.child[0] == current && p.child[1] != NIL {
                return Some(self.first_below(p.child[1]));
            }
            if !p.is_intermediate() {
                return Some(parent);
            }
        }
        None
    }

    fn key_bytes(&self, node: u32) -> Vec<u8> {
        let mut key = self.nodes[node as usize].prefixlen.to_ne_bytes().to_vec();
        key.extend_from_slice(self.node_data(node));
        key
    }
}

/// An LPM trie map.
pub struct LpmTrie {
    data_len: usize,
    max_prefixlen: u32,
    value_size: usize,
    max_entries: usize,
    trie: RwLock<Trie>,
}

impl LpmTrie {
    pub fn new(def: &MapDef) -> Result<LpmTrie, MapError> {
        check_create_flags(def, BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK)?;
        if def.flags & BPF_F_NO_PREALLOC == 0 {
            return Err(def_error(
                def,
                "LPM tries must be created with BPF_F_NO_PREALLOC",
            ));
        }
        let data_len = def.key_size.saturating_sub(PREFIXLEN_BYTES as u32);
        if data_len == 0 || data_len > MAX_DATA_BYTES {
            return Err(def_error(
                def,
                format!(
                    "key_size must be 4 (prefix length) + 1..=256 address bytes, got {}",
                    def.key_size
                ),
            ));
        }
        if def.value_size == 0 || def.value_size > MAX_VALUE_SIZE {
            return Err(def_error(
                def,
                format!(
                    "value_size must be 1..={MAX_VALUE_SIZE}, got {}",
                    def.value_size
                ),
            ));
        }
        if def.max_entries == 0 {
            return Err(def_error(def, "max_entries must be positive"));
        }
        let max_prefixlen = data_len * 8;
        Ok(LpmTrie {
            data_len: data_len as usize,
            max_prefixlen,
            value_size: def.value_size as usize,
            max_entries: def.max_entries as usize,
            trie: RwLock::new(Trie {
                data_len: data_len as usize,
                max_prefixlen,
                nodes: Vec::new(),
                data: Vec::new(),
                free_nodes: Vec::new(),
                root: NIL,
                entries: 0,
                values: SlotStore::new(def.value_size as usize, def.max_entries as usize),
            }),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Trie> {
        self.trie.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Trie> {
        self.trie.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Splits a key; with `exact`, its prefix length must fit the address.
    fn parse<'a>(&self, key: &'a [u8], exact: bool) -> Result<Key<'a>, MapError> {
        if key.len() != PREFIXLEN_BYTES + self.data_len {
            return Err(MapError::invalid(format!(
                "LPM keys are {} bytes (u32 prefix length + {} address bytes), got {}",
                PREFIXLEN_BYTES + self.data_len,
                self.data_len,
                key.len()
            )));
        }
        let (len, data) = key.split_at(PREFIXLEN_BYTES);
        let prefixlen = u32::from_ne_bytes(len.try_into().unwrap_or_default());
        if prefixlen > self.max_prefixlen {
            if exact {
                return Err(MapError::invalid(format!(
                    "prefix length {prefixlen} exceeds the {} address bits",
                    self.max_prefixlen
                )));
            }
            // A lookup beyond the address size matches as a full address.
            return Ok(Key {
                prefixlen: self.max_prefixlen,
                data,
            });
        }
        Ok(Key { prefixlen, data })
    }

    /// Longest-prefix-match of `key`: the value's address, if any entry
    /// covers it.
    pub fn longest_match_ptr(&self, key: &[u8]) -> Option<NonNull<u8>> {
        let key = self.parse(key, false).ok()?;
        let trie = self.read();
        trie.longest_match(key).map(|slot| trie.values.ptr(slot))
    }
}

impl MapImpl for LpmTrie {
    fn lookup_ptr(&self, key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        self.longest_match_ptr(key)
    }

    fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let key = self.parse(key, false)?;
        let trie = self.read();
        let slot = trie.longest_match(key).ok_or(MapError::NotFound)?;
        Ok(trie.values.read(slot, self.value_size))
    }

    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_update_flags(flags)?;
        let key = self.parse(key, true)?;
        if value.len() != self.value_size {
            return Err(MapError::invalid(format!(
                "values are {} bytes, got {}",
                self.value_size,
                value.len()
            )));
        }
        self.write().update(key, value, flags, self.max_entries)
    }

    fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let key = self.parse(key, true)?;
        self.write().delete(key)
    }

    fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        // An unparseable or oversized key restarts iteration, as an absent one does.
        let key = key.and_then(|k| self.parse(k, true).ok());
        let trie = self.read();
        Ok(trie.next_node(key).map(|node| trie.key_bytes(node)))
    }

    fn len(&self) -> usize {
        self.read().entries
    }

    fn memory_usage(&self) -> usize {
        let trie = self.read();
        trie.nodes.capacity() * std::mem::size_of::<Node>()
            + trie.data.capacity()
            + trie.values.memory_usage()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
