//! `Pipe`: a duplex pair of message ends, like `multiprocessing.Pipe()`.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, SeqCst};

use super::bytes::{BYTES_TYPE, check_max_message, copy_into, get_bytes, put_bytes};
use super::error::{GetError, PipeError, PutError};
use super::layout::byte_stride;
use super::layout::{self, RawRing, Shape};
use super::ops::{PutStop, Wait};
use super::park::{policy_knob, wake_all};
use super::queue::{attach_ring, check_capacity, init_rings};
use super::token::{Token, is_held};
use crate::segment::kind::{self, Create, SegmentKind};
use crate::segment::{Expect, Kind, Layout, Segment, SegmentError, SegmentOptions, Target, TypeInfo};
use crate::sync::WaitPolicy;
use crate::sync::wait::Cadence;
use crate::sync::wait_for::{WaitFor, wait_variants};

/// Element type name of pipe segments.
const PIPE_TYPE: &str = "shmkit.pipe";
const _: () = assert!(!PIPE_TYPE.is_empty() && !BYTES_TYPE.is_empty());

/// Words before the two rings: which ends have ever connected.
#[repr(C, align(64))]
struct PipeHeader {
    /// `opened[k] == 1` once end `k` holds its token (it never goes back to 0).
    opened: [AtomicU32; 2],
}

const PIPE_HEADER: usize = std::mem::size_of::<PipeHeader>();

/// Constructors of pipes: [`Pipe::anonymous`] for a parent and its forked children,
/// [`Pipe::create`] / [`Pipe::open`] for unrelated processes.
///
/// Each end sends on its own ring and receives on the other's: `capacity` messages of up
/// to `max_message` bytes per direction. An end is *hung up* when every copy of it is gone
/// — dropped, in every process that inherited it by `fork`, or its processes died — as
/// with Python's `Connection`: close the end you do not use in a forked child. A receive
/// then returns what was sent and then [`GetError::Disconnected`]; a send that has to wait
/// for room returns [`PutError::Disconnected`]. A send that fits is not checked.
///
/// ```
/// use shmkit::channel::{GetError, Pipe};
/// let (a, b) = Pipe::anonymous(4, 256)?;
/// a.send(b"ping").unwrap();
/// assert_eq!(b.recv().unwrap(), b"ping");
/// b.send(b"pong").unwrap();
/// assert_eq!(a.recv().unwrap(), b"pong");
/// drop(b);
/// assert_eq!(a.recv(), Err(GetError::Disconnected));
/// # Ok::<(), shmkit::channel::PipeError>(())
/// ```
#[derive(Debug)]
pub struct Pipe;

/// One end of a [`Pipe`].
#[must_use = "dropping an end hangs it up (once every copy is gone): the peer then gets `Disconnected`"]
pub struct PipeEnd {
    seg: Arc<Segment>,
    me: u32,
    tx: RawRing,
    rx: RawRing,
    /// `Some` until drop, which closes it before waking the peer.
    token: Option<Token>,
    policy: Option<WaitPolicy>,
}

impl std::fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeEnd").field("name", &self.seg.name()).field("end", &self.me).finish()
    }
}

/// The two rings of a pipe, back to back in the payload; `None` when their data would not
/// fit a `u64` (a size from the caller or from the file: never wrapped).
fn shapes(capacity: u64, stride: u64, max_msg: u64) -> Option<[Shape; 2]> {
    let second = capacity.checked_mul(stride)?;
    Some([
        Shape { capacity, stride, max_msg, data_offset: 0 },
        Shape { capacity, stride, max_msg, data_offset: second },
    ])
}

/// The segment of a pipe: its header checked on open; the ends attach to it.
struct PipeSegment(Segment);

