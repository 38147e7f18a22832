//! BTF: the type information clang emits into `.BTF` and `.BTF.ext`.
//!
//! [`Btf::parse`] reads the `.BTF` section (every kind up to `ENUM64`), with
//! every offset and count checked against the section's bounds, so that a
//! malformed object gives a [`BtfError`] rather than a panic or a huge
//! allocation. [`ext::BtfExt`] reads `.BTF.ext` (function info, line info and
//! CO-RE relocation records) and [`core`] resolves CO-RE relocations.
//!
//! Type ids start at 1; id 0 is `void`.

use std::fmt;

pub mod core;
pub mod ext;

const BTF_MAGIC: u16 = 0xeb9f;
/// Hops through typedefs and modifiers before a chain is taken for a cycle
/// (libbpf uses the same bound).
const MAX_RESOLVE_DEPTH: usize = 32;
/// Nodes [`Btf::describe`] may build: a bound against malformed type graphs
/// whose expansion would be exponential.
const MAX_DESCRIBE_NODES: usize = 100_000;

/// Malformed or unusable BTF; the message says which type or offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfError(pub String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BtfError {}

fn err<T>(msg: impl Into<String>) -> Result<T, BtfError> {
    Err(BtfError(msg.into()))
}

/// Integer encoding bits of `BTF_KIND_INT`.
pub const BTF_INT_SIGNED: u8 = 1;
pub const BTF_INT_CHAR: u8 = 2;
pub const BTF_INT_BOOL: u8 = 4;

/// A member of a struct or union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfMember {
    pub name: String,
    pub type_id: u32,
    /// Offset from the start of the aggregate, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield in bits; 0 for an ordinary member.
    pub bitfield_size: u32,
}

/// One variable of a `DATASEC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarSecinfo {
    /// The `VAR` (or `FUNC` for extern functions) type id.
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// What a BTF type is. Modifiers (`Typedef`, `Volatile`, `Const`,
/// `Restrict`, `TypeTag`) and `Ptr` refer to another type by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfKind {
    Void,
    Int {
        size: u32,
        /// `BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL` bits.
        encoding: u8,
        bit_offset: u8,
        bits: u8,
    },
    Ptr(u32),
    Array {
        elem: u32,
        index: u32,
        len: u32,
    },
    Struct {
        size: u32,
        members: Vec<BtfMember>,
    },
    Union {
        size: u32,
        members: Vec<BtfMember>,
    },
    /// `ENUM` and `ENUM64` (values widened to 64 bits).
    Enum {
        size: u32,
        signed: bool,
        values: Vec<(String, i64)>,
        is64: bool,
    },
    Fwd {
        is_union: bool,
    },
    Typedef(u32),
    Volatile(u32),
    Const(u32),
    Restrict(u32),
    Func {
        proto: u32,
        linkage: u16,
    },
    FuncProto {
        ret: u32,
        params: Vec<(String, u32)>,
    },
    Var {
        type_id: u32,
        linkage: u32,
    },
    Datasec {
        size: u32,
        vars: Vec<VarSecinfo>,
    },
    Float {
        size: u32,
    },
    DeclTag {
        type_id: u32,
        component_idx: i32,
    },
    TypeTag(u32),
}

