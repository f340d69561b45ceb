"""Write a small standalone qcow2 image in pure Python.

The fake driver's snapshots are real image files (an image service, a
``qemu-img info`` or a boot from them see a qcow2 like any other) without
running qemu-img. The layout is the simplest valid one: version 2, 64 KiB
clusters, 16-bit refcounts, one refcount block, one L2 table, so it holds at
most 512 MiB of data (far more than a fake disk holds).
"""

from __future__ import annotations

import os
import struct

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
_L2_ENTRIES = CLUSTER // 8
_COPIED = 1 << 63          # refcount is exactly one: safe to write in place
_HEADER = struct.Struct(">IIQIIQIIQQIIQ")
MAGIC = 0x514649FB         # "QFI\xfb"

# Cluster numbers of the fixed metadata.
_REFCOUNT_TABLE, _REFCOUNT_BLOCK, _L1, _L2 = 1, 2, 3, 4


def write_qcow2(path: str, data: bytes, virtual_size: int) -> int:
    """Write ``data`` as the first bytes of a ``virtual_size`` disk (the rest
    reads as zeros) to a new file at ``path``; returns the file's size.

    Raises FileExistsError when ``path`` exists, ValueError when the data
    does not fit.
    """
    if len(data) > virtual_size:
        raise ValueError("%d bytes of data exceed the disk's %d bytes"
                         % (len(data), virtual_size))
    data_clusters = -(-len(data) // CLUSTER)
    if data_clusters > _L2_ENTRIES:
        raise ValueError("more data than one L2 table maps")
    l1_size = max(1, -(-virtual_size // (CLUSTER * _L2_ENTRIES)))
    if l1_size * 8 > CLUSTER:
        raise ValueError("virtual size too large for a one-cluster L1 table")
    first_data = _L2 + 1 if data_clusters else _L2
    total = first_data + data_clusters
    if total > CLUSTER // 2:
        raise ValueError("more clusters than one refcount block counts")

    header = _HEADER.pack(MAGIC, 2, 0, 0, CLUSTER_BITS, virtual_size, 0,
                          l1_size, _L1 * CLUSTER, _REFCOUNT_TABLE * CLUSTER,
                          1, 0, 0)
    refcount_table = struct.pack(">Q", _REFCOUNT_BLOCK * CLUSTER)
    refcount_block = struct.pack(">%dH" % total, *([1] * total))
    l1 = bytearray(l1_size * 8)
    clusters = [header, refcount_table, refcount_block, bytes(l1)]
    if data_clusters:
        struct.pack_into(">Q", l1, 0, (_L2 * CLUSTER) | _COPIED)
        clusters[_L1] = bytes(l1)
        clusters.append(struct.pack(
            ">%dQ" % data_clusters,
            *(((first_data + i) * CLUSTER) | _COPIED for i in range(data_clusters))))
        clusters.extend(data[i * CLUSTER:(i + 1) * CLUSTER]
                        for i in range(data_clusters))
    with open(path, "xb") as f:
        for chunk in clusters:
            f.write(chunk.ljust(CLUSTER, b"\0"))
        f.flush()
        os.fsync(f.fileno())
    return total * CLUSTER


def read_qcow2_header(path: str) -> dict:
    """The header fields of a qcow2 file (enough to check what was written)."""
    with open(path, "rb") as f:
        fields = _HEADER.unpack(f.read(_HEADER.size))
    names = ("magic", "version", "backing_file_offset", "backing_file_size",
             "cluster_bits", "size", "crypt_method", "l1_size",
             "l1_table_offset", "refcount_table_offset",
             "refcount_table_clusters", "nb_snapshots", "snapshots_offset")
    return dict(zip(names, fields, strict=True))
