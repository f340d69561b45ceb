"""Snapshots of a libvirt guest's root disk, never pausing it.

How (the facts are in DESIGN.md, "Volumes, snapshots and migration"):

* A guest whose QEMU runs (running or paused): a **shallow block copy** of
  its root overlay into a temporary qcow2 in the instance directory, made
  beforehand with the same cached base as its backing file (``REUSE_EXT``),
  as a transient job; once the copy is mirroring (``ready``), the job is
  ended *without* pivot, which leaves the temporary file a consistent copy
  of that moment while the guest goes on with its own disk. The guest is
  never paused and its definition never changes, so a crash at any point
  leaves a guest on its own disk plus at most a job and a file to remove
  (:meth:`LibvirtSnapshotter.recover`).
* A guest whose QEMU does not run (shut off, or suspended with a managed
  save): its overlay is read directly.
* Either way ``qemu-img convert -O qcow2`` flattens the copy with its base
  into a standalone image, written beside the target and renamed into
  place, so no partial target ever exists.
* Nothing ever writes into the cached base: the copy writes only its
  temporary file, the convert only the target. No block commit is used (a
  commit without ``--shallow`` writes the guest's data into the base, the
  pitfall DESIGN.md records). Before flattening, the base's sha256 must
  still be its image's: a base that changed would silently corrupt every
  snapshot made from it.
* The block copy's target XML is the template ``snapshot-copy.xml``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable

import libvirt
from lxml import etree

from compute.virt.driver import SnapshotFile
from compute.virt.libvirt import xml
from compute.virt.libvirt.guest import Guest
from compute.virt.libvirt.host import Host
from flotilla import concurrency, exception
from flotilla.objects import ImageMeta, Instance

LOG = logging.getLogger(__name__)

ROOT_DEVICE = "vda"
TEMP_PREFIX = "snapshot-"
COPY_TEMPLATE = "snapshot-copy.xml"
_COPY_FLAGS = (libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW
               | libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
               | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
_POLL = 0.02          # seconds between looks at a running copy
_MIB = 1024 * 1024


class CopyFailed(Exception):
    """The live copy did not reach a consistent state, or a qemu-img
    command failed."""


def render_copy_target(renderer: xml.DomainRenderer, path: str, disk_format: str,
                       device: str = ROOT_DEVICE) -> str:
    """The ``<disk>`` XML of a block copy's target file, from the template."""
    element = renderer.template(COPY_TEMPLATE)
    xml.one(element, "source").set("file", path)
    xml.one(element, "driver").set("type", disk_format)
    xml.one(element, "target").set("dev", device)
    return etree.tostring(element, encoding="unicode")


