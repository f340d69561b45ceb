"""The snapshot and rebuild flows and the reaper's policy for their tasks, on
SQLite with recording RPC clients."""

from __future__ import annotations

import datetime
import urllib.parse
import uuid as uuidlib

import pytest

from conductor.flows import runner
from conductor.flows.rebuild import RebuildFlow
from conductor.flows.snapshot import SnapshotFlow
from conductor.reaper import Reaper
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext, get_admin_context
from flotilla.db import images as images_db

PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
BASE = "22222222-3333-4444-8555-666666666666"


class Recorder:
    def __init__(self, fail: Exception | None = None):
        self.calls = []
        self.fail = fail

    def __getattr__(self, name):
        def record(*args, **kwargs):
            if self.fail is not None:
                raise self.fail
            self.calls.append((name, args, kwargs))
        return record


@pytest.fixture
def image_conf(db_conf, tmp_path):
    db_conf.set_override("store_path", str(tmp_path / "images"), group="image")
    db_conf.set_override("download_signing_key", "k" * 32, group="image")
    db_conf.set_override("public_endpoint", "http://api.test/image", group="image")
    return db_conf


@pytest.fixture
def compute():
    return Recorder()


@pytest.fixture
def flow(db, image_conf, compute):
    return SnapshotFlow(image_conf, "c1", compute)


def _server(db, vm_state=st.ACTIVE, task=st.IMAGE_SNAPSHOT, deadline=None,
            action="createImage") -> tuple[RequestContext, str]:
    images_db.image_create({"id": BASE, "name": "base", "owner": "p1", "status": "active",
                            "checksum": "a" * 64, "disk_format": "qcow2",
                            "properties": {"os_distro": "tiny"}}) \
        if not _exists(BASE) else None
    uuid = str(uuidlib.uuid4())
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1", "user_id": "u1",
                        "flavor": {"memory_mb": 64, "vcpus": 1, "root_gb": 1},
                        "vm_state": vm_state, "task_state": task, "host": "h1",
                        "image_ref": BASE, "task_deadline": deadline})
    ctxt = RequestContext(user_id="u1", project_id="p1", roles=["member"])
    db.action_start(uuid, action, ctxt.request_id, user_id="u1", project_id="p1")
    return ctxt, uuid


def _exists(image_id) -> bool:
    try:
        images_db.image_get(image_id)
        return True
    except exception.ImageNotFound:
        return False


def _snapshot_image(db, uuid, image_type="snapshot", backup_type=None) -> str:
    values = images.snapshot_values(db.instance_get(uuid), "snap", {}, "u1",
                                    images_db.image_get(BASE), image_type, backup_type)
    return images_db.image_create(values).id


def _upload(image_id):
    """What a successful upload leaves: the image active with its data."""
    images_db.image_update(image_id, {"status": "active", "checksum": "b" * 64,
                                      "size": 1234})


def _action(db, uuid):
    action = db.action_get_all(uuid)[0]
    return action, {e.event: e for e in db.action_events_get(action.id)}


def _record(db, uuid, ctxt):
    return db.flow_record_get(db.FlowRecordRef.action(uuid, ctxt.request_id))


def test_start_casts_with_a_one_use_url_and_waits(db, flow, compute):
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    [(name, args, kwargs)] = compute.calls
    assert name == "snapshot_instance"
    _ctxt, host, instance_uuid, sent_image, url, base = args
    assert (host, instance_uuid, sent_image) == ("h1", uuid, image_id)
    assert base.id == BASE and base.sha256 == "a" * 64
    assert url.startswith("http://api.test/image/v2/images/%s/file?" % image_id)
    nonce = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["nonce"]
    assert images_db.image_get(image_id).upload_token == images.upload_token_hash(nonce)
    record = _record(db, uuid, ctxt)
    assert (record.flow, record.flow_status) == ("snapshot", runner.WAITING)
    # The URL is a secret: it is not saved with the flow.
    assert nonce not in str(record.flow_data) and url not in str(record.flow_data)


def test_the_agents_success_finishes_the_flow(db, flow):
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    db.instance_update(uuid, {"task_state": st.IMAGE_UPLOADING})
    _upload(image_id)
    flow.report(ctxt, uuid, "h1", image_id, {"error": None})
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state, inst.task_deadline) == (st.ACTIVE, None, None)
    action, events = _action(db, uuid)
    assert action.finish_time is not None and action.message is None
    assert events["conductor_finish_snapshot"].details == "image %s active, 1234 bytes" \
        % image_id
    assert _record(db, uuid, ctxt).flow_status == runner.COMPLETED
    assert images_db.image_get(image_id).status == "active"


