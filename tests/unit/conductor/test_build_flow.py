"""The build flow during a broker fault: select_destinations is retried
while the broker is unavailable, and NoValidHost while a compute host that
went quiet only lately may report again, within the scheduling task's
deadline (SQLite, recording RPC clients)."""

from __future__ import annotations

import datetime
import uuid as uuidlib

import pytest
import sqlalchemy as sa

from conductor.flows.build import BuildFlow, BuildState
from flotilla import deadlines, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import models
from flotilla.db.engine import session_scope
from flotilla.objects import Flavor, RequestSpec


class Compute:
    def __init__(self):
        self.builds = []

    def build_and_run_instance(self, ctxt, host, instance_uuid, image):
        self.builds.append((host, instance_uuid))


class FlakyScheduler:
    """Raises each error of ``errors`` in turn (forever the last one when
    ``forever``), then places every instance on host1."""

    def __init__(self, errors, forever=False):
        self.errors = list(errors)
        self.forever = forever
        self.calls = []

    def select_destinations(self, ctxt, spec, instance_uuids, excluded_hosts=None):
        self.calls.append(list(instance_uuids))
        if self.errors:
            error = self.errors[0] if self.forever else self.errors.pop(0)
            raise error
        return [{"instance_uuid": u, "host": "host1", "nodename": "host1",
                 "generation": 1} for u in instance_uuids]


def _unavailable():
    return exception.MessagingUnavailable(reason="broker cut")


@pytest.fixture(autouse=True)
def fast_backoff(db_conf):
    db_conf.set_override("reconnect_max_delay", 1, group="rpc")


def _boot(db, conf) -> tuple[RequestContext, str]:
    """A server as the API leaves it: building/scheduling, with a deadline."""
    uuid = str(uuidlib.uuid4())
    db.instance_create({"uuid": uuid, "name": "vm", "project_id": "p1", "user_id": "u1",
                        "flavor": {"memory_mb": 64, "vcpus": 1},
                        "vm_state": st.BUILDING, "task_state": st.SCHEDULING,
                        "task_deadline": deadlines.task_deadline(conf, st.SCHEDULING)})
    ctxt = RequestContext(user_id="u1", project_id="p1", roles=["member"])
    db.action_start(uuid, "create", ctxt.request_id, user_id="u1", project_id="p1")
    return ctxt, uuid


def _spec() -> RequestSpec:
    return RequestSpec(flavor=Flavor(), project_id="p1", user_id="u1")


def test_a_short_broker_outage_does_not_fail_the_build(db, db_conf):
    scheduler = FlakyScheduler([_unavailable(), _unavailable()])
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == 3
    assert compute.builds == [("host1", uuid)]
    inst = db.instance_get(uuid)
    assert inst.vm_state == st.BUILDING and inst.host == "host1"


def test_a_request_lost_in_a_cut_the_connection_did_not_notice_is_sent_again(db, db_conf):
    # The call timed out: its request or reply was dropped on the way.
    timeout = exception.MessagingTimeout(timeout=30, method="select_destinations",
                                         topic="scheduler")
    scheduler = FlakyScheduler([timeout])
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == 2
    assert compute.builds == [("host1", uuid)]


def test_a_reschedule_retries_through_an_outage_too(db, db_conf):
    scheduler = FlakyScheduler([_unavailable()])
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).run(
        BuildState(ctxt, uuid, request_spec=_spec(), attempt=2, tried_hosts=["host2"]))
    assert len(scheduler.calls) == 2
    assert compute.builds == [("host1", uuid)]
    assert db.instance_get(uuid).vm_state == st.BUILDING


def test_claims_of_a_lost_attempt_are_freed_before_the_next(db, db_conf, monkeypatch):
    # An attempt whose reply was lost may have claimed: free before asking again.
    log = []
    monkeypatch.setattr(db, "allocation_free", lambda consumer: log.append(("free", consumer)))
    scheduler = FlakyScheduler([_unavailable()])
    real = scheduler.select_destinations

    def select(ctxt, spec, instance_uuids, excluded_hosts=None):
        log.append(("select", list(instance_uuids)))
        return real(ctxt, spec, instance_uuids, excluded_hosts)
    scheduler.select_destinations = select
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, Compute()).build_instances(ctxt, [uuid], _spec(), None)
    assert log == [("select", [uuid]), ("free", uuid), ("select", [uuid])]


def test_an_outage_past_the_scheduling_deadline_ends_in_error(db, db_conf):
    db_conf.set_override("task_timeouts", {"scheduling": "1"}, group="conductor")
    scheduler = FlakyScheduler([_unavailable()], forever=True)
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) >= 2
    assert compute.builds == []
    assert db.instance_get(uuid).vm_state == st.ERROR


def test_no_valid_host_is_not_retried(db, db_conf):
    scheduler = FlakyScheduler([exception.NoValidHost(reason="no host fits")])
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == 1
    assert db.instance_get(uuid).vm_state == st.ERROR


