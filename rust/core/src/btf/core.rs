//! CO-RE ("compile once, run everywhere") relocations.
//!
//! libbpf resolves each `bpf_core_relo` against the running kernel's BTF.
//! ebpfvm runs in user space, where there is no kernel BTF: the target is
//! the object's own BTF, so field offsets, sizes and enum values resolve to
//! what the program was compiled against (and existence checks succeed for
//! everything the object describes). The value is computed from the access
//! string as libbpf does, so a program whose instruction disagrees with its
//! own BTF is still patched consistently.

use super::{err, Btf, BtfError, BtfKind, BTF_INT_SIGNED};

/// `enum bpf_core_relo_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreReloKind {
    FieldByteOffset = 0,
    FieldByteSize = 1,
    FieldExists = 2,
    FieldSigned = 3,
    FieldLshiftU64 = 4,
    FieldRshiftU64 = 5,
    TypeIdLocal = 6,
    TypeIdTarget = 7,
    TypeExists = 8,
    TypeSize = 9,
    EnumvalExists = 10,
    EnumvalValue = 11,
    TypeMatches = 12,
}

impl CoreReloKind {
    pub fn from_u32(n: u32) -> Option<CoreReloKind> {
        use CoreReloKind::*;
        Some(match n {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLshiftU64,
            5 => FieldRshiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumvalExists,
            11 => EnumvalValue,
            12 => TypeMatches,
            _ => return None,
        })
    }

    /// Whether the relocation is about a field (its result may patch a
    /// load or store offset).
    pub fn is_field(self) -> bool {
        (self as u32) <= CoreReloKind::FieldRshiftU64 as u32
    }
}

/// Where the field an access string names lies.
struct FieldSpec {
    bit_offset: u64,
    /// Bitfield width; 0 when the field is not a bitfield.
    bitfield_size: u32,
    type_id: u32,
}

fn parse_access(access: &str) -> Result<Vec<u32>, BtfError> {
    if access.is_empty() {
        return err("CO-RE access string is empty");
    }
    access
        .split(':')
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| BtfError(format!("CO-RE access string '{access}' is malformed")))
        })
        .collect()
}

fn field_spec(btf: &Btf, root: u32, indices: &[u32]) -> Result<FieldSpec, BtfError> {
    let root_size = btf.size_of(root)? as u64;
    let mut spec = FieldSpec {
        bit_offset: indices[0] as u64 * root_size * 8,
        bitfield_size: 0,
        type_id: root,
    };
    for &idx in &indices[1..] {
        let rid = btf.resolve(spec.type_id)?;
        let t = btf.get(rid)?;
        match &t.kind {
            BtfKind::Struct { members, .. } | BtfKind::Union { members, .. } => {
                let m = members.get(idx as usize).ok_or_else(|| {
                    BtfError(format!(
                        "CO-RE: member {idx} of type {rid} '{}' does not exist ({} members)",
                        t.name,
                        members.len()
                    ))
                })?;
                spec.bit_offset += m.bit_offset as u64;
                spec.bitfield_size = m.bitfield_size;
                spec.type_id = m.type_id;
            }
            BtfKind::Array { elem, .. } => {
                let elem_size = btf.size_of(*elem)? as u64;
                spec.bit_offset += idx as u64 * elem_size * 8;
                spec.bitfield_size = 0;
                spec.type_id = *elem;
            }
            other => {
                return err(format!(
                    "CO-RE: cannot index into type {rid} ({})",
                    other.kind_name()
                ))
            }
        }
    }
    Ok(spec)
}

