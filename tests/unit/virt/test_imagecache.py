"""The per-host image cache: verified fetch-once, overlays, cleanup."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import threading
import time

import pytest

from compute.virt.libvirt import imagecache
from flotilla import exception
from flotilla.objects import ImageMeta


def make_base(path, size="1M", fmt="qcow2") -> str:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size],
                   check=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path):
    return imagecache.ImageCache(str(tmp_path / "instances"), max_age=3600)


@pytest.fixture
def image(tmp_path):
    src = tmp_path / "src.qcow2"
    return ImageMeta(id="img-1", source=str(src), sha256=make_base(src))


def test_fetch_verifies_and_caches_once(cache, image):
    base = cache.fetch(image)
    assert os.path.dirname(base) == cache.base_dir
    assert hashlib.sha256(open(base, "rb").read()).hexdigest() == image.sha256
    assert cache.fetch(image) == base
    assert cache.downloads == 1


def test_checksum_mismatch_leaves_nothing(cache, image):
    bad = ImageMeta(id=image.id, source=image.source, sha256="0" * 64)
    with pytest.raises(exception.ImageChecksumMismatch):
        cache.fetch(bad)
    assert os.listdir(cache.base_dir) == []
    assert cache.downloads == 0


def test_source_error_leaves_nothing(cache, tmp_path):
    with pytest.raises(FileNotFoundError):
        cache.fetch(ImageMeta(id="x", source=str(tmp_path / "missing")))
    assert os.listdir(cache.base_dir) == []


def test_unsupported_scheme(cache):
    with pytest.raises(imagecache.ImageError, match="scheme"):
        cache.fetch(ImageMeta(id="x", source="ftp://host/image"))


def test_image_with_backing_file_is_refused(cache, tmp_path, image):
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                    image.source, "-F", "qcow2", str(evil)], check=True)
    with pytest.raises(imagecache.ImageError, match="backing file"):
        cache.fetch(ImageMeta(id="evil", source=str(evil)))
    assert os.listdir(cache.base_dir) == []


def test_image_with_external_data_file_is_refused(cache, tmp_path):
    """Issue 13 defect 1: the agent's cache refused only backing files."""
    evil = tmp_path / "evil-data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                    "data_file=%s" % (tmp_path / "host-file"), str(evil), "1M"],
                   check=True)
    with pytest.raises(imagecache.ImageError, match="external data file"):
        cache.fetch(ImageMeta(id="evil-data", source=str(evil), disk_format="qcow2"))
    assert os.listdir(cache.base_dir) == []


def test_concurrent_fetches_share_one_download(cache, image, monkeypatch):
    """Six spawns of one image ask for its base while the first download
    runs: the download holds until all six have asked for the image's lock
    (or fails the test after a deadline), so they are truly concurrent."""
    threads_count = 6
    real_download = imagecache.ImageCache._download
    real_lock = imagecache.ImageCache._lock
    calls = []
    asked = threading.Condition()
    askers = []

    def counting_lock(self, key):
        with asked:
            askers.append(key)
            asked.notify_all()
        return real_lock(self, key)

    def held_download(self, source, dest):
        calls.append(source)
        with asked:
            if not asked.wait_for(lambda: len(askers) >= threads_count, 30):
                raise AssertionError("only %d of %d spawns asked for the image"
                                     % (len(askers), threads_count))
        return real_download(self, source, dest)

    monkeypatch.setattr(imagecache.ImageCache, "_lock", counting_lock)
    monkeypatch.setattr(imagecache.ImageCache, "_download", held_download)
    results, errors = [], []

    def spawn_disk(n):
        try:
            disk = os.path.join(cache.instances_path, "i%d" % n, "disk")
            os.makedirs(os.path.dirname(disk))
            results.append(cache.prepare_disk(image, disk, 0))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=spawn_disk, args=(n,))
               for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(calls) == 1 and cache.downloads == 1
    assert len(results) == threads_count and len(set(results)) == 1


def test_http_source(cache, tmp_path, image):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/src.qcow2" % server.server_address[1]
        base = cache.fetch(ImageMeta(id="web", source=url, sha256=image.sha256))
        assert os.path.getsize(base) == os.path.getsize(image.source)
    finally:
        server.shutdown()
        server.server_close()


def test_overlay_on_base(cache, image, tmp_path):
    disk = tmp_path / "instances" / "inst" / "disk"
    disk.parent.mkdir(parents=True)
    base = cache.prepare_disk(image, str(disk), 2)
    info = imagecache.qemu_img_info(str(disk))
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 2 * 1024 ** 3
    assert info["backing-filename"] == base
    assert info.get("backing-filename-format") == "qcow2"
    assert imagecache.qcow2_backing_file(str(disk)) == base


def test_overlay_on_raw_base_keeps_image_size(cache, tmp_path):
    src = tmp_path / "raw.img"
    image = ImageMeta(id="raw", source=str(src), sha256=make_base(src, "3M", "raw"))
    disk = tmp_path / "instances" / "inst" / "disk"
    disk.parent.mkdir(parents=True)
    cache.prepare_disk(image, str(disk), 0)
    info = imagecache.qemu_img_info(str(disk))
    assert info["virtual-size"] == 3 * 1024 ** 2
    assert info["backing-filename-format"] == "raw"


def test_overlay_smaller_than_image_is_refused(cache, tmp_path):
    src = tmp_path / "big.qcow2"
    image = ImageMeta(id="big", source=str(src), sha256=make_base(src, "2G"))
    disk = tmp_path / "instances" / "inst" / "disk"
    disk.parent.mkdir(parents=True)
    with pytest.raises(imagecache.ImageError, match="smaller"):
        cache.prepare_disk(image, str(disk), 1)
    assert not disk.exists()


def test_cleanup_removes_only_old_unused_bases(cache, tmp_path):
    images = {}
    for name in ("used", "old", "young"):
        src = tmp_path / ("%s.qcow2" % name)
        images[name] = ImageMeta(id=name, source=str(src), sha256=make_base(src))
    disk = tmp_path / "instances" / "inst" / "disk"
    disk.parent.mkdir(parents=True)
    used = cache.prepare_disk(images["used"], str(disk), 0)
    old = cache.fetch(images["old"])
    young = cache.fetch(images["young"])
    stale_part = old + ".part-deadbeef"
    open(stale_part, "wb").close()
    long_ago = time.time() - 7200
    for path in (used, old, stale_part):
        os.utime(path, (long_ago, long_ago))
    removed = cache.cleanup()
    assert sorted(removed) == sorted([old, stale_part])
    assert os.path.exists(used) and os.path.exists(young)
    # Once its overlay is gone, the old used base goes too.
    os.unlink(disk)
    assert cache.cleanup() == [used]


def test_cleanup_without_cache_dir(tmp_path):
    assert imagecache.ImageCache(str(tmp_path / "none"), 0).cleanup() == []


def test_backing_file_of_non_qcow2(tmp_path):
    path = tmp_path / "raw"
    path.write_bytes(b"\0" * 100)
    assert imagecache.qcow2_backing_file(str(path)) is None
    assert imagecache.qcow2_backing_file(str(tmp_path / "missing")) is None
