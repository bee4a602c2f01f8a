//! Keys of a [`SharedDict`](super::SharedDict) and the fixed hash that places them.

use std::borrow::Cow;
use std::fmt::Debug;
use std::hash::Hash;

use crate::shared::Element;

mod sealed {
    pub trait Sealed {}
}

/// A type that can key a [`SharedDict`](super::SharedDict): stored as bytes, compared by bytes,
/// and placed by the dict's fixed hash of those bytes (see [`key_hash`]).
///
/// - `str` and `[u8]`: variable length, at most the dict's `max_key_len` bytes;
/// - every [`Element`] that is also `Eq + Hash + Debug` (the integers, your own `#[repr(C)]`
///   Pod struct deriving them; not the floats) and `[u8; N]`: fixed length, compared bit for bit.
///
/// Sealed: the byte encoding is part of the segment format.
///
/// ```
/// use shmkit::manager::SharedDict;
/// let by_name = SharedDict::<str, f64>::anonymous(100)?;
/// by_name.insert("pi", 3.14)?;
/// let by_id = SharedDict::<u64, f64>::anonymous(100)?;
/// by_id.insert(&42, 2.71)?;
/// assert_eq!(by_id.get(&42)?, Some(2.71));
/// # Ok::<(), shmkit::manager::ManagerError>(())
/// ```
pub trait DictKey: sealed::Sealed {
    /// What a snapshot hands back: `String` for `str`, `Vec<u8>` for `[u8]`, the type itself
    /// for fixed-size keys.
    type Owned: Clone + Eq + Hash + Debug + Send;

    /// The length every key has, `None` for variable-length keys.
    const FIXED_LEN: Option<usize>;

    /// The name recorded in the dict so that an opener with another key type is refused.
    fn key_type_name() -> Cow<'static, str>;

    /// The stored bytes.
    fn key_bytes(&self) -> &[u8];

    /// Rebuild an owned key from stored bytes; `None` when they cannot be one (invalid UTF-8,
    /// wrong length).
    fn from_key_bytes(bytes: &[u8]) -> Option<Self::Owned>;
}

impl sealed::Sealed for str {}
impl DictKey for str {
    type Owned = String;
    const FIXED_LEN: Option<usize> = None;
    fn key_type_name() -> Cow<'static, str> {
        Cow::Borrowed("str")
    }
    fn key_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<String> {
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }
}

impl sealed::Sealed for [u8] {}
impl DictKey for [u8] {
    type Owned = Vec<u8>;
    const FIXED_LEN: Option<usize> = None;
    fn key_type_name() -> Cow<'static, str> {
        Cow::Borrowed("bytes")
    }
    fn key_bytes(&self) -> &[u8] {
        self
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

impl<const N: usize> sealed::Sealed for [u8; N] {}
impl<const N: usize> DictKey for [u8; N] {
    type Owned = [u8; N];
    const FIXED_LEN: Option<usize> = Some(N);
    fn key_type_name() -> Cow<'static, str> {
        Cow::Owned(format!("[u8; {N}]"))
    }
    fn key_bytes(&self) -> &[u8] {
        self
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.try_into().ok()
    }
}

impl<T: Element + Eq + Hash + Debug> sealed::Sealed for T {}
impl<T: Element + Eq + Hash + Debug> DictKey for T {
    type Owned = T;
    const FIXED_LEN: Option<usize> = Some(std::mem::size_of::<T>());
    fn key_type_name() -> Cow<'static, str> {
        Cow::Borrowed(T::TYPE_NAME)
    }
    fn key_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<T> {
        bytemuck::try_pod_read_unaligned(bytes).ok()
    }
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xFF51_AFD7_ED55_8CCD;
const K3: u64 = 0xC4CE_B9FE_1A85_EC53;

