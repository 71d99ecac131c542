"""A real filesystem that refuses O_DIRECT: a minimal in-memory FUSE server (needs root).

tmpfs accepts O_DIRECT since Linux 6.6, and the filesystems that still refuse it (ramfs,
hugetlbfs) report no free space at all, so a test of dcctl's buffered fallback needs one of its
own. This is one: the kernel's FUSE protocol (include/uapi/linux/fuse.h, 7.31) spoken over
/dev/fuse, a few hundred KiB of files in memory, and EINVAL for every open with O_DIRECT, as
FUSE filesystems without direct I/O support answer. Run as `python refusing_fuse.py MOUNTPOINT
CAPACITY_MIB`; `mounted()` does that for a test.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY = struct.Struct("<QQQQII")
ATTR_OUT = struct.Struct("<QII")
OPEN_OUT = struct.Struct("<QIi")
INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")
READ_IN = struct.Struct("<QQII")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
STATFS_OUT = struct.Struct("<QQQQQIIII24x")
DIRENT = struct.Struct("<QQII")
BLOCK = 4096
MAX_WRITE = 128 * 1024
FATTR_MODE, FATTR_SIZE = 1, 8
BIG_WRITES = 1 << 5
NO_REPLY = {2, 36, 42}  # FORGET, INTERRUPT, BATCH_FORGET


class Node:
    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.data = bytearray()
        self.children: dict[str, int] = {}


class Server:
    def __init__(self, device: int, capacity: int) -> None:
        self.device = device
        self.capacity = capacity
        self.nodes = {1: Node(stat.S_IFDIR | 0o755)}
        self.next_id = 2
        self.handlers = {
            1: self.lookup, 3: self.getattr, 4: self.setattr, 8: self.mknod, 9: self.mkdir,
            10: self.unlink, 11: self.rmdir, 14: self.open, 15: self.read, 16: self.write,
            17: self.statfs, 26: self.init, 27: self.opendir, 28: self.readdir, 35: self.create,
            18: self.empty, 20: self.empty, 25: self.empty, 29: self.empty, 30: self.empty,
            34: self.empty,
        }  # fmt: skip

    # --- replies -------------------------------------------------------------------------

    def send(self, unique: int, payload: bytes = b"", error: int = 0) -> None:
        header = OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique)
        os.write(self.device, header + payload)

    def attr(self, nodeid: int) -> bytes:
        node = self.nodes[nodeid]
        size = len(node.data)
        return ATTR.pack(nodeid, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0, node.mode,
                         2 if stat.S_ISDIR(node.mode) else 1, 0, 0, 0, BLOCK, 0)  # fmt: skip

    def entry(self, nodeid: int) -> bytes:
        return ENTRY.pack(nodeid, 0, 0, 0, 0, 0) + self.attr(nodeid)

    # --- operations: each returns (payload, errno) ---------------------------------------

    def init(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        return INIT_OUT.pack(7, 31, MAX_WRITE, BIG_WRITES, 16, 12, MAX_WRITE, 1, 32, 0, 0, 0), 0

    def lookup(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        child = self.nodes[nodeid].children.get(body.rstrip(b"\0").decode())
        return (b"", errno.ENOENT) if child is None else (self.entry(child), 0)

    def getattr(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        return ATTR_OUT.pack(0, 0, 0) + self.attr(nodeid), 0

    def setattr(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        fields = SETATTR_IN.unpack_from(body)
        valid, size, mode, node = fields[0], fields[3], fields[11], self.nodes[nodeid]
        if valid & FATTR_SIZE:
            if size > len(node.data) and self.used() + size - len(node.data) > self.capacity:
                return b"", errno.ENOSPC
            del node.data[size:]
            node.data.extend(bytes(size - len(node.data)))
        if valid & FATTR_MODE:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(mode)
        return self.getattr(nodeid, b"")

    def add(self, parent: int, name: bytes, mode: int) -> int:
        nodeid, self.next_id = self.next_id, self.next_id + 1
        self.nodes[nodeid] = Node(mode)
        self.nodes[parent].children[name.rstrip(b"\0").decode()] = nodeid
        return nodeid

    def mknod(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        mode = struct.unpack_from("<I", body)[0]
        return self.entry(self.add(nodeid, body[16:], mode)), 0

    def mkdir(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        mode = struct.unpack_from("<I", body)[0]
        return self.entry(self.add(nodeid, body[8:], stat.S_IFDIR | (mode & 0o7777))), 0

    def remove(self, nodeid: int, body: bytes, directory: bool) -> tuple[bytes, int]:
        children = self.nodes[nodeid].children
        name = body.rstrip(b"\0").decode()
        child = children.get(name)
        if child is None:
            return b"", errno.ENOENT
        if directory and self.nodes[child].children:
            return b"", errno.ENOTEMPTY
        del children[name]
        del self.nodes[child]
        return b"", 0

    def unlink(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        return self.remove(nodeid, body, directory=False)

    def rmdir(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        return self.remove(nodeid, body, directory=True)

    def open(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        flags = struct.unpack_from("<I", body)[0]
        if flags & os.O_DIRECT:
            return b"", errno.EINVAL
        if flags & os.O_TRUNC:
            self.nodes[nodeid].data.clear()
        return OPEN_OUT.pack(0, 0, 0), 0

    def create(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        flags, mode = struct.unpack_from("<II", body)
        if flags & os.O_DIRECT:
            return b"", errno.EINVAL
        child = self.add(nodeid, body[16:], mode)
        return self.entry(child) + OPEN_OUT.pack(0, 0, 0), 0

    def read(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        _fh, offset, size, _flags = READ_IN.unpack_from(body)
        return bytes(self.nodes[nodeid].data[offset : offset + size]), 0

    def write(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        _fh, offset, size, _flags = READ_IN.unpack_from(body)
        data, node = body[40 : 40 + size], self.nodes[nodeid]
        grow = max(0, offset + size - len(node.data))
        if grow and self.used() + grow > self.capacity:
            return b"", errno.ENOSPC
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset : offset + size] = data
        return struct.pack("<II", size, 0), 0

    def used(self) -> int:
        return sum(len(node.data) for node in self.nodes.values())

    def statfs(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        total, free = self.capacity // BLOCK, (self.capacity - self.used()) // BLOCK
        return STATFS_OUT.pack(total, free, free, 1000, 1000, BLOCK, 255, BLOCK, 0), 0

    def opendir(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        return OPEN_OUT.pack(0, 0, 0), 0

    def readdir(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        _fh, offset, size, _flags = READ_IN.unpack_from(body)
        entries = [(".", nodeid), ("..", 1), *self.nodes[nodeid].children.items()]
        out = b""
        for index in range(offset, len(entries)):
            name, child = entries[index]
            raw = name.encode()
            record = DIRENT.pack(child, index + 1, len(raw), self.nodes[child].mode >> 12) + raw
            record += bytes(-len(record) % 8)
            if len(out) + len(record) > size:
                break
            out += record
        return out, 0

    def empty(self, nodeid: int, body: bytes) -> tuple[bytes, int]:
        return b"", 0

    def serve(self) -> None:
        while True:
            try:
                request = os.read(self.device, MAX_WRITE + 64 * 1024)
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    return  # unmounted
                if exc.errno in (errno.EINTR, errno.ENOENT):
                    continue  # ENOENT: the request was interrupted before it was read
                raise
            _length, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(request)
            if opcode in NO_REPLY:
                continue
            handler = self.handlers.get(opcode)
            if handler is None:
                self.send(unique, error=errno.ENOSYS)
                continue
            payload, error = handler(nodeid, request[IN_HEADER.size :])
            with contextlib.suppress(FileNotFoundError):  # the caller gave up on it
                self.send(unique, b"" if error else payload, error)


def _mount(device: int, mountpoint: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={device},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"dcctl-refusing-fuse", mountpoint.encode(), b"fuse", 0, options) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount: {os.strerror(code)}")


def main(argv: list[str]) -> int:
    device = os.open("/dev/fuse", os.O_RDWR)
    _mount(device, argv[0])
    Server(device, int(argv[1]) * 1024**2).serve()
    return 0


def _is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


@contextlib.contextmanager
def mounted(path: Path, capacity_mib: int) -> Iterator[Path]:
    """The filesystem mounted at `path`; the test is skipped, with the reason, where FUSE
    cannot be mounted (no /dev/fuse, not root)."""
    import pytest  # only here: the server process itself needs none of it

    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        pytest.skip("a FUSE mount needs /dev/fuse and root")
    path.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, __file__, str(path), str(capacity_mib)], stderr=subprocess.PIPE
    )
    give_up = time.monotonic() + 10
    while not _is_mounted(path) and server.poll() is None and time.monotonic() < give_up:
        time.sleep(0.02)
    if not _is_mounted(path):
        server.kill()
        _, error = server.communicate()
        pytest.skip(f"cannot mount a FUSE filesystem here: {error.decode().strip()[-300:]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
