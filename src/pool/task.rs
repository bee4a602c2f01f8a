//! Task trampolines: monomorphised functions that a worker calls with the user's function
//! address and the entry's argument bytes. Their addresses and the user's function address
//! travel through the mailbox; both are valid in the worker because it is a fork of this
//! binary image.

use bytemuck::Pod;

use super::timeout::item_begin;

/// Runs one entry: `count` items of arguments in `args`, results into `out`; returns the
/// number of result bytes, or a task error (a panic unwinds out of it instead).
///
/// # Safety
///
/// `func` must be the address of the function type the trampoline instance was made for,
/// taken in this binary image.
pub(crate) type Tramp = unsafe fn(func: u64, args: &[u8], count: u32, out: &mut [u8]) -> Result<usize, String>;

/// Runs an initializer with its argument bytes.
///
/// # Safety
///
/// As for [`Tramp`].
pub(crate) type InitTramp = unsafe fn(func: u64, args: &[u8]);

/// The address of a trampoline instance, as stored in an entry.
macro_rules! tramp_addr {
    ($ty:ty, $f:expr) => {{
        let f: $ty = $f;
        f as usize as u64
    }};
}
pub(crate) use tramp_addr;

fn corrupt() -> String {
    "the task entry is inconsistent (argument or result bytes do not match the item count)".to_owned()
}

/// `fn(A) -> R` over `count` packed `A`s.
///
/// # Safety
///
/// `func` is the address of an `fn(A) -> R` of this binary image.
pub(crate) unsafe fn map_tramp<A: Pod, R: Pod>(
    func: u64,
    args: &[u8],
    count: u32,
    out: &mut [u8],
) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func as usize) };
    let (sa, sr, n) = (std::mem::size_of::<A>(), std::mem::size_of::<R>(), count as usize);
    if args.len() < n * sa || out.len() < n * sr {
        return Err(corrupt());
    }
    for i in 0..n {
        item_begin(i as u32, i * sr);
        let a: A = bytemuck::pod_read_unaligned(&args[i * sa..(i + 1) * sa]);
        let r = f(a);
        out[i * sr..(i + 1) * sr].copy_from_slice(bytemuck::bytes_of(&r));
    }
    Ok(n * sr)
}

/// `fn(A, B) -> R` over `count` packed `(A, B)` pairs.
///
/// # Safety
///
/// `func` is the address of an `fn(A, B) -> R` of this binary image.
pub(crate) unsafe fn star2_tramp<A: Pod, B: Pod, R: Pod>(
    func: u64,
    args: &[u8],
    count: u32,
    out: &mut [u8],
) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(func as usize) };
    let (sa, sb, sr, n) =
        (std::mem::size_of::<A>(), std::mem::size_of::<B>(), std::mem::size_of::<R>(), count as usize);
    let step = sa + sb;
    if args.len() < n * step || out.len() < n * sr {
        return Err(corrupt());
    }
    for i in 0..n {
        item_begin(i as u32, i * sr);
        let at = i * step;
        let a: A = bytemuck::pod_read_unaligned(&args[at..at + sa]);
        let b: B = bytemuck::pod_read_unaligned(&args[at + sa..at + step]);
        let r = f(a, b);
        out[i * sr..(i + 1) * sr].copy_from_slice(bytemuck::bytes_of(&r));
    }
    Ok(n * sr)
}

/// An initializer `fn()`.
///
/// # Safety
///
/// `func` is the address of an `fn()` of this binary image.
pub(crate) unsafe fn init0_tramp(func: u64, _args: &[u8]) {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn()>(func as usize) };
    f()
}

/// An initializer `fn(A)`.
///
/// # Safety
///
/// `func` is the address of an `fn(A)` of this binary image.
pub(crate) unsafe fn init1_tramp<A: Pod>(func: u64, args: &[u8]) {
    // SAFETY: per this function's contract.
    let f = unsafe { std::mem::transmute::<usize, fn(A)>(func as usize) };
    if args.len() >= std::mem::size_of::<A>() {
        f(bytemuck::pod_read_unaligned(&args[..std::mem::size_of::<A>()]))
    }
}