@pytest.mark.parametrize("vm_state", [st.ACTIVE, st.STOPPED, st.PAUSED, st.SUSPENDED])
def test_the_agents_failure_removes_the_image_and_restores_the_server(db, flow, vm_state):
    ctxt, uuid = _server(db, vm_state)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    db.instance_update(uuid, {"task_state": st.IMAGE_PENDING_UPLOAD})
    flow.report(ctxt, uuid, "h1", image_id,
                {"error": "qemu-img convert failed: /srv/x", "message": "The disk broke."})
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (vm_state, None)
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    [fault] = db.instance_fault_get_all(uuid)
    assert fault.message == "The disk broke." and "/srv/x" in fault.details
    action, events = _action(db, uuid)
    assert action.message == "Error"
    assert events["conductor_snapshot_on_host_report"].result == "Error"
    assert _record(db, uuid, ctxt).flow_status == runner.FAILED


def test_a_report_without_an_image_id_finds_the_unfinished_snapshot(db, flow):
    """What an agent that restarted sends (it no longer knows the image)."""
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    flow.report(get_admin_context(), uuid, "h1", None,
                {"error": "agent restarted", "message": "Interrupted."})
    assert db.instance_get(uuid).task_state is None
    assert not _exists(image_id)
    assert db.instance_fault_get_all(uuid)[0].message == "Interrupted."


def test_a_failure_report_without_any_flow_still_restores_the_server(db, flow):
    ctxt, uuid = _server(db)
    flow.report(ctxt, uuid, "h1", None, {"error": "x", "message": "Interrupted."})
    assert db.instance_get(uuid).task_state is None
    assert db.instance_fault_get_all(uuid)[0].message == "Interrupted."


def test_a_cast_nobody_receives_reverts_at_once(db, image_conf):
    flow = SnapshotFlow(image_conf, "c1", Recorder(fail=exception.MessageUndeliverable(
        routing_key="compute.h1", exchange="x", method="snapshot_instance")))
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    assert db.instance_get(uuid).task_state is None and not _exists(image_id)
    assert db.instance_fault_get_all(uuid)[0].message == \
        "The service of the server's host is not running."


def test_a_failed_check_cleans_up_too(db, flow, compute):
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    _upload(image_id)                      # not queued: the check refuses
    flow.start(ctxt, uuid, image_id)
    assert compute.calls == []
    assert db.instance_get(uuid).task_state is None and not _exists(image_id)


@pytest.mark.parametrize("change, done", [
    (lambda db, uuid, image_id: _upload(image_id), True),
    (lambda db, uuid, image_id: images_db.image_destroy(image_id), False),
    (lambda db, uuid, image_id: db.instance_update(uuid, {"task_state": None}), False),
])
def test_a_lost_report_is_found_by_the_poll(db, flow, change, done):
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    flow.resume(_record(db, uuid, ctxt))        # nothing happened yet: still waiting
    assert _record(db, uuid, ctxt).flow_status == runner.WAITING
    change(db, uuid, image_id)
    flow.resume(_record(db, uuid, ctxt))
    status = _record(db, uuid, ctxt).flow_status
    assert status == (runner.COMPLETED if done else runner.FAILED)
    assert db.instance_get(uuid).task_state is None
    assert _exists(image_id) is done


def test_a_conductor_restart_while_casting_reverts(db, flow):
    ctxt, uuid = _server(db)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    # As if the conductor died inside the step, before it was saved waiting.
    db.flow_record_update(db.FlowRecordRef.action(uuid, ctxt.request_id),
                          flow_status=runner.RUNNING)
    flow.resume(_record(db, uuid, ctxt))
    assert db.instance_get(uuid).task_state is None and not _exists(image_id)


def test_backups_beyond_the_rotation_are_deleted_oldest_first(db, flow):
    ctxt, uuid = _server(db, action="createBackup")
    old = []
    for n in range(3):
        image_id = _snapshot_image(db, uuid, "backup", "daily")
        _upload(image_id)
        old.append(image_id)
    weekly = _snapshot_image(db, uuid, "backup", "weekly")
    _upload(weekly)
    protected = old[0]
    image = images_db.image_get(protected)
    images_db.image_update(protected, {"properties": dict(
        image.properties, **{images_db.PROTECTED_KEY: True})})
    new = _snapshot_image(db, uuid, "backup", "daily")
    flow.start(ctxt, uuid, new, "daily", 2)
    _upload(new)
    flow.report(ctxt, uuid, "h1", new, {})
    left = {i for i in old + [weekly, new] if _exists(i)}
    # Two daily ones beyond the rotation: the oldest is protected, so kept.
    assert left == {protected, old[2], new, weekly}
    _action_row, events = _action(db, uuid)
    assert old[1] in events["conductor_rotate_backups"].details


# --- the reaper ----------------------------------------------------------------------

@pytest.fixture
def reaper(db, image_conf, flow):
    return Reaper(image_conf, {"snapshot": flow,
                               "rebuild": RebuildFlow(image_conf, "c1", Recorder())},
                  "c1")


@pytest.mark.parametrize("task", [st.IMAGE_SNAPSHOT, st.IMAGE_PENDING_UPLOAD,
                                  st.IMAGE_UPLOADING])
