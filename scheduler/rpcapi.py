"""Client of the scheduler's RPC API (topic ``scheduler``).

Version history:

* 1.0 - select_destinations.
* 1.1 - select_destinations takes a RequestSpec object.
"""

from __future__ import annotations

from conductor.rpcapi import request_spec_1_1
from flotilla import rpc
from flotilla.context import RequestContext
from flotilla.objects import RequestSpec
from flotilla.rpc.upgrade import VersionCap

TOPIC = "scheduler"


class SchedulerAPI:
    VERSION = "1.1"

    def __init__(self, transport, version_cap: VersionCap = None,
                 timeout: float | None = None) -> None:
        self.client = rpc.RPCClient(transport, topic=TOPIC, version="1.0",
                                    version_cap=version_cap)
        self._timeout = timeout

    def select_destinations(self, ctxt: RequestContext, request_spec: RequestSpec,
                            instance_uuids: list[str],
                            excluded_hosts: list[str] | None = None) -> list[dict]:
        """Pick and claim one host per instance (a call).

        Returns ``[{"instance_uuid", "host", "nodename", "generation"}]`` in
        the order of ``instance_uuids``; the claims are made (consumer: the
        instance uuid) and the caller frees them if it gives up. Raises
        NoValidHost, whose message says which filters eliminated what.
        """
        version = "1.1" if self.client.can_send_version("1.1") else "1.0"
        cctx = self.client.prepare(version=version, timeout=self._timeout) \
            if self._timeout else self.client.prepare(version=version)
        spec = request_spec if version == "1.1" else request_spec_1_1(request_spec)
        return cctx.call(ctxt, "select_destinations", request_spec=spec,
                         instance_uuids=list(instance_uuids),
                         excluded_hosts=list(excluded_hosts or []))