impl BtfKind {
    /// The kernel's name of the kind (as `bpftool btf dump` prints it).
    pub fn kind_name(&self) -> &'static str {
        match self {
            BtfKind::Void => "VOID",
            BtfKind::Int { .. } => "INT",
            BtfKind::Ptr(_) => "PTR",
            BtfKind::Array { .. } => "ARRAY",
            BtfKind::Struct { .. } => "STRUCT",
            BtfKind::Union { .. } => "UNION",
            BtfKind::Enum { is64: false, .. } => "ENUM",
            BtfKind::Enum { is64: true, .. } => "ENUM64",
            BtfKind::Fwd { .. } => "FWD",
            BtfKind::Typedef(_) => "TYPEDEF",
            BtfKind::Volatile(_) => "VOLATILE",
            BtfKind::Const(_) => "CONST",
            BtfKind::Restrict(_) => "RESTRICT",
            BtfKind::Func { .. } => "FUNC",
            BtfKind::FuncProto { .. } => "FUNC_PROTO",
            BtfKind::Var { .. } => "VAR",
            BtfKind::Datasec { .. } => "DATASEC",
            BtfKind::Float { .. } => "FLOAT",
            BtfKind::DeclTag { .. } => "DECL_TAG",
            BtfKind::TypeTag(_) => "TYPE_TAG",
        }
    }

    /// The type a modifier or typedef stands for.
    fn modified(&self) -> Option<u32> {
        match *self {
            BtfKind::Typedef(t)
            | BtfKind::Volatile(t)
            | BtfKind::Const(t)
            | BtfKind::Restrict(t)
            | BtfKind::TypeTag(t) => Some(t),
            _ => None,
        }
    }
}

/// One BTF type: its name (empty for anonymous types) and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfType {
    pub name: String,
    pub kind: BtfKind,
}

/// A parsed `.BTF` section.
#[derive(Clone, Debug)]
pub struct Btf {
    /// Index = type id; entry 0 is `void`.
    types: Vec<BtfType>,
    strings: Vec<u8>,
}

/// Little-endian reader over a byte slice that reports where it ran short.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, pos: 0, what }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], BtfError> {
        if self.remaining() < n {
            return err(format!(
                "{}: truncated at offset {} (need {n} bytes, {} left)",
                self.what,
                self.pos,
                self.remaining()
            ));
        }
        let b = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, BtfError> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, BtfError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, BtfError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The `[off, off+len)` range of a header-relative sub-section, checked.
pub(crate) fn sub_range(
    data: &[u8],
    base: usize,
    off: u32,
    len: u32,
    what: &str,
) -> Result<std::ops::Range<usize>, BtfError> {
    let start = base.checked_add(off as usize).filter(|&s| s <= data.len());
    let end = start
        .and_then(|s| s.checked_add(len as usize))
        .filter(|&e| e <= data.len());
    match (start, end) {
        (Some(s), Some(e)) => Ok(s..e),
        _ => err(format!(
            "{what} (offset {off}, length {len}) lies outside the {}-byte section",
            data.len()
        )),
    }
}