/// The layout of a pipe segment and its two ring shapes.
fn pipe_layout(capacity: usize, max: usize) -> Result<(Layout, [Shape; 2]), SegmentError> {
    check_capacity(capacity, 2)?;
    let stride = byte_stride(max)?;
    let shapes = shapes(capacity as u64, stride, max as u64).ok_or(SegmentError::TooLarge {
        requested: u64::MAX,
        capacity: isize::MAX as u64,
        where_: "the address space (capacity × max_message)",
    })?;
    let layout = Layout {
        kind: Kind::Queue,
        elem: TypeInfo { size: stride, align: 8, name: PIPE_TYPE.into() },
        elem_count: 2 * capacity as u64,
        control_len: PIPE_HEADER + 2 * layout::ring_len(capacity),
        payload_align: if stride >= 4096 { 4096 } else { 64 },
    };
    Ok((layout, shapes))
}

impl SegmentKind for PipeSegment {
    type Error = SegmentError;

    fn expect() -> Expect {
        Expect { kind: Some(Kind::Queue), elem: None, min_control_len: PIPE_HEADER + 2 * layout::ring_len(1) }
    }

    fn attach(seg: Segment) -> Result<Self, SegmentError> {
        if let Some(h) = seg.header()
            && (h.elem.name != PIPE_TYPE || h.elem.align != 8)
        {
            let expected = TypeInfo { size: h.elem.size, align: 8, name: PIPE_TYPE.into() };
            let name = seg.name().unwrap_or("").to_owned();
            return Err(SegmentError::TypeMismatch { name, expected, found: h.elem.clone() });
        }
        Ok(PipeSegment(seg))
    }
}

impl Create<(usize, usize)> for PipeSegment {
    fn layout(&(capacity, max): &(usize, usize)) -> Result<Layout, SegmentError> {
        Ok(pipe_layout(capacity, max)?.0)
    }

    unsafe fn init(seg: &Segment, (capacity, max): (usize, usize)) -> Result<(), SegmentError> {
        let (_, shapes) = pipe_layout(capacity, max)?;
        // SAFETY: the caller's contract; the layout made room for the pipe header (left
        // zero-filled: nobody has connected) and the two rings.
        unsafe { init_rings(seg, PIPE_HEADER, &shapes) }
    }
}

impl Pipe {
    /// A connected pair of ends in an anonymous segment, for this process and the children
    /// it forks.
    pub fn anonymous(capacity: usize, max_message: usize) -> Result<(PipeEnd, PipeEnd), PipeError> {
        let PipeSegment(seg) = kind::create(&SegmentOptions::default(), Target::Anonymous, (capacity, max_message))?;
        let seg = Arc::new(seg);
        let a =
            PipeEnd::attach(Arc::clone(&seg), 0, None)?.ok_or_else(|| PipeError::EndTaken { name: String::new() })?;
        let b = PipeEnd::attach(seg, 1, None)?.ok_or_else(|| PipeError::EndTaken { name: String::new() })?;
        Ok((a, b))
    }

    /// Create a named pipe and return its first end; another process takes the second
    /// with [`Pipe::open`].
    ///
    /// ```
    /// use shmkit::channel::Pipe;
    /// let a = Pipe::create(None, 4, 64)?;
    /// let b = Pipe::open(a.name().unwrap())?; // in another process, usually
    /// b.send(b"hi").unwrap();
    /// assert_eq!(a.recv().unwrap(), b"hi");
    /// assert!(Pipe::open(a.name().unwrap()).is_err()); // two ends only
    /// # Ok::<(), shmkit::channel::PipeError>(())
    /// ```
    pub fn create(name: Option<&str>, capacity: usize, max_message: usize) -> Result<PipeEnd, PipeError> {
        Self::create_with(&SegmentOptions::default(), name, capacity, max_message)
    }

    /// As [`create`](Self::create), with explicit segment options.
    pub fn create_with(
        opts: &SegmentOptions,
        name: Option<&str>,
        capacity: usize,
        max_message: usize,
    ) -> Result<PipeEnd, PipeError> {
        let PipeSegment(seg) = kind::create(opts, Target::Named(name), (capacity, max_message))?;
        Self::end(seg, 0, None)
    }

    /// Open the second end of a named pipe.
    pub fn open(name: &str) -> Result<PipeEnd, PipeError> {
        Self::open_with(&SegmentOptions::default(), name)
    }

