"""The live migration flow's report step trusts where the guest runs over
what a report says (conductor/flows/live_migrate.py, MigrateOnSource): a
source agent that restarted may report failed a job that succeeded."""

from __future__ import annotations

import pytest

from conductor.flows.live_migrate import LiveMigrateState, LiveMigrationFailed, MigrateOnSource
from flotilla.context import RequestContext


class _Hosts:
    """find_guest answers per host; ``None`` for a host that does not answer."""

    def __init__(self, **presence) -> None:
        self.presence = presence

    def find_guest(self, ctxt, host: str, instance_uuid: str) -> dict:
        answer = self.presence[host]
        if answer is None:
            raise TimeoutError("no answer from %s" % host)
        return answer


def _state() -> LiveMigrateState:
    return LiveMigrateState(RequestContext(), "i-1", migration_uuid="m-1",
                            source="host1", dest="host2")


GONE = {"defined": False, "migration": ""}
RUNS = {"defined": True, "migration": ""}
COMING = {"defined": True, "migration": "incoming"}


def test_a_success_report_goes_on():
    MigrateOnSource(_Hosts(host1=None, host2=None)).on_report(_state(), {"error": None})


@pytest.mark.parametrize("source,dest", [(RUNS, GONE), (RUNS, COMING), (GONE, COMING),
                                         (None, RUNS), (GONE, None)])
def test_a_failure_report_fails_the_flow_unless_the_guest_arrived(source, dest):
    step = MigrateOnSource(_Hosts(host1=source, host2=dest))
    with pytest.raises(LiveMigrationFailed):
        step.on_report(_state(), {"error": "job failed", "message": "failed"})


def test_a_failure_report_of_a_guest_that_arrived_completes():
    step = MigrateOnSource(_Hosts(host1=GONE, host2=RUNS))
    step.on_report(_state(), {"error": "job failed", "message": "failed"})
