"""shmkit arrays from Python: open a Rust-made ``SharedArray`` as a numpy view, or create
one that Rust opens with ``SharedArray::<T>::open(name)``.

Pure Python plus numpy. The header is checked exactly as Rust checks it (magic, format
version, published state, kind, element type size/alignment/name, payload bounds against
the file size), and a mismatch raises a ``ShmkitError`` subclass instead of giving a
wrongly typed view.

    import shmkit
    a = shmkit.open_array("/heat-grid", "f64")   # numpy view, no copy
    a.array[100:200] = 1.0
    a.close()

The numpy view is unsynchronised, exactly like numpy over ``SharedMemory``: coordinate
with the Rust side by ranges (each side writes its own), or with a shmkit lock. Liveness
follows the Rust protocol: while open, the segment's descriptor holds a shared ``flock``
so ``shmkit gc`` never removes it.
"""

import fcntl
import mmap
import os
import struct
import time

import numpy as np

MAGIC = b"SHMKIT\x00\x1a"
FORMAT_VERSION = 2
READY = 0x52454459
HEADER_SIZE = 128
KIND_ARRAY = 3
KINDS = {1: "bytes", 2: "value", 3: "array", 4: "atomic", 5: "queue", 6: "dict", 7: "list", 8: "object"}
# magic, version, state, kind, elem_align, elem_size, payload_offset, payload_len,
# elem_count, creator_pid, flags, created_unix_ns, elem_name
HEADER = struct.Struct("=8sIIIIQQQQIIQ56s")
assert HEADER.size == HEADER_SIZE

# shmkit element names and their numpy dtypes (native byte order, as Rust writes them).
DTYPES = {
    "u8": np.uint8, "i8": np.int8, "u16": np.uint16, "i16": np.int16,
    "u32": np.uint32, "i32": np.int32, "u64": np.uint64, "i64": np.int64,
    "usize": np.uint64, "isize": np.int64, "f32": np.float32, "f64": np.float64,
}
NAMES = {np.dtype(v): k for k, v in reversed(list(DTYPES.items()))}
# Claim table (the Rust side initialises its locks lazily from zero bytes): capacity and
# element count at control-block offsets 16 and 24; payload on its own page.
CLAIM_SLOTS = 32
PAYLOAD_OFFSET = 4096


class ShmkitError(Exception):
    """A segment could not be used."""


class NotFound(ShmkitError):
    pass


class NotShmkit(ShmkitError):
    pass


class Truncated(ShmkitError):
    pass


class UnsupportedVersion(ShmkitError):
    pass


class KindMismatch(ShmkitError):
    pass


class TypeMismatch(ShmkitError):
    pass


class Corrupt(ShmkitError):
    pass


class InitTimeout(ShmkitError):
    pass


def _path(name):
    bare = name.lstrip("/")
    if not bare or "/" in bare or bare.startswith(".") or len(bare) > 255:
        raise ShmkitError(f"invalid segment name {name!r}")
    return "/" + bare, "/dev/shm/" + bare


def _elem_name(dtype):
    dt = np.dtype(dtype)
    if dt.byteorder not in ("=", "|") and dt.byteorder != np.dtype(dt.type).byteorder:
        raise TypeMismatch(f"{dt} is not native byte order")
    try:
        return NAMES[np.dtype(dt.type)]
    except KeyError:
        raise TypeMismatch(f"numpy dtype {dt} has no shmkit element type") from None


def validate(raw, file_len, name="?"):
    """Check header bytes exactly as the Rust side does; return a dict of the fields."""
    if len(raw) < HEADER_SIZE:
        raise Corrupt(f"segment {name} is corrupt: shorter than the {HEADER_SIZE}-byte header")
    (magic, version, state, kind, align, size, off, plen, count, pid, _flags, created, ename) = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise NotShmkit(f"{name} is not a shmkit segment (no shmkit header)")
    if state == 0:
        raise InitTimeout(f"segment {name} is not published yet")
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"segment {name} uses format version {version}; this module reads version {FORMAT_VERSION}")
    if state != READY:
        raise Corrupt(f"segment {name} is corrupt: state word {state:#x}")
    if kind not in KINDS:
        raise KindMismatch(f"segment {name} holds an object of unknown kind {kind}")
    if size == 0 or align == 0 or align & (align - 1) or align > 4096 or size % align:
        raise Corrupt(f"segment {name} is corrupt: element size {size} / alignment {align}")
    if off < HEADER_SIZE or off % align:
        raise Corrupt(f"segment {name} is corrupt: payload offset {off} is misplaced")
    if size * count != plen:
        raise Corrupt(f"segment {name} is corrupt: payload length {plen} is not {count} x {size}")
    if off + plen > file_len:
        raise Truncated(f"segment {name} is truncated: {file_len} bytes, {off + plen} expected")
    end = ename.find(b"\x00")
    end = len(ename) if end < 0 else end
    if any(ename[end:]):
        raise Corrupt(f"segment {name} is corrupt: element type name")
    return {"kind": KINDS[kind], "elem": ename[:end].decode("utf-8", "strict"), "size": size, "align": align,
            "payload_offset": off, "payload_len": plen, "count": count, "creator_pid": pid,
            "created_unix_ns": created}


