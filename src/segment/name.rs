//! Segment names: validation and the random default.

use super::SegmentError;
use crate::sys;

/// Longest name accepted, not counting the leading `/` (Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Prefix of names shmkit generates.
pub const DEFAULT_PREFIX: &str = "/shmkit-";

/// Validate a user-supplied name and return it with exactly one leading `/`.
///
/// Accepts `name` or `/name` (Python's `SharedMemory` prints names without the slash);
/// the rest must be 1–255 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn normalize(name: &str) -> Result<String, SegmentError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bad = |reason: &str| SegmentError::InvalidName { name: name.to_owned(), reason: reason.to_owned() };
    if bare.is_empty() {
        return Err(bad("it is empty"));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 255 characters"));
    }
    if bare.starts_with('.') {
        return Err(bad("it starts with '.'"));
    }
    if let Some(c) = bare.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(bad(&format!("it contains {c:?}; use only A-Z a-z 0-9 . _ -")));
    }
    Ok(format!("/{bare}"))
}

/// A fresh `/shmkit-<32 hex digits>` name from 128 random bits.
pub fn generate() -> Result<String, SegmentError> {
    let mut bytes = [0u8; 16];
    sys::fd::random_bytes(&mut bytes).map_err(|source| SegmentError::Io {
        op: "getrandom",
        name: String::new(),
        source,
    })?;
    let mut s = String::with_capacity(DEFAULT_PREFIX.len() + 32);
    s.push_str(DEFAULT_PREFIX);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(s)
}

/// Path of a named segment under `/dev/shm`.
pub fn dev_shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize("abc").unwrap(), "/abc");
        assert_eq!(normalize("/psm_1a2b").unwrap(), "/psm_1a2b");
        for bad in ["", "/", "a/b", "../x", ".hidden", "sp ace", "é", &"x".repeat(256)] {
            assert!(matches!(normalize(bad), Err(SegmentError::InvalidName { .. })), "{bad:?}");
        }
        assert!(normalize(&"x".repeat(255)).is_ok());
        let g = generate().unwrap();
        assert_eq!(g.len(), DEFAULT_PREFIX.len() + 32);
        assert_ne!(g, generate().unwrap());
        assert_eq!(normalize(&g).unwrap(), g);
    }
}
