"""Image data uploads received straight into the image store.

waitress reads a request's whole body before the app sees it, and keeps a
body larger than 512 KiB in an anonymous temporary file. The image API then
copied that file into the store, so every uploaded byte was written twice;
a 215 MiB snapshot upload spent about 0.4 s on the second write here
(``tools/bench/snapshot.py``). For ``PUT /image/v2/images/{id}/file`` the
parser below puts the body in a named file under the store instead
(``<[image] store_path>/.incoming/<host>/<pid>-<start>-<random>``,
owner-only, on the store's file system), hashes it (sha256 and md5, one
thread each) while it arrives and starts its disk writes as it goes
(``sync_file_range``).
``flotilla.image_store.store_image`` checks that file and renames it into
place with those digests, so the data is written once and never read again.
Measured here on that upload (``tools/bench/snapshot.py``, idle machine):
the upload phase went from 1.24 s to 0.48 s, the body arriving in 0.43 s
(md5 sets the pace) and the store taking 0.01 s (its fsync was 0.11 s).

The rules:

* only the body's location changes: limits, parsing and the app's checks
  are the same, and the app may still read the body as a stream;
* the file is removed when waitress closes the request, unless the app
  renamed it into the store first;
* a file whose process died is removed at the API's next start
  (:func:`remove_orphans`, called where ``flotilla.image_store.recover_uploads``
  is).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import queue
import re
import socket
import threading
import uuid
import weakref

from waitress.buffers import FileBasedBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser

from flotilla import image_store

LOG = logging.getLogger(__name__)

WRITEBACK_BYTES = 16 * 1024 * 1024
IMAGE_DATA_PATH = re.compile(r"^/image/v2/images/[^/]+/file/?$")


def incoming_dir(store_path: str) -> str:
    """Where this host's API processes receive image data."""
    return os.path.join(store_path, ".incoming", socket.gethostname())


# The bodies being received, by path: the app finds its body's digests here.
# Weak: a buffer nobody holds any more is collected (and cleaned up) anyway.
_RECEIVING: weakref.WeakValueDictionary[str, _SpoolBuffer] = weakref.WeakValueDictionary()
_RECEIVING_LOCK = threading.Lock()


def received(stream) -> image_store.ReceivedFile | None:
    """What this module received as ``stream`` (a complete request's
    ``wsgi.input``): its path, size and digests, written through to the file;
    None for a body it did not receive."""
    name = getattr(stream, "name", None)
    with _RECEIVING_LOCK:
        buffer = _RECEIVING.get(name) if isinstance(name, str) else None
    if buffer is None:
        return None
    stream.flush()      # waitress wrote it through a buffered file
    return buffer.finish()


class _Hasher(threading.Thread):
    """One digest of the chunks it is given, in order, on its own thread
    (hashlib releases the GIL: the two digests and waitress's I/O thread
    run at once). A short queue bounds the memory when hashing lags; the
    I/O thread then waits at most for one chunk's digest."""

    def __init__(self, digest) -> None:
        super().__init__(name="image-hash", daemon=True)
        self.digest = digest
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.start()

    def run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            self.digest.update(chunk)

    def finish(self) -> str:
        self.queue.put(None)
        self.join()
        return self.digest.hexdigest()


_LIBC = ctypes.CDLL(None, use_errno=True)
_SYNC_FILE_RANGE = getattr(_LIBC, "sync_file_range", None)
if _SYNC_FILE_RANGE is not None:
    _SYNC_FILE_RANGE.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                 ctypes.c_uint)
_SYNC_FILE_RANGE_WRITE = 2       # <fcntl.h>; Python's os module lacks the call


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing the
    range to disk, without waiting (nothing where libc lacks it)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _create_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_EXCL, 0o600)


