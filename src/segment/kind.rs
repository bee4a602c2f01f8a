//! One handle core for every segment-backed type: [`SegmentKind`] says how one kind is
//! attached (what its header must say, how its control block is validated), [`Create`]
//! how it is sized and initialised, and [`segment_handle!`] generates the same public
//! constructors and accessors on every type from them:
//!
//! `create(name, ..)`, `anonymous(..)`, `open(name)`, `open_or_create(name, ..)`,
//! `create_with(&SegmentOptions, name, ..)`, `open_with(&SegmentOptions, name)`,
//! `open_or_create_with(&SegmentOptions, name, ..)`, `name()`, `segment()`, `persist()`.
//!
//! `open_or_create` is `O_CREAT|O_EXCL`, then, on `EEXIST`, an ordinary open with its
//! bounded wait for publication, then a check that what exists has the kind, element type
//! and element count the caller would have created.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Expect, Layout, Segment, SegmentError, SegmentOptions, Target, file, name};

/// The start of a segment-backed handle's `Debug` output, `what { name: .., type: .. }`:
/// the segment's name and the element type's name; the caller adds its own fields and
/// finishes.
pub(crate) fn debug_handle<'a, 'b>(
    f: &'a mut std::fmt::Formatter<'b>,
    what: &str,
    seg: &Segment,
    elem: &str,
) -> std::fmt::DebugStruct<'a, 'b> {
    let mut d = f.debug_struct(what);
    d.field("name", &seg.name()).field("type", &elem);
    d
}

/// How one segment-backed type is attached to a published segment.
pub(crate) trait SegmentKind: Sized {
    /// The error its constructors return.
    type Error: From<SegmentError>;

    /// What the header of a segment of this kind must say.
    fn expect() -> Expect;

    /// Validate the control block of a published segment whose header matched
    /// [`expect`](Self::expect), and wrap it.
    fn attach(seg: Segment) -> Result<Self, Self::Error>;
}

/// How a [`SegmentKind`] is created from the arguments `A` of its constructors.
pub(crate) trait Create<A>: SegmentKind {
    /// The shape of a new segment for `args` (checking them first).
    fn layout(args: &A) -> Result<Layout, Self::Error>;

    /// Initialise the control block and payload of a new segment.
    ///
    /// # Safety
    ///
    /// `seg` was just created from [`layout`](Self::layout)`(&args)`: zero-filled and not
    /// yet published, so no other reference to its control block or payload exists in any
    /// process.
    unsafe fn init(seg: &Segment, args: A) -> Result<(), SegmentError>;

