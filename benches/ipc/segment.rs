//! Segment creation and opening against the raw POSIX shared-memory floor.
//!
//! | figure                                  | what one operation is                                        |
//! |-----------------------------------------|--------------------------------------------------------------|
//! | `segment_create_unlink_1mib`            | `SegmentOptions::new().reserve(false).create(None, 1 MiB)`, drop (unmap, close, unlink) |
//! | `segment_create_unlink_1mib_reserved`   | the same with the default `reserve(true)` (`posix_fallocate`) |
//! | `floor_shm_open_unlink_1mib`            | `shm_open(O_CREAT|O_EXCL)`, `ftruncate`, `mmap(MAP_SHARED)`, `munmap`, `close`, `shm_unlink` |
//! | `floor_shm_open_touch_unlink_1mib`      | the same, plus one write to the first page (what writing any header costs: a page fault, a zeroed page) |
//! | `segment_open_1mib`                     | `Segment::open` of an existing 1 MiB segment, drop            |
//! | `floor_shm_open_map_1mib`               | `shm_open`, `fstat`, `mmap`, read the first word, `munmap`, `close` |

use std::ffi::CString;
use std::hint::black_box;

use shmkit::{Segment, SegmentOptions};

use crate::util::{Harness, time_iters};

const MIB: usize = 1 << 20;
const ROUNDS: usize = 31;
const ITERS: usize = 100;

/// Prefix of the floor's names (not `/shmkit-`, so a concurrent `gc()` leaves them alone).
fn floor_prefix() -> String {
    format!("/bench-shmkit-floor-{}-", std::process::id())
}

pub fn run(h: &mut Harness) {
    h.group("segment");
    create(h);
    open(h);
    cleanup();
}

fn create(h: &Harness) {
    let names = [
        "segment_create_unlink_1mib",
        "segment_create_unlink_1mib_reserved",
        "floor_shm_open_unlink_1mib",
        "floor_shm_open_touch_unlink_1mib",
    ];
    if !h.wants_any(&names) {
        return;
    }
    let sparse = SegmentOptions::new().reserve(false);
    let reserved = SegmentOptions::new();
    let mut ours = |iters: usize| {
        time_iters(iters, |_| drop(black_box(sparse.create(None, MIB).expect("create a 1 MiB segment"))))
    };
    let mut ours_reserved = |iters: usize| {
        time_iters(iters, |_| drop(black_box(reserved.create(None, MIB).expect("create a reserved segment"))))
    };
    let mut batch = 0usize;
    let mut floor = |iters: usize| {
        batch += 1;
        let names: Vec<CString> =
            (0..iters).map(|i| CString::new(format!("{}{batch}-{i}", floor_prefix())).expect("no NUL")).collect();
        time_iters(iters, |i| floor_create_unlink(&names[i], MIB, false))
    };
    let mut touch_batch = 0usize;
    let mut floor_touch = |iters: usize| {
        touch_batch += 1;
        let names: Vec<CString> = (0..iters)
            .map(|i| CString::new(format!("{}t{touch_batch}-{i}", floor_prefix())).expect("no NUL"))
            .collect();
        time_iters(iters, |i| floor_create_unlink(&names[i], MIB, true))
    };
    let r = h.interleaved(
        ROUNDS,
        ITERS,
        "us",
        &mut [
            (names[0], &mut ours),
            (names[1], &mut ours_reserved),
            (names[2], &mut floor),
            (names[3], &mut floor_touch),
        ],
    );
    h.ratio("segment_create_unlink_1mib_vs_floor", r[0], r[2]);
    h.ratio("segment_create_unlink_1mib_vs_touch_floor", r[0], r[3]);
    h.ratio("segment_create_unlink_1mib_reserved_vs_floor", r[1], r[2]);
}

fn open(h: &Harness) {
    let names = ["segment_open_1mib", "floor_shm_open_map_1mib"];
    if !h.wants_any(&names) {
        return;
    }
    let seg = Segment::create(None, MIB).expect("create the segment to open");
    let name = seg.name().expect("named").to_owned();
    let c_name = CString::new(name.as_str()).expect("no NUL");
    let mut ours = |iters: usize| time_iters(iters, |_| drop(black_box(Segment::open(&name).expect("open"))));
    let mut floor = |iters: usize| {
        time_iters(iters, |_| {
            black_box(floor_open_map(&c_name));
        })
    };
    let r = h.interleaved(ROUNDS, ITERS, "us", &mut [(names[0], &mut ours), (names[1], &mut floor)]);
    h.ratio("segment_open_1mib_vs_floor", r[0], r[1]);
    drop(seg);
}

fn check(ok: bool, what: &str) {
    assert!(ok, "{what}: {}", std::io::Error::last_os_error());
}

/// The least a creator can do: create exclusively, size, map shared (and, with `touch`,
/// write the first word, as writing a header must); then tear it all down.
fn floor_create_unlink(name: &CString, len: usize, touch: bool) {
    // SAFETY: plain libc calls on a NUL-terminated name, a descriptor we own and a
    // mapping we made; nothing else refers to them.
    unsafe {
        let fd = libc::shm_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, 0o600);
        check(fd >= 0, "shm_open");
        check(libc::ftruncate(fd, len as libc::off_t) == 0, "ftruncate");
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        check(p != libc::MAP_FAILED, "mmap");
        if touch {
            std::ptr::write_volatile(p.cast::<u64>(), 1);
        }
        check(libc::munmap(p, len) == 0, "munmap");
        check(libc::close(fd) == 0, "close");
        check(libc::shm_unlink(name.as_ptr()) == 0, "shm_unlink");
    }
}

/// The least an opener can do: open, size, map, look at the first word; tear down.
fn floor_open_map(name: &CString) -> u64 {
    // SAFETY: as above; the mapped file is at least `st_size` >= 8 bytes long and nobody
    // truncates it while we read its first word.
    unsafe {
        let fd = libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0);
        check(fd >= 0, "shm_open");
        let mut st: libc::stat = std::mem::zeroed();
        check(libc::fstat(fd, &mut st) == 0, "fstat");
        let len = st.st_size as usize;
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        check(p != libc::MAP_FAILED, "mmap");
        let word = std::ptr::read_volatile(p.cast::<u64>());
        check(libc::munmap(p, len) == 0, "munmap");
        check(libc::close(fd) == 0, "close");
        word
    }
}

/// Remove any floor object a failed run left behind.
fn cleanup() {
    let prefix = floor_prefix();
    let bare = prefix.trim_start_matches('/');
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(bare)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