class BaseChecker:
    """sha256 of cached base images, each hashed once per change of the
    file (inode, size, mtime), so a base is checked at every snapshot
    without re-reading gigabytes each time."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple, str]] = {}
        self._lock = threading.Lock()

    def sha256(self, path: str) -> str:
        stat = os.stat(path)
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == key:
            return known[1]
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(4 * _MIB):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._known[path] = (key, value)
        return value


class LibvirtSnapshotter:
    """Snapshots of the guests of one libvirt driver."""

    def __init__(self, host: Host, renderer: xml.DomainRenderer,
                 instance_dir: Callable[[Instance], str], bandwidth_mib: int = 0) -> None:
        self.host = host
        self.renderer = renderer
        self.instance_dir = instance_dir
        self.bandwidth_mib = bandwidth_mib
        self.bases = BaseChecker()

    # --- snapshot -----------------------------------------------------------------

    def snapshot(self, guest: Guest, instance: Instance, target_path: str,
                 base_image: ImageMeta | None,
                 on_copied: Callable[[], None] | None) -> SnapshotFile:
        directory = os.path.dirname(os.path.abspath(target_path))
        if os.path.lexists(target_path) or not os.path.isdir(directory):
            raise exception.Invalid(reason="snapshot target %s exists or has no directory"
                                    % target_path)
        disk = os.path.join(self.instance_dir(instance), "disk")
        part = os.path.join(directory, ".%s.part-%s" % (os.path.basename(target_path),
                                                       uuid.uuid4().hex))
        copy = None
        try:
            info = _qemu_img_info(disk)
            backing = info.get("full-backing-filename") or info.get("backing-filename")
            if backing:
                self._check_base(instance, backing, base_image)
            if guest.is_active():    # running or paused: QEMU owns the disk
                copy = os.path.join(self.instance_dir(instance),
                                    "%s%s.qcow2" % (TEMP_PREFIX, uuid.uuid4().hex))
                self._live_copy(guest, instance, copy, backing,
                                info.get("backing-filename-format") or "qcow2",
                                int(info["virtual-size"]))
                source = copy
            else:
                source = disk
            if on_copied is not None:
                on_copied()
            _run(["qemu-img", "convert", "-q", "-O", "qcow2", source, part])
            os.link(part, target_path)   # fails if the target appeared meanwhile
            size = os.path.getsize(target_path)
        except exception.FlotillaException:
            raise
        except (OSError, CopyFailed, libvirt.libvirtError) as exc:
            reason = (exc.get_error_message() if isinstance(exc, libvirt.libvirtError)
                      else str(exc))
            raise exception.SnapshotFailed(instance_uuid=instance.uuid,
                                           reason=reason) from exc
        finally:
            for path in (part, copy):
                if path:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
        LOG.info("snapshot of %s written to %s (%d bytes)", instance.uuid, target_path, size)
        return SnapshotFile(path=target_path, disk_format="qcow2", size_bytes=size,
                            virtual_size_bytes=int(info["virtual-size"]))

    def _check_base(self, instance: Instance, backing: str,
                    base_image: ImageMeta | None) -> None:
        if base_image is None or not base_image.sha256:
            LOG.info("snapshot of %s: no checksum to check its base %s against",
                     instance.uuid, backing)
            return
        actual = concurrency.run_blocking(self.bases.sha256, backing)
        if actual != base_image.sha256.lower():
            LOG.error("cached base %s of image %s has sha256 %s, the image %s",
                      backing, base_image.id, actual, base_image.sha256)
            raise exception.SnapshotFailed(
                instance_uuid=instance.uuid,
                reason="the cached base of image %s changed (sha256 %s, expected %s)"
                       % (base_image.id, actual, base_image.sha256))

    def _live_copy(self, guest: Guest, instance: Instance, copy: str,
                   backing: str | None, backing_format: str, virtual_size: int) -> None:
        """Copy the running guest's overlay into ``copy`` (shallow: its
        base stays the backing file) and end the job without pivot."""
        cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if backing:
            cmd += ["-b", backing, "-F", backing_format]
        _run(cmd + [copy, str(virtual_size)])
        params = {}
        if self.bandwidth_mib:
            params[libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH] = self.bandwidth_mib * _MIB
        target = render_copy_target(self.renderer, copy, "qcow2")
        flags = _COPY_FLAGS if backing else (_COPY_FLAGS & ~libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW)
        started = time.monotonic()
        self.host.call(guest.domain.blockCopy, ROOT_DEVICE, target, params, flags)
        try:
            while not self._mirror_ready(guest):
                info = self.host.call(guest.domain.blockJobInfo, ROOT_DEVICE, 0)
                if not info:
                    raise CopyFailed("the block copy of %s ended before it was ready"
                                     % instance.uuid)
                concurrency.sleep(_POLL)
        except BaseException:
            self._abort(guest)
            raise
        # Ready: ending the job without pivot leaves the copy consistent as
        # of now, and the guest on its own disk.
        self.host.call(guest.domain.blockJobAbort, ROOT_DEVICE, 0)
        LOG.info("live copy of %s took %.2fs", instance.uuid, time.monotonic() - started)

    def _mirror_ready(self, guest: Guest) -> bool:
        for disk in guest.xml().findall("devices/disk"):
            target = disk.find("target")
            if target is not None and target.get("dev") == ROOT_DEVICE:
                mirror = disk.find("mirror")
                return mirror is not None and mirror.get("ready") == "yes"
        return False

    def _abort(self, guest: Guest) -> None:
        try:
            self.host.call(guest.domain.blockJobAbort, ROOT_DEVICE, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_OPERATION_INVALID,
                                            libvirt.VIR_ERR_NO_DOMAIN):
                LOG.warning("could not end the block job of %s: %s", guest.uuid, exc)

    # --- after a crash ------------------------------------------------------------

    def recover(self, guest: Guest | None, instance: Instance) -> list[str]:
        """End a copy job a snapshot left on the guest's root disk and
        remove the snapshot's temporary files; returns what was done."""
        done = []
        if guest is not None and guest.is_active():
            try:
                job = self.host.call(guest.domain.blockJobInfo, ROOT_DEVICE, 0)
            except libvirt.libvirtError as exc:
                LOG.warning("cannot read the block jobs of %s: %s", instance.uuid, exc)
                job = None
            if job and job.get("type") == libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY \
                    and self._mirrors_our_temp(guest, instance):
                self._abort(guest)
                done.append("ended its block copy job")
        for path in glob.glob(os.path.join(glob.escape(self.instance_dir(instance)),
                                           TEMP_PREFIX + "*")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            done.append("removed %s" % os.path.basename(path))
        return done

    def _mirrors_our_temp(self, guest: Guest, instance: Instance) -> bool:
        prefix = os.path.join(self.instance_dir(instance), TEMP_PREFIX)
        for mirror in guest.xml().findall("devices/disk/mirror"):
            source = mirror.find("source")
            path = (source.get("file") if source is not None else None) or mirror.get("file")
            if path and path.startswith(prefix):
                return True
        return False


def _qemu_img_info(path: str) -> dict:
    return json.loads(_run(["qemu-img", "info", "--output=json", "-U", path]))


def _run(cmd: list[str]) -> str:
    def run():
        return subprocess.run(cmd, check=True, capture_output=True, text=True)
    try:
        return concurrency.run_blocking(run).stdout
    except subprocess.CalledProcessError as exc:
        raise CopyFailed("%s failed: %s" % (" ".join(cmd[:2]),
                                            (exc.stderr or "").strip())) from exc
