"""Client of the conductor's RPC API (topic ``conductor``).

Compute agents never open the database: every write they need goes through
these calls, so a compromised hypervisor host cannot read or rewrite the
whole cloud.

Version history:

* 1.0 - service_heartbeat, instance_get, instance_get_all_by_host,
  instance_update (compare-and-swap), instance_destroy, instance_fault_create,
  action_event_start, action_event_finish, compute_node_update.
* 1.1 - build_instances, build_failed, delete_instance (casts that start
  or continue conductor flows).
"""

from __future__ import annotations

from typing import Any

from flotilla import rpc
from flotilla.context import RequestContext, get_admin_context

TOPIC = "conductor"


class ConductorAPI:
    VERSION = "1.1"

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

    def report_heartbeat(self, host: str, binary: str, topic: str) -> None:
        """The heartbeat of a service without database access (a compute
        agent): fits :class:`flotilla.service.Heartbeat`."""
        self.service_heartbeat(get_admin_context(), host, binary, topic)

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

    # --- flows (1.1) ---------------------------------------------------------------

    def _cast(self, ctxt, method: str, version: str, **kwargs) -> None:
        self.client.prepare(version=version).cast(ctxt, method, **kwargs)

    def build_instances(self, ctxt: RequestContext, instance_uuids: list[str],
                        request_spec: dict[str, Any], image: dict | None) -> None:
        """Schedule and build instances the API has recorded (building /
        scheduling, with their create action under ``ctxt.request_id``).

        ``request_spec``: {"flavor": {memory_mb, vcpus, root_gb, ...},
        "image": {"id", "properties", "min_ram", "min_disk"},
        "availability_zone", "group", "num_instances"}; ``image``: the
        compute form {"id", "source", "sha256", "disk_format"} or None.
        """
        self._cast(ctxt, "build_instances", "1.1", instance_uuids=list(instance_uuids),
                   request_spec=request_spec, image=image)

    def build_failed(self, ctxt: RequestContext, instance_uuid: str, host: str,
                     reason: str) -> None:
        """A compute agent reports that spawning ``instance_uuid`` failed on
        ``host`` (send it with the build's context, instead of moving the
        instance to ERROR): the conductor records the fault, frees the
        claim and reschedules or ends the build in ERROR."""
        self._cast(ctxt, "build_failed", "1.1", instance_uuid=instance_uuid,
                   host=host, reason=reason)

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        """Terminate on the host, or clean up here when the instance never
        reached a (live) host."""
        self._cast(ctxt, "delete_instance", "1.1", instance_uuid=instance_uuid)
