"""Client of the scheduler's RPC API (topic ``scheduler``).

Version history:

* 1.0 - select_destinations.
"""

from __future__ import annotations

from typing import Any

from flotilla import rpc
from flotilla.context import RequestContext

TOPIC = "scheduler"


class SchedulerAPI:
    VERSION = "1.0"

    def __init__(self, transport, version_cap: str | None = None,
                 timeout: float | None = None) -> None:
        self.client = rpc.RPCClient(transport, topic=TOPIC, version="1.0",
                                    version_cap=version_cap)
        self._timeout = timeout

    def select_destinations(self, ctxt: RequestContext, request_spec: dict[str, Any],
                            instance_uuids: list[str],
                            excluded_hosts: list[str] | None = None) -> list[dict]:
        """Pick and claim one host per instance (a call).

        Returns ``[{"instance_uuid", "host", "nodename", "generation"}]`` in
        the order of ``instance_uuids``; the claims are made (consumer: the
        instance uuid) and the caller frees them if it gives up. Raises
        NoValidHost, whose message says which filters eliminated what.
        """
        cctx = self.client.prepare(timeout=self._timeout) if self._timeout \
            else self.client
        return cctx.call(ctxt, "select_destinations", request_spec=request_spec,
                         instance_uuids=list(instance_uuids),
                         excluded_hosts=list(excluded_hosts or []))