    /// As [`open`](Self::open), with explicit segment options (open timeout,
    /// [waiting for the name](SegmentOptions::wait_for)).
    pub fn open_with(opts: &SegmentOptions, name: &str) -> Result<PipeEnd, PipeError> {
        let PipeSegment(seg) = kind::open(opts, name)?;
        Self::end(seg, 1, None)
    }

    /// Take the first end of a new named pipe, or the second end of the existing one: two
    /// processes calling this at once get one end each, whichever starts first. What exists
    /// must have this capacity and message size, else a typed mismatch error.
    pub fn open_or_create(name: &str, capacity: usize, max_message: usize) -> Result<PipeEnd, PipeError> {
        Self::open_or_create_with(&SegmentOptions::default(), name, capacity, max_message)
    }

    /// As [`open_or_create`](Self::open_or_create), with explicit segment options.
    pub fn open_or_create_with(
        opts: &SegmentOptions,
        name: &str,
        capacity: usize,
        max_message: usize,
    ) -> Result<PipeEnd, PipeError> {
        let PipeSegment(seg) = kind::open_or_create(opts, name, (capacity, max_message))?;
        let me = if seg.created() { 0 } else { 1 };
        Self::end(seg, me, Some(max_message))
    }

    /// End `me` of a named pipe's segment, or `EndTaken`; with `max`, refuse (before taking
    /// the end) a pipe for messages of another size.
    fn end(seg: Segment, me: u32, max: Option<usize>) -> Result<PipeEnd, PipeError> {
        let label = seg.name().unwrap_or("").to_owned();
        PipeEnd::attach(Arc::new(seg), me, max)?.ok_or(PipeError::EndTaken { name: label })
    }
}

impl PipeEnd {
    /// Take end `me` of a published pipe segment (for messages of `max` bytes, when given):
    /// its token, then mark it opened.
    fn attach(seg: Arc<Segment>, me: u32, max: Option<usize>) -> Result<Option<PipeEnd>, PipeError> {
        let (count, stride) = seg.header().map_or((0, 0), |h| (h.elem_count, h.elem.size));
        let cap = count / 2;
        let corrupt =
            |reason: &str| SegmentError::Corrupt { name: seg.name().unwrap_or("").into(), reason: reason.into() };
        if count % 2 != 0 {
            return Err(corrupt("a pipe has an even number of slots").into());
        }
        let [s0, s1] = shapes(cap, stride, u64::MAX).ok_or_else(|| corrupt("its rings overflow the payload"))?;
        let r0 = attach_ring(&seg, PIPE_HEADER, &[], s0)?;
        let r1 = attach_ring(&seg, PIPE_HEADER, &[r0.shape], s1)?;
        if r0.shape.max_msg != r1.shape.max_msg {
            return Err(corrupt("the two directions disagree on the message size").into());
        }
        if let Some(max) = max {
            check_max_message(&seg, r0.shape.max_msg as usize, max)?;
        }
        let Some(token) = Token::acquire(seg.fd(), me)? else { return Ok(None) };
        let end = PipeEnd {
            me,
            tx: if me == 0 { r0 } else { r1 },
            rx: if me == 0 { r1 } else { r0 },
            token: Some(token),
            policy: None,
            seg,
        };
        if end.header().opened[me as usize].compare_exchange(0, 1, SeqCst, SeqCst).is_err() {
            return Ok(None); // connected before and hung up since: pipes connect once
        }
        Ok(Some(end))
    }

    fn header(&self) -> &PipeHeader {
        // SAFETY: the control block starts with the 64-byte pipe header (validated segment:
        // `attach_ring` checked the rings after it fit); its words are atomics.
        unsafe { &*self.seg.control_ptr().cast::<PipeHeader>() }
    }

    fn peer(&self) -> u32 {
        1 - self.me
    }

    /// Whether the other end is connected now: it has been opened, and some copy of it is
    /// still held by a live process. `false` before the peer first connects.
    pub fn peer_connected(&self) -> bool {
        self.header().opened[self.peer() as usize].load(Acquire) == 1
            && is_held(self.seg.fd(), self.peer()).unwrap_or(true)
    }

