//! Element types that may live in shared memory, and their stable names.

use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};

use crate::segment::TypeInfo;

/// A type that may be stored in shmkit segments: `bytemuck::Pod` (every bit pattern
/// valid, no pointers, no padding) with a stable name recorded in the segment header so
/// that another process (or Python) opening it can check it asks for the same type.
///
/// Implemented for the numeric primitives. For your own `#[repr(C)]` Pod struct:
///
/// ```
/// use shmkit::Element;
/// #[repr(C)]
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// struct Particle { pos: [f64; 3], vel: [f64; 3] }
/// impl Element for Particle { const TYPE_NAME: &'static str = "Particle"; }
///
/// let a = shmkit::SharedArray::<Particle>::anonymous(4)?;
/// assert_eq!(a.segment().header().unwrap().elem.name, "Particle");
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait Element: bytemuck::Pod + Send + Sync {
    /// The name written into segment headers (at most 56 bytes of UTF-8).
    const TYPE_NAME: &'static str;
}

/// The fingerprint of `T` as stored in headers.
pub fn type_info<T: Element>() -> TypeInfo {
    TypeInfo {
        size: std::mem::size_of::<T>() as u64,
        align: std::mem::align_of::<T>() as u32,
        name: T::TYPE_NAME.to_owned(),
    }
}

/// An integer element with a same-layout atomic type, for atomic views.
///
/// # Safety
///
/// `Self::Atomic` must have the same size, alignment and bit validity as `Self`.
pub unsafe trait AtomicElement: Element {
    /// The matching `std::sync::atomic` type.
    type Atomic: Send + Sync;
}

macro_rules! elements {
    ($($t:ty => $name:literal $(, $atomic:ty)?);* $(;)?) => {$(
        impl Element for $t {
            const TYPE_NAME: &'static str = $name;
        }
        $(
            const _: () = assert!(
                std::mem::size_of::<$t>() == std::mem::size_of::<$atomic>()
                    && std::mem::align_of::<$t>() == std::mem::align_of::<$atomic>()
            );
            // SAFETY: std documents each atomic integer as having the same in-memory
            // representation as its integer; size and alignment are asserted above.
            unsafe impl AtomicElement for $t {
                type Atomic = $atomic;
            }
        )?
    )*};
}

elements! {
    u8 => "u8", AtomicU8;
    i8 => "i8", AtomicI8;
    u16 => "u16", AtomicU16;
    i16 => "i16", AtomicI16;
    u32 => "u32", AtomicU32;
    i32 => "i32", AtomicI32;
    u64 => "u64", AtomicU64;
    i64 => "i64", AtomicI64;
    usize => "usize", AtomicUsize;
    isize => "isize", AtomicIsize;
    f32 => "f32";
    f64 => "f64";
    u128 => "u128";
    i128 => "i128";
}
