//! The shape of a typed segment (header, control block, aligned payload) and what an
//! opener expects to find. Every size is computed with checked arithmetic and bounded by
//! [`MAX_SEGMENT_LEN`]: an absurd request is a typed [`SegmentError::TooLarge`], never an
//! overflow.

use super::header::{HEADER_SIZE, Kind, TypeInfo};
use super::{MAX_SEGMENT_LEN, SegmentError};

/// The shape of a new typed segment.
pub(crate) struct Layout {
    pub kind: Kind,
    pub elem: TypeInfo,
    pub elem_count: u64,
    /// Bytes of control block between the header and the payload.
    pub control_len: usize,
    /// Alignment of the payload (at least the element's).
    pub payload_align: usize,
}

/// `TooLarge` for a size past [`MAX_SEGMENT_LEN`] (`u64::MAX` when it overflowed).
fn too_large(requested: u64) -> SegmentError {
    SegmentError::TooLarge { requested, capacity: MAX_SEGMENT_LEN, where_: "the address space" }
}

/// `len` if it is at most [`MAX_SEGMENT_LEN`], else `TooLarge`.
pub(crate) fn checked_len(len: u64) -> Result<u64, SegmentError> {
    if len > MAX_SEGMENT_LEN { Err(too_large(len)) } else { Ok(len) }
}

impl Layout {
    pub(super) fn bytes(len: usize) -> Self {
        Layout {
            kind: Kind::Bytes,
            elem: TypeInfo { size: 1, align: 1, name: "u8".into() },
            elem_count: len as u64,
            control_len: 0,
            payload_align: 64,
        }
    }

    /// `(payload_offset, payload_len, total)`, or an error when it cannot exist.
    pub(super) fn sizes(&self) -> Result<(u64, u64, u64), SegmentError> {
        if self.elem_count == 0 {
            return Err(SegmentError::ZeroLength);
        }
        let align = (self.payload_align as u64).max(u64::from(self.elem.align)).max(1);
        let offset = (HEADER_SIZE as u64)
            .checked_add(self.control_len as u64)
            .and_then(|end| end.checked_next_multiple_of(align))
            .ok_or_else(|| too_large(u64::MAX))?;
        let payload = self.elem.size.checked_mul(self.elem_count).ok_or_else(|| too_large(u64::MAX))?;
        let total = offset.checked_add(payload).ok_or_else(|| too_large(u64::MAX))?;
        Ok((offset, payload, checked_len(total)?))
    }
}

/// What `open` expects to find.
pub(crate) struct Expect {
    pub kind: Option<Kind>,
    pub elem: Option<TypeInfo>,
    pub min_control_len: usize,
}

impl Expect {
    pub(super) fn bytes() -> Self {
        Expect { kind: Some(Kind::Bytes), elem: None, min_control_len: 0 }
    }

    /// Whether a payload at `payload_offset` leaves room for the control block.
    pub(super) fn control_fits(&self, payload_offset: u64) -> bool {
        (HEADER_SIZE as u64).checked_add(self.min_control_len as u64).is_some_and(|need| payload_offset >= need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: u64, align: u32, count: u64, control_len: usize, payload_align: usize) -> Layout {
        Layout {
            kind: Kind::Array,
            elem: TypeInfo { size, align, name: "x".into() },
            elem_count: count,
            control_len,
            payload_align,
        }
    }

    #[test]
    fn huge_sizes_are_typed_errors_never_overflows() {
        let huge = [
            layout(1, 1, u64::MAX, 0, 64),
            layout(u64::MAX, 1, 2, 0, 64),
            layout(8, 8, u64::MAX / 8, 0, 64),
            layout(1, 1, 1, usize::MAX, 64),
            layout(1, 1, 1, usize::MAX - HEADER_SIZE + 1, 64),
            layout(1, 1, 1, 0, usize::MAX),
            layout(1, 1, 1, usize::MAX / 2, 1 << 62),
            layout(1, 1, MAX_SEGMENT_LEN, 0, 1),
        ];
        for (i, l) in huge.iter().enumerate() {
            let r = l.sizes();
            assert!(matches!(r, Err(SegmentError::TooLarge { .. })), "case {i}: {r:?}");
        }
        assert!(matches!(layout(1, 1, 0, 0, 64).sizes(), Err(SegmentError::ZeroLength)));
    }

    #[test]
    fn sizes_up_to_the_bound_are_exact() {
        assert_eq!(layout(8, 8, 10, 100, 64).sizes().unwrap(), (256, 80, 336));
        assert_eq!(layout(1, 1, 1, 0, 4096).sizes().unwrap(), (4096, 1, 4097));
        let most = MAX_SEGMENT_LEN - HEADER_SIZE as u64;
        assert_eq!(layout(1, 1, most, 0, 1).sizes().unwrap(), (128, most, MAX_SEGMENT_LEN));
        assert!(matches!(layout(1, 1, most + 1, 0, 1).sizes(), Err(SegmentError::TooLarge { .. })));
        assert!(checked_len(MAX_SEGMENT_LEN).is_ok() && checked_len(MAX_SEGMENT_LEN + 1).is_err());
    }

    #[test]
    fn control_block_fit_is_checked_without_overflow() {
        let e = Expect { kind: None, elem: None, min_control_len: usize::MAX };
        assert!(!e.control_fits(u64::MAX));
        let e = Expect { kind: None, elem: None, min_control_len: 64 };
        assert!(e.control_fits(192) && !e.control_fits(191));
    }
}
