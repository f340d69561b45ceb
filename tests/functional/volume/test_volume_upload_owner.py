"""``os-volume_upload_image``: which upload owns an uploading volume
(flotilla.volume_upload): an ended upload never ends a later one, the
volume service's heartbeat keeps a long copy from being reaped, a release
racing the start still reads a point-in-time copy, and the images and
temporary copies of released uploads whose service died are cleaned up."""

# ruff: noqa: F811 - the imported fixtures are the tests' arguments
from __future__ import annotations

import datetime
import os
import threading

import pytest
import sqlalchemy as sa

from conductor.flows.volume import VolumeFlow
from flotilla import exception
from flotilla import states as st
from flotilla import volume_upload as vup
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import volumes as vdb
from flotilla.db.engine import session_scope
from flotilla.db.models import Image
from tests.functional.api.fixtures import IMAGE_ID, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import _server, cloud  # noqa: F401
from tests.functional.volume.test_volume_upload_api import (
    UPLOAD,
    CopyDaemon,
    _run_volume_service,
    _upload,
    _volume,
    stack,  # noqa: F401
)
from volume import recovery
from volume.rpcapi import VolumeAPI


def _flow(stack) -> VolumeFlow:
    return VolumeFlow(stack.conf, "conductor", None, VolumeAPI(stack.transport))


def _attached(stack) -> tuple[str, str]:
    """An in-use volume of p1 on vol1 and its server."""
    vid = _volume(stack)
    server = _server(stack)
    vdb.attachment_create(vid, server, "host1")
    vdb.volume_update(vid, {"status": st.VOLUME_IN_USE})
    return vid, server


def _release(stack, server: str, vid: str) -> None:
    """The server is deleted: its volume is released (available)."""
    db.instance_destroy(server)
    assert _flow(stack).release_if_gone(RequestContext(), server, vid)
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE


def test_a_released_upload_ending_late_does_not_end_a_later_upload(stack, monkeypatch):
    vid, server = _attached(stack)
    first = _upload(stack, vid, force=True).json[UPLOAD]["image_id"]
    daemon = stack.manager.daemon
    later = []

    def backup(volume_id, source, target):
        CopyDaemon.backup(daemon, volume_id, source, target)
        # Mid-copy: the server goes, and another upload of the volume begins.
        _release(stack, server, vid)
        r = _upload(stack, vid)
        assert r.status_code == 202, r.text
        later.append(r.json[UPLOAD]["image_id"])

    monkeypatch.setattr(daemon, "backup", backup)
    _run_volume_service(stack, vid)
    assert images_db.image_get(first).status == "active"
    # The first upload's end left the later one's volume alone.
    row = vdb.volume_get(vid)
    assert row.status == st.VOLUME_UPLOADING and vup.owner_of(row) == later[0]
    assert images_db.image_get(later[0]).status == "queued"
    monkeypatch.undo()
    _run_volume_service(stack, vid)
    assert images_db.image_get(later[0]).status == "active"
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE


def test_a_stale_cast_or_the_reaper_never_ends_another_uploads_volume(stack):
    vid = _volume(stack)
    first = _upload(stack, vid).json[UPLOAD]["image_id"]
    vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
    expired = vdb.volume_get(vid)
    assert _flow(stack).reap() == 1
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(first)
    later = _upload(stack, vid).json[UPLOAD]["image_id"]
    vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
    # The first upload's end and a reaper that read the first upload's row
    # both leave the later upload alone.
    assert vup.end_upload(vid, first) is None
    assert vup.reap_upload(stack.conf, expired) is None
    assert vup.owner_of(vdb.volume_get(vid)) == later
    assert images_db.image_get(later).status == "queued"


