//! The three ways to wait for one operation — as long as it takes, not at all (`try_`), or
//! up to a timeout (`_timeout`) — written once: [`wait_variants!`] generates the three public
//! methods from one inner method that takes how long to wait as its last argument.

use std::time::Duration;

use crate::sys::Deadline;

/// How long an operation may wait, as the inner method of [`wait_variants!`] takes it.
pub(crate) trait WaitFor {
    /// As long as it takes.
    fn forever() -> Self;
    /// Not at all.
    fn now() -> Self;
    /// At most `timeout`.
    fn timeout(timeout: Duration) -> Self;
}

/// `None` does not wait.
impl WaitFor for Option<Deadline> {
    fn forever() -> Self {
        Some(Deadline::never())
    }

    fn now() -> Self {
        None
    }

    fn timeout(timeout: Duration) -> Self {
        Some(Deadline::after(timeout))
    }
}

/// Generates the blocking, `try_` and `_timeout` methods of one operation, with their docs,
/// from the inner method named after `=>`, which takes the blocking method's arguments and
/// then a [`WaitFor`] (`_timeout` takes a `timeout: Duration` after them):
///
/// ```text
/// wait_variants! {
///     /// Lock the value, waiting as long as it takes.
///     pub fn lock(&self) -> Result<ValueGuard<'_, T>, ClaimError>;
///     /// Lock the value if nobody holds it now.
///     pub fn try_lock;
///     /// Lock the value, giving up after `timeout`.
///     pub fn lock_timeout;
///     => make_guard
/// }
/// ```
macro_rules! wait_variants {
    (
        $(#[$forever_doc:meta])*
        $vis:vis fn $forever:ident $(<$lt:lifetime>)? (&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;
        $(#[$now_doc:meta])*
        $now_vis:vis fn $now:ident;
        $(#[$timeout_doc:meta])*
        $timeout_vis:vis fn $timeout:ident;
        => $inner:ident
    ) => {
        $(#[$forever_doc])*
        $vis fn $forever $(<$lt>)? (&self $(, $arg: $ty)*) -> $ret {
            self.$inner($($arg,)* $crate::sync::wait_for::WaitFor::forever())
        }

        $(#[$now_doc])*
        $now_vis fn $now $(<$lt>)? (&self $(, $arg: $ty)*) -> $ret {
            self.$inner($($arg,)* $crate::sync::wait_for::WaitFor::now())
        }

        $(#[$timeout_doc])*
        $timeout_vis fn $timeout $(<$lt>)? (&self $(, $arg: $ty)*, timeout: ::std::time::Duration) -> $ret {
            self.$inner($($arg,)* $crate::sync::wait_for::WaitFor::timeout(timeout))
        }
    };
}

pub(crate) use wait_variants;
