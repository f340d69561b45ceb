"""What every API resource shares: configuration, RPC clients, helpers."""

from __future__ import annotations

import datetime

import falcon

from compute.rpcapi import ComputeAPI
from conductor.rpcapi import ConductorAPI
from flotilla.context import RequestContext
from flotilla.rpc.upgrade import version_cap
from volume.rpcapi import VolumeAPI


class APIState:
    """Configuration and the RPC clients, made once per app."""

    def __init__(self, conf, transport) -> None:
        self.conf = conf
        self.transport = transport
        self.conductor = ConductorAPI(transport, version_cap(conf, "conductor")) \
            if transport is not None else None
        self.compute = ComputeAPI(transport, version_cap(conf, "compute")) \
            if transport is not None else None
        self.volume = VolumeAPI(transport, version_cap(conf, "volume")) \
            if transport is not None else None

    def base_url(self, req: falcon.Request) -> str:
        """Where clients reach the API: [api] public_endpoint, else the
        request's own scheme and host."""
        endpoint = self.conf.api.public_endpoint
        return (endpoint or req.prefix).rstrip("/")

    def compute_url(self, req: falcon.Request) -> str:
        return self.base_url(req) + "/compute/v2.1"


def ctxt(req: falcon.Request) -> RequestContext:
    return req.context.ctxt


def version(req: falcon.Request) -> tuple[int, int]:
    return req.context.get("version") or (2, 1)


def isotime(value: datetime.datetime | None, micro: bool = False) -> str | None:
    """Nova's timestamp form: ``2024-01-02T03:04:05Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    if micro:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
