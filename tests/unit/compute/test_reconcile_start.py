"""Start-up reconciliation (compute/reconcile.py) of what a live migration
left: files without a guest, and the source's job that outlived its agent."""

from __future__ import annotations

from compute.lifecycle import Lifecycle
from compute.reconcile import Reconciler
from flotilla import exception
from flotilla import states as st

MINE = "11111111-1111-4111-8111-111111111111"
COMING = "22222222-2222-4222-8222-222222222222"
LEFT = "33333333-3333-4333-8333-333333333333"
GONE = "44444444-4444-4444-8444-444444444444"


class _Driver:
    def __init__(self, files, domains) -> None:
        self.files, self.domains, self.destroyed = list(files), list(domains), []

    def list_instances(self):
        return list(self.domains)

    def list_instance_files(self):
        return list(self.files)

    def destroy(self, instance):
        self.destroyed.append(instance.uuid)

    def get_info(self, instance):
        raise exception.InstanceNotFound(instance_id=instance.uuid)


class _Conductor:
    """Instance records as the conductor shows them to host1."""

    def __init__(self, records: dict) -> None:
        self.records = records

    def instance_get_all_by_host(self, ctxt, host):
        return [r for r in self.records.values() if r["host"] == host]

    def instance_get(self, ctxt, uuid):
        if uuid not in self.records:
            raise exception.InstanceNotFound(instance_id=uuid)
        record = self.records[uuid]
        if record["host"] != "host1" and record["task_state"] != st.MIGRATING:
            raise exception.Forbidden(reason="not yours")
        return record


def _record(uuid: str, host: str, task: str | None = None) -> dict:
    return {"uuid": uuid, "host": host, "task_state": task, "vm_state": st.ACTIVE,
            "power_state": 1}


class _Migrations:
    def __init__(self) -> None:
        self.recovered = []

    def recover(self, ctxt, record):
        self.recovered.append(record["uuid"])
        return True


def test_files_of_instances_not_on_this_host_are_removed():
    """A migration that failed while the destination's agent was down left
    its directory there (the rollback never came): removed at start-up; the
    files of this host's instances and of one migrating here stay."""
    driver = _Driver(files=[MINE, COMING, LEFT, GONE], domains=[MINE])
    conductor = _Conductor({MINE: _record(MINE, "host1"),
                            COMING: _record(COMING, "host2", st.MIGRATING),
                            LEFT: _record(LEFT, "host2")})
    reconciler = Reconciler(Lifecycle("host1", driver, conductor))
    reconciler._repair = lambda *args: None
    reconciler.init_host()
    assert sorted(driver.destroyed) == sorted([LEFT, GONE])


def test_a_migrating_source_hands_its_instance_to_the_live_migrations():
    driver = _Driver(files=[MINE], domains=[MINE])
    conductor = _Conductor({MINE: _record(MINE, "host1", st.MIGRATING)})
    migrations = _Migrations()
    Reconciler(Lifecycle("host1", driver, conductor), live_migrations=migrations).init_host()
    assert migrations.recovered == [MINE]
    assert driver.destroyed == []


class _Updates(_Conductor):
    def __init__(self, records: dict) -> None:
        super().__init__(records)
        self.updates = []

    def instance_update(self, ctxt, uuid, values, expected=None):
        self.updates.append((uuid, values))

    def instance_fault_create(self, ctxt, instance_uuid, code, message, details=None,
                              host=None):
        self.updates.append((instance_uuid, {"fault": message}))


def test_a_resize_without_a_domain_here_is_left_to_its_flow():
    """A resize to this same host whose original stepped aside (undefined,
    kept as <uuid>_resize) before the new definition, or a revert that
    destroyed the guest here before the server moves back: not vanished,
    nothing changed (the flow or the reaper ends it); its files stay."""
    for task in (st.RESIZE_MIGRATED, st.RESIZE_FINISH, st.RESIZE_REVERTING):
        driver = _Driver(files=[MINE], domains=[])
        conductor = _Updates({MINE: _record(MINE, "host1", task)})
        Reconciler(Lifecycle("host1", driver, conductor)).init_host()
        assert conductor.updates == [] and driver.destroyed == [], task
    # Without a task the guest did vanish: ERROR, as before.
    conductor = _Updates({MINE: _record(MINE, "host1")})
    Reconciler(Lifecycle("host1", _Driver(files=[MINE], domains=[]), conductor)).init_host()
    # The fault first: whoever sees the ERROR finds its reason.
    assert [next(iter(v)) for _u, v in conductor.updates] == ["fault", "vm_state"]
    assert conductor.updates[1][1]["vm_state"] == st.ERROR


class _Reports(_Conductor):
    def __init__(self, migration) -> None:
        super().__init__({})
        self.migration = migration
        self.done = []

    def migration_get_in_progress(self, ctxt, uuid):
        if isinstance(self.migration, Exception):
            raise self.migration
        return self.migration

    def live_migration_done(self, ctxt, uuid, migration_uuid, host, error=None,
                            message=None):
        self.done.append((uuid, migration_uuid, error is None))

    def migration_progress(self, ctxt, migration_uuid, progress):
        pass


class _Leaving(_Driver):
    def __init__(self, stayed: bool) -> None:
        super().__init__([], [])
        self.stayed = stayed

    def live_migration_recover(self, instance):
        if self.stayed:
            raise exception.MigrationError(instance_uuid=instance.uuid, reason="here")

    def live_migration_progress(self, instance):
        return None


def _migration(**values) -> dict:
    return {"uuid": "m-1", "status": "running", "migration_type": "live-migration",
            "source_host": "host1", "dest_host": "host2", **values}


def _recover(conf, migration, stayed: bool = False):
    from compute.ops.live_migration import LiveMigrationOps
    conductor = _Reports(migration)
    ops = LiveMigrationOps(conf, Lifecycle("host1", _Leaving(stayed), conductor))
    try:
        taken = ops.recover(None, _record(MINE, "host1", st.MIGRATING))
    finally:
        ops.shutdown(timeout=10)
    return taken, conductor.done


def test_the_source_reports_how_the_job_it_started_ended(conf):
    assert _recover(conf, _migration()) == (True, [(MINE, "m-1", True)])
    assert _recover(conf, _migration(), stayed=True) == (True, [(MINE, "m-1", False)])


def test_what_is_not_the_sources_running_job_is_left_to_the_flow(conf):
    for migration in (None, _migration(status="preparing"),
                      _migration(status="post-migrating"), _migration(source_host="host2"),
                      _migration(migration_type="resize"),
                      exception.MessagingTimeout(reason="no conductor")):
        assert _recover(conf, migration) == (False, []), migration