    /// After `open_or_create` opened an existing segment: refuse it if it differs from what
    /// `args` would have created in a way the header's kind, element type and count do not
    /// show (a queue's largest message, say).
    fn check_existing(_handle: &Self, _args: &A) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Create a `K` at `target`.
pub(crate) fn create<K: Create<A>, A>(opts: &SegmentOptions, target: Target<'_>, args: A) -> Result<K, K::Error> {
    let layout = K::layout(&args)?;
    // SAFETY: `create_typed` hands `init` the unpublished segment it made from `layout`.
    let seg = Segment::create_typed(opts, target, &layout, |seg| unsafe { K::init(seg, args) })?;
    K::attach(seg)
}

/// Open the `K` called `name`.
pub(crate) fn open<K: SegmentKind>(opts: &SegmentOptions, name: &str) -> Result<K, K::Error> {
    K::attach(Segment::open_typed(opts, name, &K::expect())?)
}

/// Open the `K` called `name`, or create it from `args` when the name is free.
pub(crate) fn open_or_create<K: Create<A>, A>(opts: &SegmentOptions, name: &str, args: A) -> Result<K, K::Error> {
    let layout = K::layout(&args)?;
    // Taken by `init` when this call creates; still here when it opened an existing segment.
    let mut args = Some(args);
    let init = |seg: &Segment| match args.take() {
        // SAFETY: as in `create`: `init` runs only on the segment this call created.
        Some(args) => unsafe { K::init(seg, args) },
        None => Err(SegmentError::Corrupt { name: name.to_owned(), reason: "internal: initialised twice".into() }),
    };
    let handle = K::attach(Segment::open_or_create_typed(opts, name, &layout, init, &K::expect())?)?;
    if let Some(args) = &args {
        K::check_existing(&handle, args)?;
    }
    Ok(handle)
}

/// Set by [`crate::testing::stop_before_publish`].
pub(crate) static STOP_BEFORE_PUBLISH: AtomicBool = AtomicBool::new(false);

/// The test hook creators run after writing the header, before `init` and publication.
pub(super) fn test_hook_before_publish(seg: &Segment) {
    if seg.name().is_some() && STOP_BEFORE_PUBLISH.load(Ordering::Relaxed) {
        crate::sys::process::stop_self_forever();
    }
}

impl Segment {
    /// Create the named segment for `layout` with `O_CREAT|O_EXCL` and run `init`, or, when
    /// the name exists, open it against `expect` and check it is what `layout` would have
    /// made. A name that vanishes between the two (a creator that failed and unlinked it)
    /// is raced for again, within the open timeout.
    pub(crate) fn open_or_create_typed(
        opts: &SegmentOptions,
        name: &str,
        layout: &Layout,
        init: impl FnOnce(&Segment) -> Result<(), SegmentError>,
        expect: &Expect,
    ) -> Result<Segment, SegmentError> {
        let name = name::normalize(name)?;
        let (_, _, total) = layout.sizes()?;
        let mut poll = file::Poll::new();
        loop {
            match file::create_file(opts, &name, total) {
                Ok(fd) => return Self::init_created(fd, Some(name), layout, init),
                Err(SegmentError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::open_typed(opts, &name, expect) {
                Ok(seg) => return matches_layout(seg, layout),
                Err(SegmentError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            poll.wait(opts.open_timeout).map_err(|waited| SegmentError::InitTimeout { name: name.clone(), waited })?;
        }
    }
}

/// `seg` if its element type and count are those of `layout` (its kind was checked on
/// open), else the typed mismatch.
fn matches_layout(seg: Segment, layout: &Layout) -> Result<Segment, SegmentError> {
    let name = seg.name().unwrap_or("").to_owned();
    let Some(h) = seg.header() else { return Err(SegmentError::NotShmkit { name }) };
    if h.elem != layout.elem {
        return Err(SegmentError::TypeMismatch { name, expected: layout.elem.clone(), found: h.elem.clone() });
    }
    if h.elem_count != layout.elem_count {
        return Err(SegmentError::SizeMismatch { name, expected: layout.elem_count, found: h.elem_count });
    }
    Ok(seg)
}

/// The public constructors and accessors of a segment-backed type, from its
/// [`SegmentKind`] and [`Create`] impls.
///
/// ```text
/// segment_handle! {
///     impl[T: Element] SharedArray<T>, "array", SegmentError, seg,
///     (len: usize) => ArrayArgs { len, slots: DEFAULT_CLAIM_SLOTS }
/// }
/// ```
///
/// `seg` is the path of the handle's `Segment` field. The arguments after it are the
/// type's own (`..`), turned into the `Create` argument by the expression after `=>`. `@common` leaves out `create_with`, for a type
/// whose `create_with` takes more than `create`.
macro_rules! segment_handle {
    (impl[$($gen:tt)*] $ty:ty, $what:literal, $err:ty, $($seg:ident).+, ($($arg:ident: $aty:ty),*) => $args:expr) => {
        $crate::segment::kind::segment_handle!(@common impl[$($gen)*] $ty, $what, $err, $($seg).+, ($($arg: $aty),*) => $args);
        impl<$($gen)*> $ty {
            #[doc = concat!("As [`create`](Self::create), with explicit [`SegmentOptions`](crate::SegmentOptions).")]
            pub fn create_with(
                opts: &$crate::SegmentOptions,
                name: Option<&str>,
                $($arg: $aty),*
            ) -> Result<Self, $err> {
                $crate::segment::kind::create(opts, $crate::segment::Target::Named(name), $args)
            }
        }
    };
    (@common impl[$($gen:tt)*] $ty:ty, $what:literal, $err:ty, $($seg:ident).+, ($($arg:ident: $aty:ty),*) => $args:expr) => {
        impl<$($gen)*> $ty {
            #[doc = concat!("Create a named ", $what, " (`None`: a random `/shmkit-…` name).")]
            #[doc = ""]
            #[doc = "The name exists already: [`SegmentError::AlreadyExists`](crate::SegmentError::AlreadyExists)."]
            pub fn create(name: Option<&str>, $($arg: $aty),*) -> Result<Self, $err> {
                $crate::segment::kind::create(
                    &$crate::SegmentOptions::default(),
                    $crate::segment::Target::Named(name),
                    $args,
                )
            }

            #[doc = concat!("Create an anonymous ", $what, " (a sealed memfd), shared with forked children.")]
            pub fn anonymous($($arg: $aty),*) -> Result<Self, $err> {
                $crate::segment::kind::create(&$crate::SegmentOptions::default(), $crate::segment::Target::Anonymous, $args)
            }

            #[doc = concat!("Open the named ", $what, "; another kind or element type is a typed error.")]
            pub fn open(name: &str) -> Result<Self, $err> {
                Self::open_with(&$crate::SegmentOptions::default(), name)
            }

            #[doc = concat!("As [`open`](Self::open), with explicit [`SegmentOptions`](crate::SegmentOptions) ")]
            #[doc = "(open timeout, [waiting for the name](crate::SegmentOptions::wait_for))."]
            pub fn open_with(opts: &$crate::SegmentOptions, name: &str) -> Result<Self, $err> {
                $crate::segment::kind::open(opts, name)
            }

            #[doc = concat!("Open the named ", $what, ", or create it when the name is free: of many processes ")]
            #[doc = "racing, exactly one creates ([`Segment::created`](crate::Segment::created) on"]
            #[doc = "[`segment`](Self::segment) tells which). What exists must be what this call would"]
            #[doc = "create, else a typed mismatch error; see"]
            #[doc = "[`SegmentOptions::open_or_create`](crate::SegmentOptions::open_or_create)."]
            pub fn open_or_create(name: &str, $($arg: $aty),*) -> Result<Self, $err> {
                Self::open_or_create_with(&$crate::SegmentOptions::default(), name, $($arg),*)
            }

            #[doc = "As [`open_or_create`](Self::open_or_create), with explicit [`SegmentOptions`](crate::SegmentOptions)."]
            pub fn open_or_create_with(
                opts: &$crate::SegmentOptions,
                name: &str,
                $($arg: $aty),*
            ) -> Result<Self, $err> {
                $crate::segment::kind::open_or_create(opts, name, $args)
            }

            #[doc = "The segment's name, `None` when anonymous."]
            pub fn name(&self) -> Option<&str> {
                self.$($seg).+.name()
            }

            #[doc = "The underlying segment."]
            pub fn segment(&self) -> &$crate::Segment {
                &self.$($seg).+
            }

            #[doc = "Keep the name after this (creating) handle drops."]
            pub fn persist(&mut self) {
                self.$($seg).+.persist();
            }
        }
    };
}
pub(crate) use segment_handle;
