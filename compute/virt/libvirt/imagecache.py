"""Per-host cache of base images and the qcow2 overlays built on them.

Rules:

* A base lives in ``<instances_path>/_base/<sha256 of the image id>`` and is
  fetched once: concurrent spawns of one image wait on a per-image lock and
  share the download. It is written to a ``.part-*`` file, its sha256 checked
  while streaming, and only then renamed into place (atomic), so a base that
  exists is complete and verified; a mismatch or error leaves nothing.
* A base may not have a backing file of its own (a crafted qcow2 could
  otherwise make a guest read any file of the host).
* Each root disk is a qcow2 overlay on the base, sized from the flavor.
* Using a base refreshes its mtime; :meth:`ImageCache.cleanup` removes bases
  that no overlay under instances_path references and whose mtime is older
  than the maximum age.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import time
import urllib.parse
import urllib.request
import uuid

from flotilla import concurrency, diskimage, exception
from flotilla.objects import ImageMeta

LOG = logging.getLogger(__name__)

BASE_DIR = "_base"
_CHUNK = 1024 * 1024
_QCOW2_MAGIC = b"QFI\xfb"


class ImageError(Exception):
    """A base image cannot be fetched or a disk cannot be made from it
    (the driver reports it as InstanceDeployFailure)."""


class ImageCache:
    """The image cache of one instances_path (one per agent)."""

    def __init__(self, instances_path: str, max_age: int,
                 download_timeout: int = 300) -> None:
        self.instances_path = instances_path
        self.base_dir = os.path.join(instances_path, BASE_DIR)
        self.max_age = max_age
        self.download_timeout = download_timeout
        self.downloads = 0  # completed fetches, for tests and metrics
        self._locks: dict[str, object] = {}
        self._locks_guard = concurrency.Lock()

    # --- locking -------------------------------------------------------------

    def _lock(self, key: str):
        with self._locks_guard:
            return self._locks.setdefault(key, concurrency.Lock())

    def base_path(self, image_id: str) -> str:
        # Hash the id: it is user-visible text and must not shape a path.
        return os.path.join(self.base_dir,
                            hashlib.sha256(image_id.encode()).hexdigest())

    # --- disks ---------------------------------------------------------------

    def prepare_disk(self, image: ImageMeta, disk_path: str,
                     size_gb: int) -> str:
        """Fetch the base of ``image`` if needed and create the overlay
        ``disk_path`` on it; ``size_gb`` 0 keeps the image's size. Returns
        the base path. The lock is held throughout so a concurrent cleanup
        cannot remove the base between fetch and overlay creation."""
        base = self.base_path(image.id)
        with self._lock(base):
            self._fetch_locked(image, base)
            info = qemu_img_info(base)
            fmt = image.disk_format or info["format"]
            create_overlay(base, fmt, disk_path, size_gb,
                           int(info.get("virtual-size", 0)))
        return base

    def fetch(self, image: ImageMeta) -> str:
        """The verified base of ``image``, downloading it when absent."""
        base = self.base_path(image.id)
        with self._lock(base):
            self._fetch_locked(image, base)
        return base

    def _fetch_locked(self, image: ImageMeta, base: str) -> None:
        if os.path.exists(base):
            os.utime(base)  # in use: restart its age
            return
        os.makedirs(self.base_dir, exist_ok=True)
        part = "%s.part-%s" % (base, uuid.uuid4().hex)
        try:
            digest = concurrency.run_blocking(self._download, image.source,
                                              part)
            if image.sha256 and digest != image.sha256.lower():
                raise exception.ImageChecksumMismatch(
                    image_id=image.id, actual=digest, expected=image.sha256)
            try:  # no backing or data file, no json: names (shared check)
                diskimage.check_self_contained(part, image.disk_format or None)
            except exception.Invalid as exc:
                raise ImageError("image %s: %s" % (image.id, exc)) from None
            os.replace(part, base)
            self.downloads += 1
            LOG.info("cached image %s as %s", image.id, base)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)

    def _download(self, source: str, dest: str) -> str:
        """Stream ``source`` into ``dest``; returns the sha256 hex digest."""
        digest = hashlib.sha256()
        parsed = urllib.parse.urlparse(source)
        if parsed.scheme in ("http", "https"):
            opener = urllib.request.urlopen(source,
                                            timeout=self.download_timeout)
        elif parsed.scheme in ("", "file"):
            path = urllib.parse.unquote(parsed.path) if parsed.scheme else source
            opener = open(path, "rb")
        else:
            raise ImageError("unsupported image source scheme %r"
                             % parsed.scheme)
        with opener as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest()

    # --- cleanup -------------------------------------------------------------

    def bases_in_use(self) -> set[str]:
        """Real paths of the bases some qcow2 file under instances_path
        (outside _base) is an overlay of."""
        used = set()
        if not os.path.isdir(self.instances_path):
            return used
        for entry in os.scandir(self.instances_path):
            if entry.name == BASE_DIR or not entry.is_dir(follow_symlinks=False):
                continue
            for item in os.scandir(entry.path):
                if item.is_file(follow_symlinks=False):
                    backing = qcow2_backing_file(item.path)
                    if backing:
                        used.add(os.path.realpath(
                            os.path.join(entry.path, backing)))
        return used

    def cleanup(self, now: float | None = None) -> list[str]:
        """Remove unused bases (and abandoned partial downloads) older than
        max_age. Returns the removed paths."""
        if not os.path.isdir(self.base_dir):
            return []
        now = time.time() if now is None else now
        used = self.bases_in_use()
        removed = []
        for entry in os.scandir(self.base_dir):
            path = entry.path
            with self._lock(path.split(".part-")[0]):
                try:
                    age = now - os.stat(path).st_mtime
                except FileNotFoundError:
                    continue
                if age < self.max_age or os.path.realpath(path) in used:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                removed.append(path)
                LOG.info("removed unused cached image %s (age %ds)", path, age)
        return removed


def qemu_img_info(path: str) -> dict:
    """``qemu-img info --output=json`` of ``path`` (no backing chain)."""
    out = _run(["qemu-img", "info", "--output=json", "-U", path])
    return json.loads(out)


def create_overlay(base: str, base_format: str, disk_path: str, size_gb: int,
                   base_virtual_size: int = 0) -> None:
    """``qemu-img create -f qcow2 -b base -F fmt disk [size]``."""
    size = size_gb * 1024 ** 3
    if size and size < base_virtual_size:
        raise ImageError("flavor root disk (%d GiB) is smaller than the "
                         "image (%d bytes)" % (size_gb, base_virtual_size))
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", base,
           "-F", base_format, disk_path]
    if size:
        cmd.append(str(size))
    _run(cmd)


def qcow2_backing_file(path: str) -> str | None:
    """The backing file name in a qcow2 header, None for anything else.

    Read straight from the header (magic, version, backing file offset and
    size, big-endian) so a cleanup over many disks forks no processes.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(20)
            if len(header) < 20 or header[:4] != _QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if not offset or not size or size > 4096:
                return None
            f.seek(offset)
            return f.read(size).decode("utf-8", "replace")
    except OSError:
        return None


def _run(cmd: list[str]) -> str:
    def run():
        return subprocess.run(cmd, check=True, capture_output=True, text=True)
    try:
        return concurrency.run_blocking(run).stdout
    except subprocess.CalledProcessError as exc:
        raise ImageError("%s failed: %s" % (" ".join(cmd[:2]),
                                            (exc.stderr or "").strip())) from exc