/// Reads a NUL-terminated string at `off` of a string table.
pub(crate) fn c_str(strings: &[u8], off: u32, what: &str) -> Result<String, BtfError> {
    let Some(tail) = strings.get(off as usize..) else {
        return err(format!(
            "{what}: string offset {off} is outside the {}-byte string table",
            strings.len()
        ));
    };
    let Some(end) = tail.iter().position(|&b| b == 0) else {
        return err(format!(
            "{what}: string at offset {off} is not NUL-terminated"
        ));
    };
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

impl Btf {
    /// Parses a `.BTF` section.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let mut r = Reader::new(data, ".BTF header");
        let magic = r.u16()?;
        if magic != BTF_MAGIC {
            if magic == BTF_MAGIC.swap_bytes() {
                return err(".BTF is big-endian; only little-endian BTF is supported");
            }
            return err(format!(".BTF: bad magic 0x{magic:04x} (expected 0xeb9f)"));
        }
        let version = r.u8()?;
        if version != 1 {
            return err(format!(".BTF: unsupported version {version}"));
        }
        let _flags = r.u8()?;
        let hdr_len = r.u32()?;
        let type_off = r.u32()?;
        let type_len = r.u32()?;
        let str_off = r.u32()?;
        let str_len = r.u32()?;
        if (hdr_len as usize) < r.pos() || hdr_len as usize > data.len() {
            return err(format!(".BTF: bad header length {hdr_len}"));
        }
        let base = hdr_len as usize;
        let types_range = sub_range(data, base, type_off, type_len, ".BTF type section")?;
        let str_range = sub_range(data, base, str_off, str_len, ".BTF string section")?;
        let strings = data[str_range].to_vec();
        if strings.first().is_some_and(|&b| b != 0) {
            return err(".BTF: string section does not start with an empty string");
        }
        let mut btf = Btf {
            types: vec![BtfType {
                name: String::new(),
                kind: BtfKind::Void,
            }],
            strings,
        };
        let mut r = Reader::new(&data[types_range], ".BTF types");
        while r.remaining() > 0 {
            let id = btf.types.len();
            let ty = btf.parse_type(&mut r, id)?;
            btf.types.push(ty);
        }
        Ok(btf)
    }

    fn parse_type(&self, r: &mut Reader<'_>, id: usize) -> Result<BtfType, BtfError> {
        let start = r.pos();
        let name_off = r.u32()?;
        let info = r.u32()?;
        let size_or_type = r.u32()?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 != 0;
        let name = c_str(&self.strings, name_off, &format!(".BTF type {id}"))?;
        let at = |msg: String| BtfError(format!(".BTF type {id} at offset {start}: {msg}"));
        // Refuse counts the remaining data cannot hold before allocating.
        let record = match kind {
            4 | 5 | 15 | 19 => 12,
            6 | 13 => 8,
            _ => 0,
        };
        if vlen.saturating_mul(record) > r.remaining() {
            return Err(at(format!(
                "{vlen} entries of {record} bytes do not fit in the {} bytes left",
                r.remaining()
            )));
        }
        let strings = &self.strings;
        let member_name =
            |off: u32, i: usize| c_str(strings, off, &format!(".BTF type {id} entry {i}"));
        let kind = match kind {
            1 => {
                let enc = r.u32()?;
                let bits = (enc & 0xff) as u8;
                let bit_offset = ((enc >> 16) & 0xff) as u8;
                let encoding = ((enc >> 24) & 0x0f) as u8;
                if size_or_type > 16 || bits as u32 > size_or_type * 8 {
                    return Err(at(format!(
                        "INT of {size_or_type} bytes with {bits} bits is invalid"
                    )));
                }
                BtfKind::Int {
                    size: size_or_type,
                    encoding,
                    bit_offset,
                    bits,
                }
            }
            2 => BtfKind::Ptr(size_or_type),
            3 => {
                let elem = r.u32()?;
                let index = r.u32()?;
                let len = r.u32()?;
                BtfKind::Array { elem, index, len }
            }
            4 | 5 => {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let name_off = r.u32()?;
                    let type_id = r.u32()?;
                    let offset = r.u32()?;
                    let (bit_offset, bitfield_size) = if kind_flag {
                        (offset & 0x00ff_ffff, offset >> 24)
                    } else {
                        (offset, 0)
                    };
                    members.push(BtfMember {
                        name: member_name(name_off, i)?,
                        type_id,
                        bit_offset,
                        bitfield_size,
                    });
                }
                if kind == 4 {
                    BtfKind::Struct {
                        size: size_or_type,
                        members,
                    }
                } else {
                    BtfKind::Union {
                        size: size_or_type,
                        members,
                    }
                }
            }
            6 | 19 => {
                let mut values = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let name_off = r.u32()?;
                    let value = if kind == 6 {
                        let v = r.u32()?;
                        if kind_flag {
                            v as i32 as i64
                        } else {
                            v as i64
                        }
                    } else {
                        let lo = r.u32()? as u64;
                        let hi = r.u32()? as u64;
                        (hi << 32 | lo) as i64
                    };
                    values.push((member_name(name_off, i)?, value));
                }
                BtfKind::Enum {
                    size: size_or_type,
                    signed: kind_flag,
                    values,
                    is64: kind == 19,
                }
            }
            7 => BtfKind::Fwd {
                is_union: kind_flag,
            },
            8 => BtfKind::Typedef(size_or_type),
            9 => BtfKind::Volatile(size_or_type),
            10 => BtfKind::Const(size_or_type),
            11 => BtfKind::Restrict(size_or_type),
            12 => BtfKind::Func {
                proto: size_or_type,
                linkage: vlen as u16,
            },
            13 => {
                let mut params = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let name_off = r.u32()?;
                    let type_id = r.u32()?;
                    params.push((member_name(name_off, i)?, type_id));
                }
                BtfKind::FuncProto {
                    ret: size_or_type,
                    params,
                }
            }
            14 => BtfKind::Var {
                type_id: size_or_type,
                linkage: r.u32()?,
            },
            15 => {
                let mut vars = Vec::with_capacity(vlen);
                for _ in 0..vlen {
                    vars.push(VarSecinfo {
                        type_id: r.u32()?,
                        offset: r.u32()?,
                        size: r.u32()?,
                    });
                }
                BtfKind::Datasec {
                    size: size_or_type,
                    vars,
                }
            }
            16 => BtfKind::Float { size: size_or_type },
            17 => BtfKind::DeclTag {
                type_id: size_or_type,
                component_idx: r.u32()? as i32,
            },
            18 => BtfKind::TypeTag(size_or_type),
            k => return Err(at(format!("unknown kind {k}"))),
        };
        Ok(BtfType { name, kind })
    }

    /// Number of type ids, `void` included (valid ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the BTF holds no type besides `void`.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    /// The type with id `id`.
    pub fn get(&self, id: u32) -> Result<&BtfType, BtfError> {
        self.types.get(id as usize).ok_or_else(|| {
            BtfError(format!(
                "BTF type id {id} does not exist (the object has {} types)",
                self.types.len() - 1
            ))
        })
    }

    /// Every type with its id, `void` excluded.
    pub fn types(&self) -> impl Iterator<Item = (u32, &BtfType)> {
        self.types
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| (i as u32, t))
    }

    /// The string at `off` of the string table.
    pub fn string_at(&self, off: u32) -> Result<String, BtfError> {
        c_str(&self.strings, off, ".BTF string")
    }

    /// The first type named `name` whose kind satisfies `pred`.
    pub fn find(&self, name: &str, pred: impl Fn(&BtfKind) -> bool) -> Option<u32> {
        self.types()
            .find(|(_, t)| t.name == name && pred(&t.kind))
            .map(|(id, _)| id)
    }

    /// The first type named `name`, any kind.
    pub fn find_by_name(&self, name: &str) -> Option<u32> {
        self.find(name, |_| true)
    }

    /// Skips typedefs and modifiers (`const`, `volatile`, `restrict`,
    /// type tags) to the type they stand for.
    pub fn resolve(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        for _ in 0..MAX_RESOLVE_DEPTH {
            match self.get(cur)?.kind.modified() {
                Some(next) => cur = next,
                None => return Ok(cur),
            }
        }
        err(format!(
            "BTF type {id}: more than {MAX_RESOLVE_DEPTH} typedefs or modifiers (a cycle?)"
        ))
    }

    /// Size in bytes of a value of type `id`.
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: usize) -> Result<u32, BtfError> {
        if depth > MAX_RESOLVE_DEPTH {
            return err(format!("BTF type {id}: nested too deeply to size"));
        }
        let rid = self.resolve(id)?;
        let t = self.get(rid)?;
        match &t.kind {
            BtfKind::Int { size, .. }
            | BtfKind::Struct { size, .. }
            | BtfKind::Union { size, .. }
            | BtfKind::Enum { size, .. }
            | BtfKind::Datasec { size, .. }
            | BtfKind::Float { size } => Ok(*size),
            BtfKind::Ptr(_) => Ok(8),
            BtfKind::Array { elem, len, .. } => {
                let elem_size = self.size_of_depth(*elem, depth + 1)?;
                elem_size.checked_mul(*len).ok_or_else(|| {
                    BtfError(format!(
                        "BTF type {rid}: array of {len} x {elem_size} bytes overflows"
                    ))
                })
            }
            BtfKind::Var { type_id, .. } => self.size_of_depth(*type_id, depth + 1),
            other => err(format!(
                "BTF type {rid} ({} '{}') has no size",
                other.kind_name(),
                t.name
            )),
        }
    }

    /// The members of struct or union `id` (after resolving typedefs).
    pub fn members(&self, id: u32) -> Result<&[BtfMember], BtfError> {
        let rid = self.resolve(id)?;
        let t = self.get(rid)?;
        match &t.kind {
            BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => Ok(members),
            other => err(format!(
                "BTF type {rid} ({} '{}') is not a struct or union",
                other.kind_name(),
                t.name
            )),
        }
    }

    /// The member called `name` of struct or union `id`.
    pub fn member(&self, id: u32, name: &str) -> Result<Option<&BtfMember>, BtfError> {
        Ok(self.members(id)?.iter().find(|m| m.name == name))
    }

    /// A self-contained description of type `id` for typed map views:
    /// typedefs and modifiers are skipped, aggregates expanded (pointers
    /// are not followed).
    pub fn describe(&self, id: u32) -> Result<TypeDesc, BtfError> {
        let mut budget = MAX_DESCRIBE_NODES;
        self.describe_depth(id, 0, &mut budget)
    }

    fn describe_depth(
        &self,
        id: u32,
        depth: usize,
        budget: &mut usize,
    ) -> Result<TypeDesc, BtfError> {
        if depth > MAX_RESOLVE_DEPTH {
            return err(format!("BTF type {id}: nested too deeply to describe"));
        }
        if *budget == 0 {
            return err(format!(
                "BTF type {id}: description exceeds {MAX_DESCRIBE_NODES} nodes"
            ));
        }
        *budget -= 1;
        let rid = self.resolve(id)?;
        let t = self.get(rid)?;
        Ok(match &t.kind {
            BtfKind::Void => TypeDesc::Void,
            &BtfKind::Int { size, encoding, .. } => TypeDesc::Int {
                size,
                signed: encoding & BTF_INT_SIGNED != 0,
                kind: if encoding & BTF_INT_BOOL != 0 {
                    IntKind::Bool
                } else if encoding & BTF_INT_CHAR != 0 {
                    IntKind::Char
                } else {
                    IntKind::Plain
                },
            },
            &BtfKind::Float { size } => TypeDesc::Float { size },
            &BtfKind::Ptr(target) => TypeDesc::Ptr { target },
            &BtfKind::Array { elem, len, .. } => TypeDesc::Array {
                elem: Box::new(self.describe_depth(elem, depth + 1, budget)?),
                len,
            },
            BtfKind::Struct { size, members } | BtfKind::Union { size, members } => {
                let mut out = Vec::with_capacity(members.len());
                for m in members {
                    out.push(MemberDesc {
                        name: m.name.clone(),
                        bit_offset: m.bit_offset,
                        bitfield_size: m.bitfield_size,
                        ty: self.describe_depth(m.type_id, depth + 1, budget)?,
                    });
                }
                let is_union = matches!(t.kind, BtfKind::Union { .. });
                TypeDesc::Struct {
                    name: t.name.clone(),
                    size: *size,
                    is_union,
                    members: out,
                }
            }
            BtfKind::Enum {
                size,
                signed,
                values,
                ..
            } => TypeDesc::Enum {
                name: t.name.clone(),
                size: *size,
                signed: *signed,
                values: values.clone(),
            },
            other => {
                return err(format!(
                    "BTF type {rid} ({} '{}') does not describe a value",
                    other.kind_name(),
                    t.name
                ))
            }
        })
    }
}