/// The value a CO-RE relocation resolves to against `btf` itself.
pub fn resolve_relo(btf: &Btf, type_id: u32, access: &str, kind: u32) -> Result<u64, BtfError> {
    let Some(kind) = CoreReloKind::from_u32(kind) else {
        return err(format!("CO-RE relocation kind {kind} is unknown"));
    };
    let indices = parse_access(access)?;
    use CoreReloKind::*;
    match kind {
        TypeIdLocal | TypeIdTarget => Ok(type_id as u64),
        TypeExists | TypeMatches => {
            btf.get(type_id)?;
            Ok(1)
        }
        TypeSize => Ok(btf.size_of(type_id)? as u64),
        EnumvalExists | EnumvalValue => {
            let rid = btf.resolve(type_id)?;
            let t = btf.get(rid)?;
            let BtfKind::Enum { values, .. } = &t.kind else {
                return err(format!(
                    "CO-RE enum relocation on type {rid} ({})",
                    t.kind.kind_name()
                ));
            };
            let Some((_, v)) = values.get(indices[0] as usize) else {
                return err(format!(
                    "CO-RE: enumerator {} of enum {rid} '{}' does not exist",
                    indices[0], t.name
                ));
            };
            Ok(if kind == EnumvalExists { 1 } else { *v as u64 })
        }
        _ => {
            let spec = field_spec(btf, type_id, &indices)?;
            let field_size = btf.size_of(spec.type_id)? as u64;
            let (byte_off, byte_size, bit_size) = if spec.bitfield_size == 0 {
                (spec.bit_offset / 8, field_size, field_size * 8)
            } else {
                // A bitfield is read with the smallest aligned load that holds it.
                let bit_size = spec.bitfield_size as u64;
                let mut byte_size = field_size.max(1);
                let mut byte_off = spec.bit_offset / 8 / byte_size * byte_size;
                while spec.bit_offset + bit_size - byte_off * 8 > byte_size * 8 {
                    if byte_size >= 8 {
                        return err("CO-RE: bitfield does not fit in an 8-byte load");
                    }
                    byte_size *= 2;
                    byte_off = spec.bit_offset / 8 / byte_size * byte_size;
                }
                (byte_off, byte_size, bit_size)
            };
            Ok(match kind {
                FieldByteOffset => byte_off,
                FieldByteSize => byte_size,
                FieldExists => 1,
                FieldSigned => {
                    let t = btf.get(btf.resolve(spec.type_id)?)?;
                    match &t.kind {
                        BtfKind::Int { encoding, .. } => (encoding & BTF_INT_SIGNED != 0) as u64,
                        BtfKind::Enum { signed, .. } => *signed as u64,
                        _ => 0,
                    }
                }
                FieldLshiftU64 => (64 + byte_off * 8).saturating_sub(spec.bit_offset + bit_size),
                FieldRshiftU64 => 64u64.saturating_sub(bit_size),
                _ => unreachable!("non-field kinds handled above"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::BtfBuilder;
    use super::*;

    #[test]
    fn resolves_fields_bitfields_and_enums() {
        let mut b = BtfBuilder::new();
        b.add("int", 1, 0, false, 4, &[(1 << 24) | 32]); // 1
        b.add("unsigned int", 1, 0, false, 4, &[32]); // 2
        let (a, f, g) = (b.name("a"), b.name("f"), b.name("g"));
        // 3: struct s { int a; unsigned f:4 (bit 32); unsigned g:20 (bit 36) }, 8 bytes
        b.add(
            "s",
            4,
            3,
            true,
            8,
            &[a, 1, 0, f, 2, (4 << 24) | 32, g, 2, (20 << 24) | 36],
        );
        b.add("", 3, 0, false, 0, &[3, 1, 4]); // 4: s[4]
        let (x, y) = (b.name("X"), b.name("Y"));
        b.add("e", 6, 2, false, 4, &[x, 7, y, 9]); // 5
        let btf = Btf::parse(&b.build()).unwrap();
        let v = |t, a: &str, k| resolve_relo(&btf, t, a, k).unwrap();
        assert_eq!(v(3, "0:0", 0), 0);
        assert_eq!(v(3, "1:0", 0), 8);
        assert_eq!(v(3, "0:1", 0), 4);
        assert_eq!(v(3, "0:1", 1), 4);
        assert_eq!(v(3, "0:0", 3), 1);
        assert_eq!(v(3, "0:2", 3), 0);
        // g: bits 36..56 of the struct; loaded as the u32 at byte 4,
        // shifted left by 64 - (36 + 20 - 32) = 40 then right by 44.
        assert_eq!(v(3, "0:2", 4), 40);
        assert_eq!(v(3, "0:2", 5), 44);
        assert_eq!(v(4, "0:2:1", 0), 8 * 2 + 4);
        assert_eq!(v(3, "0", 9), 8);
        assert_eq!(v(5, "1", 11), 9);
        assert_eq!(v(5, "1", 10), 1);
        assert!(resolve_relo(&btf, 5, "2", 11).is_err());
        assert!(resolve_relo(&btf, 3, "0:7", 0).is_err());
        assert!(resolve_relo(&btf, 3, "0:x", 0).is_err());
        assert!(resolve_relo(&btf, 3, "0", 99).is_err());
    }
}
