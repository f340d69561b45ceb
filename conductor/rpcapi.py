"""Client of the conductor's RPC API (topic ``conductor``).

Compute agents never open the database: every write they need goes through
these calls, so a compromised hypervisor host cannot read or rewrite the
whole cloud.

Version history:

* 1.0 - service_heartbeat, instance_get, instance_get_all_by_host,
  instance_update (compare-and-swap), instance_destroy, instance_fault_create,
  action_event_start, action_event_finish, compute_node_update.
"""

from __future__ import annotations

from typing import Any

from flotilla import rpc
from flotilla.context import RequestContext

TOPIC = "conductor"


class ConductorAPI:
    VERSION = "1.0"

    def __init__(self, transport, version_cap: str | None = None,
                 timeout: float | None = None) -> None:
        self.client = rpc.RPCClient(transport, topic=TOPIC, version="1.0",
                                    version_cap=version_cap)
        self._timeout = timeout

    def _call(self, ctxt, method: str, **kwargs):
        cctx = self.client.prepare(timeout=self._timeout) if self._timeout \
            else self.client
        return cctx.call(ctxt, method, **kwargs)

    def service_heartbeat(self, ctxt: RequestContext, host: str, binary: str,
                          topic: str) -> None:
        self._call(ctxt, "service_heartbeat", host=host, binary=binary, topic=topic)

    def instance_get(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        return self._call(ctxt, "instance_get", instance_uuid=instance_uuid)

    def instance_get_all_by_host(self, ctxt: RequestContext, host: str,
                                 read_deleted: bool = False) -> list[dict]:
        return self._call(ctxt, "instance_get_all_by_host", host=host,
                          read_deleted=read_deleted)

    def instance_update(self, ctxt: RequestContext, instance_uuid: str,
                        values: dict[str, Any], expected: dict | None = None) -> dict:
        """Set ``values``; ``expected`` maps vm_state/task_state to a value or
        a list of values (None means NULL); a key left out is not checked.
        Raises InstanceStateConflict when the state is not as expected."""
        return self._call(ctxt, "instance_update", instance_uuid=instance_uuid,
                          values=values, expected=expected or {})

    def instance_destroy(self, ctxt: RequestContext, instance_uuid: str,
                         expected: dict | None = None) -> dict:
        """Soft-delete the instance and free its resource claims."""
        return self._call(ctxt, "instance_destroy", instance_uuid=instance_uuid,
                          expected=expected or {})

    def instance_fault_create(self, ctxt: RequestContext, instance_uuid: str,
                              code: int, message: str, details: str | None = None,
                              host: str | None = None) -> None:
        self._call(ctxt, "instance_fault_create", instance_uuid=instance_uuid,
                   code=code, message=message, details=details, host=host)

    def action_event_start(self, ctxt: RequestContext, instance_uuid: str,
                           action: str, event: str, host: str) -> None:
        self._call(ctxt, "action_event_start", instance_uuid=instance_uuid,
                   action=action, event=event, host=host)

    def action_event_finish(self, ctxt: RequestContext, instance_uuid: str,
                            event: str, result: str, details: str | None = None) -> None:
        self._call(ctxt, "action_event_finish", instance_uuid=instance_uuid,
                   event=event, result=result, details=details)

    def compute_node_update(self, ctxt: RequestContext, host: str,
                            resources: dict[str, Any]) -> None:
        self._call(ctxt, "compute_node_update", host=host, resources=resources)