class SharedArray:
    """A shmkit ``SharedArray`` mapped into this process; ``.array`` is the numpy view."""

    def __init__(self, name, fd, mm, info, owner):
        self.name, self._fd, self._mm, self.info, self._owner = name, fd, mm, info, owner
        dtype = DTYPES[info["elem"]]
        self.array = np.ndarray((info["count"],), dtype=dtype, buffer=mm, offset=info["payload_offset"])

    def persist(self):
        """Keep the name after ``close`` (by default the creator unlinks it)."""
        self._owner = False

    def close(self):
        """Drop the view and the mapping; the creator also unlinks the name."""
        self.array = None
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd is not None:
            os.close(self._fd)  # releases the shared flock
            self._fd = None
        if self._owner:
            self._owner = False
            try:
                os.unlink(_path(self.name)[1])
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_array(name, dtype, timeout=5.0):
    """Open a ``SharedArray`` by name as a numpy view of ``dtype`` (``"f64"`` or a numpy dtype).

    Raises ``TypeMismatch``/``KindMismatch``/... exactly where Rust's ``open`` would.
    """
    name, path = _path(name)
    want = dtype if dtype in DTYPES else _elem_name(dtype)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"segment {name} does not exist") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        deadline = time.monotonic() + timeout
        while True:
            size = os.fstat(fd).st_size
            if 0 < size < HEADER_SIZE:
                raise NotShmkit(f"{name} is not a shmkit segment (no shmkit header)")
            if size >= HEADER_SIZE:
                head = os.pread(fd, HEADER_SIZE, 0)
                if head[:8] not in (MAGIC, bytes(8)):
                    raise NotShmkit(f"{name} is not a shmkit segment (no shmkit header)")
                if struct.unpack_from("=I", head, 12)[0] != 0:
                    break
            if time.monotonic() > deadline:
                raise InitTimeout(f"segment {name} was still being initialised after {timeout}s")
            time.sleep(0.001)
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        info = validate(bytes(mm[:HEADER_SIZE]), size, name)
        if info["kind"] != "array":
            mm.close()
            raise KindMismatch(f"segment {name} holds a {info['kind']}, not a array")
        if info["elem"] != want or info["size"] != np.dtype(DTYPES[want]).itemsize:
            mm.close()
            raise TypeMismatch(f"segment {name} holds {info['elem']}, not {want}")
        return SharedArray(name, fd, mm, info, owner=False)
    except BaseException:
        os.close(fd)
        raise


def create_array(name, dtype, length):
    """Create a zero-filled ``SharedArray`` of ``length`` elements that Rust can open.

    The creator unlinks it on ``close()`` unless ``persist()`` was called.
    """
    name, path = _path(name)
    elem = dtype if dtype in DTYPES else _elem_name(dtype)
    dt = np.dtype(DTYPES[elem])
    if length <= 0:
        raise ShmkitError("a segment cannot be empty")
    total = PAYLOAD_OFFSET + dt.itemsize * length
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.ftruncate(fd, total)
        os.posix_fallocate(fd, 0, total)
        mm = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, KIND_ARRAY, dt.alignment, dt.itemsize, PAYLOAD_OFFSET,
                             dt.itemsize * length, length, os.getpid(), 0, time.time_ns(),
                             elem.encode().ljust(56, b"\x00"))
        mm[:HEADER_SIZE] = header
        # Claim table: zero locks (initialised lazily by the first Rust claimant), capacity, length.
        struct.pack_into("=QQ", mm, HEADER_SIZE + 16, CLAIM_SLOTS, length)
        struct.pack_into("=I", mm, 12, READY)  # publish last
        info = validate(bytes(mm[:HEADER_SIZE]), total, name)
        return SharedArray(name, fd, mm, info, owner=True)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