/// The dict's fixed 64-bit hash of a key's bytes. It is part of the segment format: every
/// process and every build computes the same value (no per-process random seed), so that
/// all of them look for a key in the same place.
///
/// ```text
/// h = K1 ^ (len * K2)                                  (wrapping arithmetic)
/// for each 8-byte chunk w (little-endian, the last one zero-padded):
///     h = rotl(h ^ w) * K1, 31)
/// h = fmix64(h)      (MurmurHash3's finaliser: ^>>33, *K2, ^>>33, *K3, ^>>33)
/// K1 = 0x9E3779B97F4A7C15, K2 = 0xFF51AFD7ED558CCD, K3 = 0xC4CEB9FE1A85EC53
/// ```
///
/// It spreads keys well but is not keyed: keys chosen to collide can crowd one stripe
/// ([`ManagerError::StripeFull`](super::ManagerError::StripeFull)). Do not key a dict with
/// untrusted input if that matters.
///
/// ```
/// assert_eq!(shmkit::manager::key_hash(b"count"), 0x4e57_5e58_54dd_8767);
/// ```
pub fn key_hash(bytes: &[u8]) -> u64 {
    #[inline(always)]
    fn mix(h: u64, w: u64) -> u64 {
        (h ^ w).wrapping_mul(K1).rotate_left(31)
    }
    let mut h = K1 ^ (bytes.len() as u64).wrapping_mul(K2);
    let mut rest = bytes;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        h = mix(h, u64::from_le_bytes(*chunk));
        rest = tail;
    }
    if !rest.is_empty() {
        h = mix(h, tail_word(rest));
    }
    h ^= h >> 33;
    h = h.wrapping_mul(K2);
    h ^= h >> 33;
    h = h.wrapping_mul(K3);
    h ^ (h >> 33)
}

/// The 1 to 7 bytes of `rest` as a little-endian word, zero-padded, without a loop: two
/// overlapping loads whose shared bytes are equal, so OR-ing them is exact.
#[inline(always)]
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    if let (Some(lo), Some(hi)) = (rest.first_chunk::<4>(), rest.last_chunk::<4>()) {
        u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << ((n - 4) * 8)
    } else {
        // 1 to 3 bytes.
        let (first, mid, last) = (rest[0], rest[n / 2], rest[n - 1]);
        u64::from(first) | u64::from(mid) << ((n / 2) * 8) | u64::from(last) << ((n - 1) * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // These values are part of the segment format: changing them breaks every dict.
        let got: Vec<u64> = [&b""[..], b"a", b"count", b"12345678", b"123456789"].iter().map(|k| key_hash(k)).collect();
        let pinned = [
            0x9ca0_66f1_a4ab_2eea,
            0x056f_18a0_aa89_64c0,
            0x4e57_5e58_54dd_8767,
            0x25a4_b7c0_6f06_1310,
            0xfd15_1fd7_42e7_b74d,
        ];
        assert_eq!(got, pinned, "{got:x?}");
    }

    /// The documented definition, byte by byte.
    fn reference(bytes: &[u8]) -> u64 {
        let mut h = K1 ^ (bytes.len() as u64).wrapping_mul(K2);
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K1).rotate_left(31);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(K2);
        h ^= h >> 33;
        h = h.wrapping_mul(K3);
        h ^ (h >> 33)
    }

    #[test]
    fn fast_hash_is_the_definition() {
        let bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        for start in 0..8 {
            for end in start..bytes.len() {
                assert_eq!(key_hash(&bytes[start..end]), reference(&bytes[start..end]), "{start}..{end}");
            }
        }
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(<str as DictKey>::from_key_bytes("héllo".key_bytes()), Some("héllo".to_owned()));
        assert_eq!(<str as DictKey>::from_key_bytes(&[0xff]), None);
        assert_eq!(<u64 as DictKey>::from_key_bytes(7u64.key_bytes()), Some(7));
        assert_eq!(<u64 as DictKey>::from_key_bytes(&[1, 2]), None);
        assert_eq!(<[u8; 3] as DictKey>::from_key_bytes(&[1, 2, 3]), Some([1, 2, 3]));
        assert_eq!(<u32 as DictKey>::FIXED_LEN, Some(4));
        assert_eq!(<str as DictKey>::FIXED_LEN, None);
        assert_eq!(<[u8; 3] as DictKey>::key_type_name(), "[u8; 3]");
    }
}