/// What kind of integer an `Int` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    Plain,
    Char,
    Bool,
}

/// A value type, self-contained, as Python's typed map views need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeDesc {
    Void,
    Int {
        size: u32,
        signed: bool,
        kind: IntKind,
    },
    Float {
        size: u32,
    },
    /// A pointer (8 bytes); `target` is the BTF id pointed to.
    Ptr {
        target: u32,
    },
    Array {
        elem: Box<TypeDesc>,
        len: u32,
    },
    /// A struct, or a union when `is_union` (all members at offset 0).
    Struct {
        name: String,
        size: u32,
        is_union: bool,
        members: Vec<MemberDesc>,
    },
    Enum {
        name: String,
        size: u32,
        signed: bool,
        values: Vec<(String, i64)>,
    },
}

/// A member of a described struct or union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDesc {
    pub name: String,
    pub bit_offset: u32,
    /// Width in bits for bitfields, 0 otherwise.
    pub bitfield_size: u32,
    pub ty: TypeDesc,
}

impl TypeDesc {
    /// Size in bytes of a value of this type.
    pub fn size(&self) -> u64 {
        match self {
            TypeDesc::Void => 0,
            TypeDesc::Int { size, .. }
            | TypeDesc::Float { size }
            | TypeDesc::Struct { size, .. }
            | TypeDesc::Enum { size, .. } => *size as u64,
            TypeDesc::Ptr { .. } => 8,
            TypeDesc::Array { elem, len } => elem.size().saturating_mul(*len as u64),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds raw BTF from (name, info, size_or_type, extra words) records.
    pub(crate) struct BtfBuilder {
        pub types: Vec<u8>,
        pub strings: Vec<u8>,
    }

    impl BtfBuilder {
        pub fn new() -> Self {
            BtfBuilder {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        pub fn name(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        pub fn add(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            flag: bool,
            st: u32,
            extra: &[u32],
        ) {
            let name_off = self.name(name);
            let info = (kind << 24) | vlen | ((flag as u32) << 31);
            for w in [name_off, info, st].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Btf {
        let mut b = BtfBuilder::new();
        // 1: int (signed, 4 bytes)
        b.add("int", 1, 0, false, 4, &[(1 << 24) | 32]);
        // 2: unsigned char
        b.add("unsigned char", 1, 0, false, 1, &[(2 << 24) | 8]);
        // 3: typedef u8 -> 2
        b.add("u8", 8, 0, false, 2, &[]);
        // 4: array of 3 u8
        b.add("", 3, 0, false, 0, &[3, 1, 3]);
        // 5: struct s { int a; u8 b[3]; int c:3 (bit 64); int d:5 (bit 67) }
        let (a, bb, c, d) = (b.name("a"), b.name("b"), b.name("c"), b.name("d"));
        b.add(
            "s",
            4,
            4,
            true,
            12,
            &[
                a,
                1,
                0,
                bb,
                4,
                32,
                c,
                1,
                (3 << 24) | 64,
                d,
                1,
                (5 << 24) | 67,
            ],
        );
        // 6: const -> 5
        b.add("", 10, 0, false, 5, &[]);
        // 7: enum e { X = -1, Y = 2 } signed
        let (x, y) = (b.name("X"), b.name("Y"));
        b.add("e", 6, 2, true, 4, &[x, u32::MAX, y, 2]);
        // 8: pointer to 5
        b.add("", 2, 0, false, 5, &[]);
        Btf::parse(&b.build()).unwrap()
    }

    #[test]
    fn parses_and_resolves() {
        let btf = sample();
        assert_eq!(btf.len(), 9);
        assert_eq!(btf.find_by_name("s"), Some(5));
        assert_eq!(btf.resolve(6).unwrap(), 5);
        assert_eq!(btf.resolve(3).unwrap(), 2);
        assert_eq!(btf.size_of(4).unwrap(), 3);
        assert_eq!(btf.size_of(6).unwrap(), 12);
        assert_eq!(btf.size_of(8).unwrap(), 8);
        let c = btf.member(6, "c").unwrap().unwrap();
        assert_eq!((c.bit_offset, c.bitfield_size), (64, 3));
        let d = btf.member(5, "d").unwrap().unwrap();
        assert_eq!((d.bit_offset, d.bitfield_size), (67, 5));
        assert!(btf.get(9).is_err());
    }

    #[test]
    fn describes_types() {
        let btf = sample();
        let TypeDesc::Struct {
            name,
            size,
            members,
            is_union,
        } = btf.describe(6).unwrap()
        else {
            panic!("not a struct");
        };
        assert_eq!((name.as_str(), size, is_union), ("s", 12, false));
        assert_eq!(members.len(), 4);
        assert_eq!(
            members[1].ty,
            TypeDesc::Array {
                elem: Box::new(TypeDesc::Int {
                    size: 1,
                    signed: false,
                    kind: IntKind::Char
                }),
                len: 3
            }
        );
        assert_eq!(
            members[0].ty,
            TypeDesc::Int {
                size: 4,
                signed: true,
                kind: IntKind::Plain
            }
        );
        let TypeDesc::Enum { values, signed, .. } = btf.describe(7).unwrap() else {
            panic!("not an enum");
        };
        assert!(signed);
        assert_eq!(values, vec![("X".to_string(), -1), ("Y".to_string(), 2)]);
        assert_eq!(btf.describe(8).unwrap(), TypeDesc::Ptr { target: 5 });
    }

    #[test]
    fn rejects_malformed() {
        let mut b = BtfBuilder::new();
        b.add("x", 4, 1000, false, 4, &[]);
        assert!(Btf::parse(&b.build()).unwrap_err().0.contains("do not fit"));
        let mut b = BtfBuilder::new();
        b.add("x", 25, 0, false, 4, &[]);
        assert!(Btf::parse(&b.build())
            .unwrap_err()
            .0
            .contains("unknown kind 25"));
        // typedef cycle: 1 -> 2 -> 1
        let mut b = BtfBuilder::new();
        b.add("a", 8, 0, false, 2, &[]);
        b.add("b", 8, 0, false, 1, &[]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert!(btf.resolve(1).unwrap_err().0.contains("cycle"));
        assert!(btf.size_of(1).is_err());
        assert!(btf.describe(1).is_err());
        let mut raw = b.build();
        assert!(Btf::parse(&raw[..10]).unwrap_err().0.contains("truncated"));
        raw[0] = 0xeb;
        raw[1] = 0x9f;
        assert!(Btf::parse(&raw).unwrap_err().0.contains("big-endian"));
    }

    #[test]
    fn describe_budget_stops_exponential_graphs() {
        // Each struct holds two copies of the previous one: 2^30 nodes.
        let mut b = BtfBuilder::new();
        b.add("int", 1, 0, false, 4, &[(1 << 24) | 32]);
        for i in 0..30u32 {
            let (m1, m2) = (b.name("x"), b.name("y"));
            b.add(
                &format!("s{i}"),
                4,
                2,
                false,
                8,
                &[m1, i + 1, 0, m2, i + 1, 0],
            );
        }
        let btf = Btf::parse(&b.build()).unwrap();
        assert!(btf.describe(31).unwrap_err().0.contains("nodes"));
    }

    #[test]
    fn parses_every_kind() {
        let mut b = BtfBuilder::new();
        b.add("long", 1, 0, false, 8, &[(1 << 24) | 64]); // 1 INT
        b.add("double", 16, 0, false, 8, &[]); // 2 FLOAT
        let (lo, hi) = (b.name("LO"), b.name("HI"));
        // 3 ENUM64 (unsigned): LO = 1, HI = 1 << 40
        b.add("big", 19, 2, false, 8, &[lo, 1, 0, hi, 0, 1 << 8]);
        b.add("s", 7, 0, true, 0, &[]); // 4 FWD union
        b.add("", 18, 0, false, 1, &[]); // 5 TYPE_TAG -> 1
        b.add("", 11, 0, false, 5, &[]); // 6 RESTRICT -> 5
        b.add("", 9, 0, false, 6, &[]); // 7 VOLATILE -> 6
        let x = b.name("x");
        b.add("", 13, 1, false, 1, &[x, 1]); // 8 FUNC_PROTO long (long x)
        b.add("f", 12, 1, false, 8, &[]); // 9 FUNC global
        b.add("tag", 17, 0, false, 9, &[u32::MAX]); // 10 DECL_TAG on f
        b.add("v", 14, 0, false, 7, &[1]); // 11 VAR (global)
        b.add(".data", 15, 1, false, 8, &[11, 0, 8]); // 12 DATASEC
        b.add("", 5, 2, false, 8, &[x, 1, 0, x, 2, 0]); // 13 UNION
        let btf = Btf::parse(&b.build()).unwrap();
        let kinds: Vec<&str> = btf.types().map(|(_, t)| t.kind.kind_name()).collect();
        assert_eq!(
            kinds,
            [
                "INT",
                "FLOAT",
                "ENUM64",
                "FWD",
                "TYPE_TAG",
                "RESTRICT",
                "VOLATILE",
                "FUNC_PROTO",
                "FUNC",
                "DECL_TAG",
                "VAR",
                "DATASEC",
                "UNION"
            ]
        );
        assert_eq!(btf.resolve(7).unwrap(), 1);
        assert_eq!(btf.size_of(11).unwrap(), 8);
        assert_eq!(btf.describe(2).unwrap(), TypeDesc::Float { size: 8 });
        let TypeDesc::Enum {
            values,
            signed,
            size,
            ..
        } = btf.describe(3).unwrap()
        else {
            panic!("not an enum");
        };
        assert_eq!((size, signed), (8, false));
        assert_eq!(values[1], ("HI".to_string(), 1 << 40));
        assert!(matches!(
            btf.get(4).unwrap().kind,
            BtfKind::Fwd { is_union: true }
        ));
        assert!(btf.describe(4).is_err() && btf.size_of(4).is_err());
        assert!(matches!(
            btf.get(9).unwrap().kind,
            BtfKind::Func {
                proto: 8,
                linkage: 1
            }
        ));
        assert!(matches!(
            btf.get(10).unwrap().kind,
            BtfKind::DeclTag {
                type_id: 9,
                component_idx: -1
            }
        ));
        let BtfKind::Datasec { vars, .. } = &btf.get(12).unwrap().kind else {
            panic!("not a datasec");
        };
        assert_eq!(
            vars[0],
            VarSecinfo {
                type_id: 11,
                offset: 0,
                size: 8
            }
        );
        let TypeDesc::Struct {
            is_union, members, ..
        } = btf.describe(13).unwrap()
        else {
            panic!("not a union");
        };
        assert!(is_union);
        assert_eq!(members[1].ty, TypeDesc::Float { size: 8 });
        assert_eq!(
            btf.find(".data", |k| matches!(k, BtfKind::Datasec { .. })),
            Some(12)
        );
    }

    #[test]
    fn parses_btf_ext_records() {
        let mut b = BtfBuilder::new();
        b.add("int", 1, 0, false, 4, &[(1 << 24) | 32]);
        let sec = b.name("xdp");
        let file = b.name("a.c");
        let line = b.name("return 0;");
        let access = b.name("0:1");
        let btf = Btf::parse(&b.build()).unwrap();
        let words = |w: &[u32]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let func = words(&[8, sec, 1, 16, 1]);
        let lines = words(&[16, sec, 1, 24, file, line, (7 << 10) | 3]);
        let core = words(&[16, sec, 1, 32, 1, access, 0]);
        let mut ext = words(&[0x0001_eb9f, 32]);
        let mut off = 0u32;
        for part in [&func, &lines, &core] {
            ext.extend(words(&[off, part.len() as u32]));
            off += part.len() as u32;
        }
        ext.extend(func.iter().chain(&lines).chain(&core));
        let x = ext::BtfExt::parse(&ext, &btf).unwrap();
        assert_eq!(x.func_info[0].section, "xdp");
        assert_eq!(
            x.func_info[0].records[0],
            ext::FuncInfoRec {
                insn_off: 16,
                type_id: 1
            }
        );
        let l = x.line_info[0].records[0];
        assert_eq!((l.insn_off, l.line, l.column), (24, 7, 3));
        assert_eq!(btf.string_at(l.line_off).unwrap(), "return 0;");
        assert_eq!(x.core_relos[0].records[0].access_str_off, access);
        // A record count larger than the data is refused before allocating.
        let mut bad = ext.clone();
        bad[32 + 8..32 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ext::BtfExt::parse(&bad, &btf)
            .unwrap_err()
            .0
            .contains("do not fit"));
        assert!(ext::BtfExt::parse(&ext[..30], &btf).is_err());
    }
}