def test_the_volume_service_extends_the_deadline_while_it_copies(stack, monkeypatch):
    vid = _volume(stack)
    image_id = _upload(stack, vid).json[UPLOAD]["image_id"]
    # The cast waited long in the queue: past the deadline the API set.
    vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
    monkeypatch.setattr(vup, "heartbeat_interval", lambda conf: 0.2)
    backend = stack.manager.backend
    download = backend.download
    seen = []

    def slow(volume_id, chunk_size=1 << 20):
        # Started: the deadline was moved on, the reaper leaves it.
        assert vdb.volume_get(vid).status_deadline > vdb.utcnow()
        seen.append(_flow(stack).reap())
        # A long copy: the heartbeat moves a passed deadline on again.
        vdb.volume_update(vid, {"status_deadline": vdb.deadline(-5)})
        beat = threading.Event()
        for _ in range(100):
            if vdb.volume_get(vid).status_deadline > vdb.utcnow():
                beat.set()
                break
            beat.wait(0.1)
        seen.append(beat.is_set())
        yield from download(volume_id, chunk_size)

    monkeypatch.setattr(backend, "download", slow)
    _run_volume_service(stack, vid)
    assert seen == [0, True]
    assert images_db.image_get(image_id).status == "active"
    row = vdb.volume_get(vid)
    assert (row.status, row.status_deadline) == (st.VOLUME_AVAILABLE, None)


def test_a_release_racing_the_start_still_reads_a_point_in_time_copy(stack, monkeypatch):
    vid, server = _attached(stack)
    image_id = _upload(stack, vid, force=True).json[UPLOAD]["image_id"]
    read = vdb.volume_get
    raced = []

    def racing(volume_id, *args, **kwargs):
        row = read(volume_id, *args, **kwargs)
        if not raced:       # after the service's status check, before it looks further
            raced.append(volume_id)
            _release(stack, server, vid)
        return row

    monkeypatch.setattr(vdb, "volume_get", racing)
    _run_volume_service(stack, vid)
    monkeypatch.undo()
    assert stack.manager.daemon.backups == [vid]
    assert images_db.image_get(image_id).status == "active"
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE
    assert sorted(os.listdir(stack.manager.backend.directory)) == [vid]


def _age(image_id: str, seconds: int) -> None:
    with session_scope() as session:
        session.execute(sa.update(Image).where(Image.id == image_id).values(
            updated_at=vdb.utcnow() - datetime.timedelta(seconds=seconds)))


def test_a_released_upload_whose_service_died_is_cleaned_up_at_restart(stack):
    vid, server = _attached(stack)
    image_id = _upload(stack, vid, force=True).json[UPLOAD]["image_id"]
    # Copying (its temporary copy made) when the server went; then the
    # service died.
    stack.manager.backend.create("upload-" + image_id, 1)
    _release(stack, server, vid)
    done = recovery.recover_host(stack.manager)
    assert done["uploads_ended"] == []
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    assert sorted(os.listdir(stack.manager.backend.directory)) == [vid]
    assert vdb.volume_get(vid).status == st.VOLUME_AVAILABLE


def test_the_reaper_discards_an_abandoned_released_uploads_image(stack):
    vid, server = _attached(stack)
    image_id = _upload(stack, vid, force=True).json[UPLOAD]["image_id"]
    _release(stack, server, vid)
    owned = _upload(stack, vid).json[UPLOAD]["image_id"]   # a later upload, running
    flow = _flow(stack)
    flow.reap()
    # Touched lately (its copy may still run): kept.
    assert images_db.image_get(image_id).status == "queued"
    _age(image_id, stack.conf.volume.operation_timeout + 60)
    _age(owned, stack.conf.volume.operation_timeout + 60)
    flow.reap()
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    # The upload that owns the volume is the deadline's business, not this.
    assert images_db.image_get(owned).status == "queued"
    assert vup.owner_of(vdb.volume_get(vid)) == owned


@pytest.mark.parametrize("force, code", [("TRUE", 202), ("Yes", 202), ("t", 202),
                                         ("tRuE", 400), (" true", 400), ("No", 400)])
def test_force_takes_cinders_strict_boolean_spellings(stack, force, code):
    vid, _ = _attached(stack)
    r = _upload(stack, vid, force=force)
    assert r.status_code == code, r.text
    if code == 400:   # a bad spelling names force; "No" is a valid false
        assert ("force" in r.text and "boolean" in r.text) == (force != "No"), r.text