    fn peer_gone(&self) -> bool {
        self.header().opened[self.peer() as usize].load(Acquire) == 1
            && !is_held(self.seg.fd(), self.peer()).unwrap_or(true)
    }

    wait_variants! {
        /// Send a copy of `msg`, waiting while the peer's inbox is full.
        pub fn send<'m>(&self, msg: &'m [u8]) -> Result<(), PutError<&'m [u8]>>;
        /// Send if there is room now.
        pub fn try_send;
        /// Send, waiting at most `timeout` for room.
        pub fn send_timeout;
        => send_wait
    }

    fn send_wait<'m>(&self, msg: &'m [u8], wait: Wait) -> Result<(), PutError<&'m [u8]>> {
        match put_bytes(&self.tx, (self.wait_policy(), Cadence::HandOff), wait, || self.peer_gone(), msg) {
            Ok(()) => Ok(()),
            Err(PutStop::Full) if self.peer_gone() => Err(PutError::Disconnected(msg)),
            Err(PutStop::Closed) => Err(PutError::Disconnected(msg)),
            Err(e) => Err(e.into_error(msg)),
        }
    }

    wait_variants! {
        /// Receive the next message, waiting for one; [`GetError::Disconnected`] once the peer
        /// hung up and everything it sent has been received.
        pub fn recv(&self) -> Result<Vec<u8>, GetError>;
        /// Receive a message if one is there now.
        pub fn try_recv;
        /// Receive, waiting at most `timeout`.
        pub fn recv_timeout;
        => recv_vec_wait
    }

    fn recv_vec_wait(&self, wait: Wait) -> Result<Vec<u8>, GetError> {
        self.recv_wait(wait, <[u8]>::to_vec)
    }

    /// Receive into `buf` (cleared, allocation reused); returns the length.
    pub fn recv_into(&self, buf: &mut Vec<u8>) -> Result<usize, GetError> {
        self.recv_wait(Wait::forever(), |m| copy_into(buf, m))
    }

    /// Borrowed receive: run `f` on the next message in its slot, without copying.
    pub fn recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
        self.recv_wait(Wait::forever(), f)
    }

    fn recv_wait<R>(&self, wait: Wait, f: impl FnOnce(&[u8]) -> R) -> Result<R, GetError> {
        let mut f = Some(f);
        let mut once = |m: &[u8]| f.take().map(|f| f(m));
        // Pipes carry requests and replies: the hand-off cadence answers soonest.
        let how = (self.wait_policy(), Cadence::HandOff);
        let got = match get_bytes(&self.rx, how, wait, || self.peer_gone(), GetError::Disconnected, &mut once) {
            Err(GetError::Empty) if self.peer_gone() => {
                // One last look: the peer may have sent just before it went.
                match get_bytes(&self.rx, how, Wait::No, || true, GetError::Disconnected, &mut once) {
                    Err(GetError::Empty) => Err(GetError::Disconnected),
                    other => other,
                }
            }
            other => other,
        };
        got?.and_then(|r| r.ok_or(GetError::Corrupt("internal: a message was read twice")))
    }

    /// The largest message, in bytes.
    pub fn max_message(&self) -> usize {
        self.tx.shape.max_msg as usize
    }

    /// The pipe's name, `None` when anonymous.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// The underlying segment (shared by both ends in this process).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Keep the name after the creating end drops. Anonymous pipes, whose two ends share
    /// one handle, have no name to keep.
    pub fn persist(&mut self) {
        if let Some(seg) = Arc::get_mut(&mut self.seg) {
            seg.persist();
        }
    }

    /// Which end this is: 0 (the creator's) or 1.
    pub fn end(&self) -> u32 {
        self.me
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        // Close our description first: the token goes with it unless a forked copy of this
        // end still holds it. Then wake the peer's parked calls so they look at once
        // (while a copy lives they go back to sleep).
        drop(self.token.take());
        for ring in [self.tx.ring(), self.rx.ring()] {
            wake_all(&ring.hdr.producers.0);
            wake_all(&ring.hdr.consumers.0);
        }
    }
}

policy_knob! { impl[] PipeEnd }
