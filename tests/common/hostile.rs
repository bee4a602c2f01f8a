//! Hostile segment files: a valid header with one field set to 0, its maximum, or one off
//! the valid value, plus cuts of the file, for the open paths and the CLI to refuse cleanly.
#![allow(dead_code)]

use shmkit::segment::header::{self, HEADER_SIZE, Kind, RawHeader};

/// Offset of the payload in the valid file.
pub const PAYLOAD_OFFSET: u64 = 4096;
/// Elements (bytes) in the valid file's payload.
pub const COUNT: u64 = 64;

/// A published bytes segment of `COUNT` bytes, exactly as a creator writes it.
pub fn valid_file() -> Vec<u8> {
    let info = header::HeaderInfo {
        version: header::FORMAT_VERSION,
        kind: Kind::Bytes,
        elem: header::TypeInfo { size: 1, align: 1, name: "u8".into() },
        payload_offset: PAYLOAD_OFFSET,
        payload_len: COUNT,
        elem_count: COUNT,
        creator_pid: 1,
        created_unix_ns: 1,
    };
    let mut raw: RawHeader = header::build(&info);
    raw.state = header::READY;
    let mut v = bytemuck::bytes_of(&raw).to_vec();
    v.resize((PAYLOAD_OFFSET + COUNT) as usize, 0);
    v
}

/// `(label, file bytes)` for every header field set to 0, max and one off its valid value,
/// for hostile element names, and for the file cut short at the interesting places.
pub fn cases() -> Vec<(String, Vec<u8>)> {
    let good = valid_file();
    let magic = u64::from_ne_bytes(header::MAGIC);
    let fields: [(&str, usize, usize, u64); 12] = [
        ("magic", 0, 8, magic),
        ("version", 8, 4, header::FORMAT_VERSION.into()),
        ("state", 12, 4, header::READY.into()),
        ("kind", 16, 4, Kind::Bytes.code().into()),
        ("elem_align", 20, 4, 1),
        ("elem_size", 24, 8, 1),
        ("payload_offset", 32, 8, PAYLOAD_OFFSET),
        ("payload_len", 40, 8, COUNT),
        ("elem_count", 48, 8, COUNT),
        ("creator_pid", 56, 4, 1),
        ("flags", 60, 4, 0),
        ("created_unix_ns", 64, 8, 1),
    ];
    let mut out = vec![("valid".to_owned(), good.clone())];
    for (field, at, width, valid) in fields {
        let max = if width == 8 { u64::MAX } else { u64::from(u32::MAX) };
        let mut values = vec![0, max, valid.wrapping_sub(1) & max, valid.wrapping_add(1) & max];
        values.dedup();
        for v in values {
            if v == valid {
                continue;
            }
            let mut f = good.clone();
            f[at..at + width].copy_from_slice(&v.to_ne_bytes()[..width]);
            out.push((format!("{field}={v:#x}"), f));
        }
    }
    let names: [(&str, &[u8]); 5] = [
        ("name-empty", b""),
        ("name-not-utf8", &[0xff; 8]),
        ("name-escape", b"u8\x1b[2J\x1b[31m"),
        ("name-after-nul", b"u8\0x"),
        ("name-full", &[b'x'; header::MAX_TYPE_NAME]),
    ];
    for (label, name) in names {
        let mut f = good.clone();
        f[72..HEADER_SIZE].fill(0);
        f[72..72 + name.len()].copy_from_slice(name);
        out.push((label.to_owned(), f));
    }
    for cut in [1, 7, 8, 12, 16, 127, 128, 129, 4096, good.len() - 1] {
        out.push((format!("cut={cut}"), good[..cut].to_vec()));
    }
    let mut longer = good.clone();
    longer.push(0);
    out.push(("longer".to_owned(), longer));
    out
}
