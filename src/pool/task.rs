//! Task trampolines: monomorphised functions that a worker calls with the user's function
//! address and the entry's argument bytes. Their addresses and the user's function address
//! travel through the mailbox; both are valid in the worker because it is a fork of this
//! binary image.

use bytemuck::Pod;

use super::timeout::item_begin;

/// One entry as a trampoline sees it: `count` items of argument bytes in `args`, and the
/// result area `out`.
pub(crate) struct Task<'a> {
    pub args: &'a [u8],
    pub count: u32,
    pub out: &'a mut [u8],
}

/// Runs one entry; returns the number of result bytes, or a task error (a panic unwinds out
/// of it instead).
///
/// # Safety
///
/// `func` must be the address of the function type the trampoline instance was made for,
/// taken in this binary image.
pub(crate) type Tramp = unsafe fn(func: u64, task: Task<'_>) -> Result<usize, String>;

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

/// The user's function `F` (a `fn` pointer type) from its address.
///
/// # Safety
///
/// `func` is the address of a function of type `F`, taken in this binary image.
pub(crate) unsafe fn user_fn<F: Copy>(func: u64) -> F {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>(), "F must be a fn pointer type") };
    // SAFETY: per this function's contract `F` is a fn pointer type (the size of `usize`,
    // checked above) and `func` the address of such a function.
    unsafe { std::mem::transmute_copy::<usize, F>(&(func as usize)) }
}

/// One `Pod` result at the start of `out`; its size.
pub(crate) fn put_result<R: Pod>(out: &mut [u8], r: &R) -> Result<usize, String> {
    let bytes = bytemuck::bytes_of(r);
    out.get_mut(..bytes.len()).ok_or("the result does not fit the task message")?.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// Run the `count` packed arguments of `step` bytes each through `call`, results packed.
fn run_packed<R: Pod>(t: Task<'_>, step: usize, mut call: impl FnMut(&[u8]) -> R) -> Result<usize, String> {
    let (sr, n) = (std::mem::size_of::<R>(), t.count as usize);
    if t.args.len() < n * step || t.out.len() < n * sr {
        return Err("the task entry is inconsistent (argument or result bytes do not match the item count)".into());
    }
    for i in 0..n {
        item_begin(i as u32, i * sr);
        let r = call(&t.args[i * step..(i + 1) * step]);
        t.out[i * sr..(i + 1) * sr].copy_from_slice(bytemuck::bytes_of(&r));
    }
    Ok(n * sr)
}

/// `fn(A) -> R` over `count` packed `A`s.
///
/// # Safety
///
/// `func` is the address of an `fn(A) -> R` of this binary image.
pub(crate) unsafe fn map_tramp<A: Pod, R: Pod>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f: fn(A) -> R = unsafe { user_fn(func) };
    run_packed(t, std::mem::size_of::<A>(), |b| f(bytemuck::pod_read_unaligned(b)))
}

/// `fn(A, B) -> R` over `count` packed `(A, B)` pairs.
///
/// # Safety
///
/// `func` is the address of an `fn(A, B) -> R` of this binary image.
pub(crate) unsafe fn star2_tramp<A: Pod, B: Pod, R: Pod>(func: u64, t: Task<'_>) -> Result<usize, String> {
    // SAFETY: per this function's contract.
    let f: fn(A, B) -> R = unsafe { user_fn(func) };
    let sa = std::mem::size_of::<A>();
    run_packed(t, sa + std::mem::size_of::<B>(), |b| {
        f(bytemuck::pod_read_unaligned(&b[..sa]), bytemuck::pod_read_unaligned(&b[sa..]))
    })
}

/// An initializer `fn()`.
///
/// # Safety
///
/// `func` is the address of an `fn()` of this binary image.
pub(crate) unsafe fn init0_tramp(func: u64, _args: &[u8]) {
    // SAFETY: per this function's contract.
    let f: fn() = unsafe { user_fn(func) };
    f()
}

/// An initializer `fn(A)`.
///
/// # Safety
///
/// `func` is the address of an `fn(A)` of this binary image.
pub(crate) unsafe fn init1_tramp<A: Pod>(func: u64, args: &[u8]) {
    // SAFETY: per this function's contract.
    let f: fn(A) = unsafe { user_fn(func) };
    if args.len() >= std::mem::size_of::<A>() {
        f(bytemuck::pod_read_unaligned(&args[..std::mem::size_of::<A>()]))
    }
}
