"""Is a disk image safe to hand to QEMU? One check for every service.

A qcow2 header can name other files: a backing file, an external data file
(CVE-2024-32498: the guest then reads and writes whatever host path the
image names) or ``json:`` pseudo-paths (any QEMU block driver, network ones
included). An image from a user must reach outside itself in none of these
ways, wherever it becomes a disk: at upload (the image store), in a compute
agent's image cache, and wherever an image becomes a volume.

:func:`check_self_contained` applies two independent checks:

1. the qcow2 header read in Python, before any tool opens the file (so a
   hostile name is never followed, not even by ``qemu-img``): the backing
   file offset, the external-data-file feature bit and the header
   extensions (the data file name);
2. ``qemu-img info --output=json -f <declared format>`` (under a CPU and
   memory limit, as Nova runs it), whose ``format``, ``backing-filename``
   and ``format-specific`` data (``data-file``) must agree.

Raw images are data only (QEMU is always told the format, never probes it),
but data with the qcow2 magic declared raw is refused: the declared format
must be the true one.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess

from flotilla import exception

QCOW2_MAGIC = b"QFI\xfb"
_INCOMPAT_DATA_FILE = 1 << 2
_EXT_DATA_FILE = 0x44415441      # "DATA": the external data file's name
_EXT_BACKING_FORMAT = 0xE2792ACA
_HEADER_READ = 64 * 1024
#: qemu-img runs under these limits (a crafted image cannot exhaust a host).
QEMU_IMG_LIMITS = ("--cpu=30", "--as=%d" % (1 << 30))


class UnsafeImage(exception.Invalid):
    msg_fmt = "The image is refused: %(reason)s"


@dataclasses.dataclass(frozen=True)
class DiskInfo:
    format: str
    virtual_size: int


def detect_format(header: bytes) -> str:
    return "qcow2" if header[:4] == QCOW2_MAGIC else "raw"


def check_qcow2_header(header: bytes) -> None:
    """UnsafeImage when a qcow2 header (at least its first 64 KiB, or the
    whole file if shorter) names a backing or data file."""
    if len(header) < 72:
        if len(header) >= 20 and struct.unpack(">Q", header[8:16])[0]:
            raise UnsafeImage(reason="qcow2 images with a backing file are refused")
        raise UnsafeImage(reason="truncated qcow2 header")
    version, backing_offset, backing_size = struct.unpack(">IQI", header[4:20])
    if backing_offset or backing_size:
        raise UnsafeImage(reason="qcow2 images with a backing file are refused")
    if version < 3:
        return
    incompatible = struct.unpack(">Q", header[72:80])[0]
    if incompatible & _INCOMPAT_DATA_FILE:
        raise UnsafeImage(reason="qcow2 images with an external data file are refused")
    header_length = struct.unpack(">I", header[100:104])[0] if len(header) >= 104 else 104
    offset = max(header_length, 104)
    while offset + 8 <= len(header):
        kind, length = struct.unpack(">II", header[offset:offset + 8])
        if kind == 0:
            return
        if kind in (_EXT_DATA_FILE, _EXT_BACKING_FORMAT):
            raise UnsafeImage(reason="qcow2 header names an external file")
        offset += 8 + ((length + 7) & ~7)


def qemu_img_info(path: str, fmt: str) -> dict:
    """``qemu-img info`` of ``path`` read as ``fmt`` (never probed)."""
    cmd = ["prlimit", *QEMU_IMG_LIMITS, "qemu-img", "info", "--output=json",
           "-f", fmt, path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise UnsafeImage(reason="qemu-img cannot read it as %s: %s"
                          % (fmt, (proc.stderr or "").strip()[:200]))
    return json.loads(proc.stdout)


def check_self_contained(path: str, declared_format: str | None = None) -> DiskInfo:
    """Refuse (UnsafeImage) an image file that reaches outside itself or is
    not ``declared_format`` (detected when None); return its format and
    virtual size. Runs a subprocess: call it off any event loop."""
    with open(path, "rb") as f:
        header = f.read(_HEADER_READ)
    actual = detect_format(header)
    fmt = declared_format or actual
    if actual != fmt:
        raise exception.ImageFormatMismatch(actual=actual, expected=fmt)
    if fmt == "qcow2":
        check_qcow2_header(header)
    info = qemu_img_info(path, fmt)
    specific = (info.get("format-specific") or {}).get("data") or {}
    if info.get("format") != fmt:
        raise UnsafeImage(reason="qemu-img reads it as %s, not %s"
                          % (info.get("format"), fmt))
    for key in ("backing-filename", "full-backing-filename", "backing-filename-format"):
        if info.get(key):
            raise UnsafeImage(reason="qcow2 images with a backing file are refused")
    if specific.get("data-file") or specific.get("data-file-raw"):
        raise UnsafeImage(reason="qcow2 images with an external data file are refused")
    if "json:" in json.dumps(info):
        raise UnsafeImage(reason="the image names a json: pseudo-path")
    return DiskInfo(format=fmt, virtual_size=int(info.get("virtual-size") or 0))
