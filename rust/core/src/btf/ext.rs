//! `.BTF.ext`: per-section function info, line info and CO-RE relocation
//! records. Instruction offsets are kept as the object stores them, in
//! bytes from the start of their ELF section.

use super::{c_str, err, sub_range, BtfError, Reader};

/// One `bpf_func_info` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfoRec {
    pub insn_off: u32,
    pub type_id: u32,
}

/// One `bpf_line_info` record; names are offsets into the `.BTF` strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineInfoRec {
    pub insn_off: u32,
    pub file_name_off: u32,
    pub line_off: u32,
    pub line: u32,
    pub column: u32,
}

/// One `bpf_core_relo` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreReloRec {
    pub insn_off: u32,
    pub type_id: u32,
    pub access_str_off: u32,
    pub kind: u32,
}

/// The records of one ELF section (named by its `.BTF` string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionRecords<T> {
    pub section: String,
    pub records: Vec<T>,
}

/// A parsed `.BTF.ext` section. Section names are resolved against the
/// `.BTF` string table, so parsing needs it.
#[derive(Clone, Debug, Default)]
pub struct BtfExt {
    pub func_info: Vec<SectionRecords<FuncInfoRec>>,
    pub line_info: Vec<SectionRecords<LineInfoRec>>,
    pub core_relos: Vec<SectionRecords<CoreReloRec>>,
}

impl BtfExt {
    pub fn parse(data: &[u8], btf: &super::Btf) -> Result<BtfExt, BtfError> {
        let mut r = Reader::new(data, ".BTF.ext header");
        let magic = r.u16()?;
        if magic != 0xeb9f {
            return err(format!(".BTF.ext: bad magic 0x{magic:04x}"));
        }
        let version = r.u8()?;
        if version != 1 {
            return err(format!(".BTF.ext: unsupported version {version}"));
        }
        let _flags = r.u8()?;
        let hdr_len = r.u32()?;
        if (hdr_len as usize) < 24 || hdr_len as usize > data.len() {
            return err(format!(".BTF.ext: bad header length {hdr_len}"));
        }
        let base = hdr_len as usize;
        let fi = (r.u32()?, r.u32()?);
        let li = (r.u32()?, r.u32()?);
        // The CO-RE fields exist only in headers of 32 bytes or more.
        let cr = if hdr_len >= 32 {
            (r.u32()?, r.u32()?)
        } else {
            (0, 0)
        };
        let strings = &btf.strings;
        let func_info = parse_sections(data, base, fi, "func_info", 8, strings, |r| {
            Ok(FuncInfoRec {
                insn_off: r.u32()?,
                type_id: r.u32()?,
            })
        })?;
        let line_info = parse_sections(data, base, li, "line_info", 16, strings, |r| {
            let insn_off = r.u32()?;
            let file_name_off = r.u32()?;
            let line_off = r.u32()?;
            let line_col = r.u32()?;
            Ok(LineInfoRec {
                insn_off,
                file_name_off,
                line_off,
                line: line_col >> 10,
                column: line_col & 0x3ff,
            })
        })?;
        let core_relos = parse_sections(data, base, cr, "core_relo", 16, strings, |r| {
            Ok(CoreReloRec {
                insn_off: r.u32()?,
                type_id: r.u32()?,
                access_str_off: r.u32()?,
                kind: r.u32()?,
            })
        })?;
        Ok(BtfExt {
            func_info,
            line_info,
            core_relos,
        })
    }
}

/// Reads `rec_size`, then blocks of (section name, count, records); records
/// larger than `min_rec` (newer formats) are read as their known prefix.
fn parse_sections<T>(
    data: &[u8],
    base: usize,
    (off, len): (u32, u32),
    what: &'static str,
    min_rec: usize,
    strings: &[u8],
    read: impl Fn(&mut Reader<'_>) -> Result<T, BtfError>,
) -> Result<Vec<SectionRecords<T>>, BtfError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let range = sub_range(data, base, off, len, what)?;
    let mut r = Reader::new(&data[range], what);
    let rec_size = r.u32()? as usize;
    if rec_size < min_rec {
        return err(format!(
            ".BTF.ext {what}: record size {rec_size} is smaller than {min_rec}"
        ));
    }
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let sec_off = r.u32()?;
        let count = r.u32()? as usize;
        let section = c_str(strings, sec_off, &format!(".BTF.ext {what} section name"))?;
        if count.saturating_mul(rec_size) > r.remaining() {
            return err(format!(
                ".BTF.ext {what} for {section}: {count} records of {rec_size} bytes do not fit in the {} bytes left",
                r.remaining()
            ));
        }
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let rec = r.bytes(rec_size)?;
            records.push(read(&mut Reader::new(rec, what))?);
        }
        out.push(SectionRecords { section, records });
    }
    Ok(out)
}