def _discard(path: str, hashers: list[_Hasher]) -> None:
    """A body's end without the app: its hashers stop, its file goes."""
    for hasher in hashers:
        hasher.finish()
    hashers.clear()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class _SpoolBuffer(FileBasedBuffer):
    """waitress's file buffer on a named file, removed at close unless the
    app moved it away (and when collected without a close: a connection
    dropped mid-body)."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        me = image_store.upload_owner()
        self.path = os.path.join(directory, "%d-%s-%s" % (me["pid"], me["started"],
                                                          uuid.uuid4().hex))
        # Opened by name, so that the file object's name is the path.
        super().__init__(open(self.path, "w+b", opener=_create_private))
        self.size = 0
        self._written_back = 0
        # Started at the first byte, so a body that never comes costs no thread.
        self.hashers: list[_Hasher] = []
        self.result: image_store.ReceivedFile | None = None
        self._cleanup = weakref.finalize(self, _discard, self.path, self.hashers)
        with _RECEIVING_LOCK:
            _RECEIVING[self.path] = self

    def append(self, s: bytes) -> None:
        super().append(s)
        self.size += len(s)
        if self.size - self._written_back >= WRITEBACK_BYTES:
            # Start the disk writes now (without waiting), so the store's
            # fsync at the end finds little left to write.
            self.file.flush()
            _start_writeback(self.file.fileno(), self._written_back,
                             self.size - self._written_back)
            self._written_back = self.size
        if not self.hashers:
            self._start_hashers()
        for hasher in self.hashers:
            hasher.queue.put(s)

    def _start_hashers(self) -> None:
        self.hashers.extend((_Hasher(hashlib.sha256()),
                             # Glance's checksum, not security
                             _Hasher(hashlib.md5(usedforsecurity=False))))

    def finish(self) -> image_store.ReceivedFile:
        """The digests of everything appended (the body is complete)."""
        if self.result is None:
            if not self.hashers:       # an empty body
                self._start_hashers()
            sha256, md5 = (hasher.finish() for hasher in self.hashers)
            self.hashers.clear()
            self.result = image_store.ReceivedFile(path=self.path, size=self.size,
                                                   sha256=sha256, md5=md5)
        return self.result

    def newfile(self):  # waitress prunes only output buffers
        raise NotImplementedError

    def close(self) -> None:
        with _RECEIVING_LOCK:
            _RECEIVING.pop(self.path, None)
        super().close()
        self._cleanup()


class _Channel(HTTPChannel):
    """waitress drops a request whose body was still arriving when its
    connection closed; its body's file and threads go with it here."""

    store_path: str | None = None

    def handle_close(self) -> None:
        with self.requests_lock:
            partial, self.request = self.request, None
        if partial is not None:
            partial.close()
        super().handle_close()


class _Parser(HTTPRequestParser):
    def __init__(self, adj, store_path: str | None = None) -> None:
        super().__init__(adj)
        self.store_path = store_path

    def parse_header(self, header_plus) -> None:
        super().parse_header(header_plus)
        receiver = self.body_rcv
        if (receiver is None or self.store_path is None or self.command != "PUT"
                or not IMAGE_DATA_PATH.match(self.path)):
            return
        try:
            receiver.buf = _SpoolBuffer(incoming_dir(self.store_path))
        except OSError as exc:
            # waitress's own temporary file still works; the app copies.
            LOG.warning("image upload received in a temporary file: %s", exc)


def channel_class(store_path: str | None) -> type[HTTPChannel]:
    """waitress's channel, receiving image data under ``store_path``."""
    return type("ImageSpoolingChannel", (_Channel,),
                {"parser_class": functools.partial(_Parser, store_path=store_path)})


def remove_orphans(store_path: str) -> list[str]:
    """Remove this host's incoming files whose receiving process is gone
    (its pid no longer runs, or runs a later process); the names removed."""
    directory = incoming_dir(store_path)
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            pid, _, rest = name.partition("-")
            started = rest.rpartition("-")[0]
            owner = {"host": socket.gethostname(), "pid": int(pid) if pid.isdigit() else None,
                     "started": started or None}
            if image_store.owner_alive(owner):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed
