"""shmkit arrays from Python: open a Rust-made ``SharedArray`` as a numpy view, or create
one that Rust opens with ``SharedArray::<T>::open(name)``.

Pure Python plus numpy. The header is checked exactly as Rust checks it (magic, format
version, published state, kind, element type size/alignment/name, payload bounds against
the file size), and a mismatch raises a ``ShmkitError`` subclass instead of giving a
wrongly typed view.

    import shmkit
    a = shmkit.open_array("/heat-grid", "f64")   # numpy view of the array's shape, no copy
    a.array[10:20, :] = 1.0                       # a 2-D grid made by SharedArray::create(name, [rows, cols])
    a.close()

    b = shmkit.create_array("/made-in-python", "f64", (64, 128))   # Rust: open(name)?.shape() == [64, 128]

Shapes: format 3 segments record an array's shape (C order, 1 to 7 dimensions) in the 64
bytes right before the payload; format 2 segments are one-dimensional.

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
FORMAT_VERSION = 3
OLDEST_FORMAT_VERSION = 2
MAX_DIMS = 7
SHAPE_RECORD = struct.Struct("=8Q")  # ndim, then the dimensions, zero padded
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


class ShapeMismatch(ShmkitError):
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
    if not OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION:
        raise UnsupportedVersion(f"segment {name} uses format version {version}; this module reads versions "
                                 f"{OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}")
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
            "created_unix_ns": created, "version": version}


def _check_shape(shape):
    """``shape`` (an int or a sequence of ints) as a tuple, checked as Rust's ``Shape::new``."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not 1 <= len(dims) <= MAX_DIMS:
        raise ShmkitError(f"array shape {dims} is invalid: 1 to {MAX_DIMS} dimensions")
    if any(not isinstance(d, (int, np.integer)) or d <= 0 for d in dims):
        raise ShmkitError(f"array shape {dims} is invalid: every dimension is a positive integer")
    return tuple(int(d) for d in dims)


def read_shape(mm, info, name="?"):
    """The shape an array segment records (format 3), checked as Rust checks it."""
    if info["version"] < 3:
        return (info["count"],)
    at = info["payload_offset"] - SHAPE_RECORD.size
    if at < HEADER_SIZE:
        raise Corrupt(f"segment {name} is corrupt: no room for the shape record")
    words = SHAPE_RECORD.unpack_from(mm, at)
    ndim, dims, rest = words[0], words[1:1 + words[0]], words[1 + words[0]:]
    product = 1
    for d in dims:
        product *= d
    if not 1 <= ndim <= MAX_DIMS or 0 in dims or any(rest) or product != info["count"]:
        raise Corrupt(f"segment {name} is corrupt: the shape record {words} does not hold {info['count']} elements")
    return tuple(dims)


class SharedArray:
    """A shmkit ``SharedArray`` mapped into this process; ``.array`` is the numpy view."""

    def __init__(self, name, fd, mm, info, owner):
        self.name, self._fd, self._mm, self.info, self._owner = name, fd, mm, info, owner
        dtype = DTYPES[info["elem"]]
        self.shape = info["shape"]
        self.array = np.ndarray(self.shape, dtype=dtype, buffer=mm, offset=info["payload_offset"])

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


def open_array(name, dtype, timeout=5.0, shape=None):
    """Open a ``SharedArray`` by name as a numpy view of ``dtype`` (``"f64"`` or a numpy dtype),
    shaped as the segment records. With ``shape``, a different recorded shape raises
    ``ShapeMismatch`` (Rust's ``expect_shape``).

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
        try:
            info = validate(bytes(mm[:HEADER_SIZE]), size, name)
            if info["kind"] != "array":
                raise KindMismatch(f"segment {name} holds a {info['kind']}, not a array")
            if info["elem"] != want or info["size"] != np.dtype(DTYPES[want]).itemsize:
                raise TypeMismatch(f"segment {name} holds {info['elem']}, not {want}")
            info["shape"] = read_shape(mm, info, name)
            if shape is not None and _check_shape(shape) != info["shape"]:
                raise ShapeMismatch(f"array {name} has shape {info['shape']}, not {_check_shape(shape)}")
        except BaseException:
            mm.close()
            raise
        return SharedArray(name, fd, mm, info, owner=False)
    except BaseException:
        os.close(fd)
        raise


def create_array(name, dtype, shape):
    """Create a zero-filled ``SharedArray`` of ``shape`` (an int: one dimension; a tuple: C order)
    that Rust opens with that shape.

    The creator unlinks it on ``close()`` unless ``persist()`` was called.
    """
    name, path = _path(name)
    elem = dtype if dtype in DTYPES else _elem_name(dtype)
    dt = np.dtype(DTYPES[elem])
    if isinstance(shape, (int, np.integer)) and shape <= 0:
        raise ShmkitError("a segment cannot be empty")
    dims = _check_shape(shape)
    length = 1
    for d in dims:
        length *= d
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
        SHAPE_RECORD.pack_into(mm, PAYLOAD_OFFSET - SHAPE_RECORD.size, len(dims), *dims, *([0] * (MAX_DIMS - len(dims))))
        struct.pack_into("=I", mm, 12, READY)  # publish last
        info = validate(bytes(mm[:HEADER_SIZE]), total, name)
        info["shape"] = read_shape(mm, info, name)
        return SharedArray(name, fd, mm, info, owner=True)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