def _compute_last_seen(db, host: str, seconds_ago: float) -> None:
    db.service_heartbeat(host, "flotilla-compute", "compute")
    with session_scope() as session:
        session.execute(sa.update(models.Service).where(models.Service.host == host).values(
            last_seen_at=datetime.datetime.now(datetime.UTC)
            - datetime.timedelta(seconds=seconds_ago)))


def _no_valid_host():
    return exception.NoValidHost(reason="ComputeFilter eliminated 1 of 1 hosts.")


def test_a_boot_waits_for_a_host_that_went_quiet_lately(db, db_conf):
    # A broker outage as long as service_down_time (60 s) silenced the host.
    db_conf.set_override("report_interval", 1)
    _compute_last_seen(db, "host1", 65)
    scheduler = FlakyScheduler([_no_valid_host()])
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == 2
    assert compute.builds == [("host1", uuid)]


@pytest.mark.parametrize("seconds_ago, disabled", [(125, False), (65, True)])
def test_no_valid_host_with_hosts_gone_for_good_or_disabled_ends_at_once(
        db, db_conf, seconds_ago, disabled):
    db_conf.set_override("report_interval", 1)
    _compute_last_seen(db, "host1", seconds_ago)
    if disabled:
        db.service_set_disabled("host1", "flotilla-compute", True, "maintenance")
    scheduler = FlakyScheduler([_no_valid_host()])
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, Compute()).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == 1
    assert db.instance_get(uuid).vm_state == st.ERROR


def test_waiting_for_a_quiet_host_ends_at_the_scheduling_deadline(db, db_conf):
    db_conf.set_override("report_interval", 1)
    db_conf.set_override("task_timeouts", {"scheduling": "3"}, group="conductor")
    _compute_last_seen(db, "host1", 65)
    scheduler = FlakyScheduler([_no_valid_host()], forever=True)
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, Compute()).build_instances(ctxt, [uuid], _spec(), None)
    assert 2 <= len(scheduler.calls) <= 4
    inst = db.instance_get(uuid)
    assert inst.vm_state == st.ERROR
    assert "ComputeFilter" in db.instance_fault_get_all(uuid)[0].message


def test_at_most_a_quarter_of_the_rpc_workers_wait_for_quiet_hosts(db, db_conf):
    # The heartbeats that end the wait come in on the same queue.
    from conductor.flows import build
    db_conf.set_override("report_interval", 1)
    db_conf.set_override("executor_pool_size", 4, group="rpc")
    _compute_last_seen(db, "host1", 65)
    with build._QUIET_WAITS.slot(db_conf) as waiting:
        assert waiting
        scheduler = FlakyScheduler([_no_valid_host()])
        ctxt, uuid = _boot(db, db_conf)
        BuildFlow(db_conf, "c1", scheduler, Compute()).build_instances(ctxt, [uuid], _spec(),
                                                                       None)
    assert len(scheduler.calls) == 1
    assert db.instance_get(uuid).vm_state == st.ERROR
    assert build._QUIET_WAITS.waiting == 0


class HostReturnsWhileDeciding(FlakyScheduler):
    """NoValidHost from a view in which host1 was down, while host1's first
    heartbeat after a broker cut lands before the answer does."""

    def __init__(self, db, errors, forever=False):
        super().__init__(errors, forever)
        self.db = db

    def select_destinations(self, ctxt, spec, instance_uuids, excluded_hosts=None):
        if len(self.calls) == 0:
            _compute_last_seen(self.db, "host1", 0)
        return super().select_destinations(ctxt, spec, instance_uuids, excluded_hosts)


def test_a_host_that_reported_while_the_scheduler_decided_is_asked_about_again(db, db_conf):
    db_conf.set_override("report_interval", 1)
    _compute_last_seen(db, "host1", 65)
    scheduler = HostReturnsWhileDeciding(db, [_no_valid_host()])
    compute = Compute()
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, compute).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == 2
    assert compute.builds == [("host1", uuid)]


@pytest.mark.parametrize("reported", ["before", "during"])
def test_a_host_that_reported_is_asked_about_again_only_once(db, db_conf, reported):
    # Up all along: its heartbeats before the question change nothing; one
    # that lands during the decision costs one more question, not a loop.
    db_conf.set_override("report_interval", 1)
    _compute_last_seen(db, "host1", 1)
    if reported == "during":
        scheduler = HostReturnsWhileDeciding(db, [_no_valid_host()], forever=True)
    else:
        scheduler = FlakyScheduler([_no_valid_host()], forever=True)
    ctxt, uuid = _boot(db, db_conf)
    BuildFlow(db_conf, "c1", scheduler, Compute()).build_instances(ctxt, [uuid], _spec(), None)
    assert len(scheduler.calls) == (2 if reported == "during" else 1)
    assert db.instance_get(uuid).vm_state == st.ERROR