def test_the_reaper_ends_every_snapshot_task(db, flow, reaper, task):
    ctxt, uuid = _server(db, st.STOPPED)
    image_id = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, image_id)
    db.instance_update(uuid, {"task_state": task, "task_deadline": PAST})
    assert reaper.run() == 1
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state, inst.task_deadline) == (st.STOPPED, None, None)
    assert not _exists(image_id)
    [fault] = db.instance_fault_get_all(uuid)
    assert fault.code == 504 and "Task %s timed out" % task in fault.message
    action, events = _action(db, uuid)
    assert action.message == "Error" and events["conductor_reap_task"].result == "Error"
    assert _record(db, uuid, ctxt).flow_status == runner.FAILED
    # A report arriving after that is ignored.
    flow.report(ctxt, uuid, "h1", image_id, {})
    assert db.instance_get(uuid).task_state is None


def test_the_reaper_ends_a_snapshot_task_that_has_no_flow(db, reaper):
    _ctxt, uuid = _server(db, deadline=PAST)
    assert reaper.run() == 1
    assert db.instance_get(uuid).task_state is None


@pytest.mark.parametrize("task", [st.REBUILDING, st.REBUILD_SPAWNING])
def test_the_reaper_ends_a_rebuild_in_error(db, reaper, task):
    _ctxt, uuid = _server(db, task=task, deadline=PAST, action="rebuild")
    assert reaper.run() == 1
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state) == (st.ERROR, None)
    assert "Task %s timed out" % task in db.instance_fault_get_all(uuid)[0].message
    assert _action(db, uuid)[0].message == "Error"


# --- rebuild -------------------------------------------------------------------------

def test_rebuild_casts_the_image_and_records_it_on_success(db, image_conf):
    compute = Recorder()
    flow = RebuildFlow(image_conf, "c1", compute)
    ctxt, uuid = _server(db, st.STOPPED, task=st.REBUILDING, action="rebuild")
    image_id = _snapshot_image(db, uuid)
    _upload(image_id)
    flow.start(ctxt, uuid, image_id)
    [(name, args, _kw)] = compute.calls
    assert name == "rebuild_instance"
    image, power_on = args[3], args[4]
    assert image.id == image_id and image.sha256 == "b" * 64 and power_on is False
    assert "signature=" in image.source
    flow.report(ctxt, uuid, "h1", {})
    assert db.instance_get(uuid).image_ref == image_id
    assert _action(db, uuid)[0].finish_time is not None


def test_a_failed_rebuild_says_why_and_keeps_the_old_image(db, image_conf):
    flow = RebuildFlow(image_conf, "c1", Recorder())
    ctxt, uuid = _server(db, task=st.REBUILDING, action="rebuild")
    image_id = _snapshot_image(db, uuid)
    _upload(image_id)
    flow.start(ctxt, uuid, image_id)
    db.instance_update(uuid, {"task_state": None})     # the agent restored it
    flow.report(ctxt, uuid, "h1", {"error": "download: 500", "message": "No image."})
    inst = db.instance_get(uuid)
    assert inst.image_ref == BASE and inst.task_state is None
    assert db.instance_fault_get_all(uuid)[0].message == "No image."
    assert _action(db, uuid)[0].message == "Error"


def test_a_rebuild_cast_nobody_receives_clears_the_task(db, image_conf):
    flow = RebuildFlow(image_conf, "c1", Recorder(fail=exception.MessageUndeliverable(
        routing_key="compute.h1", exchange="x", method="rebuild_instance")))
    ctxt, uuid = _server(db, task=st.REBUILDING, action="rebuild")
    image_id = _snapshot_image(db, uuid)
    _upload(image_id)
    flow.start(ctxt, uuid, image_id)
    inst = db.instance_get(uuid)
    assert (inst.vm_state, inst.task_state, inst.image_ref) == (st.ACTIVE, None, BASE)


def test_a_late_report_of_an_old_snapshot_leaves_the_next_one_alone(db, flow):
    ctxt, uuid = _server(db)
    first = _snapshot_image(db, uuid)
    flow.start(ctxt, uuid, first)
    flow.report(ctxt, uuid, "h1", first, {"error": "failed"})
    # The user snapshots again; then the first one's report comes once more.
    db.instance_update(uuid, {"task_state": st.IMAGE_SNAPSHOT})
    second_ctxt = RequestContext(user_id="u1", project_id="p1", roles=["member"])
    db.action_start(uuid, "createImage", second_ctxt.request_id)
    second = _snapshot_image(db, uuid)
    flow.start(second_ctxt, uuid, second)
    flow.report(ctxt, uuid, "h1", first, {"error": "failed again"})
    assert db.instance_get(uuid).task_state == st.IMAGE_SNAPSHOT
    assert _record(db, uuid, second_ctxt).flow_status == runner.WAITING
    assert images_db.image_get(second).status == "queued"
