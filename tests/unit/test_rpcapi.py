"""Every service's rpcapi against its manager: versions agree, every message
an rpcapi method sends is one the manager's dispatcher accepts (method,
version, arguments), at every version cap down to 1.0.

The messages go through the real client, envelope and dispatcher; only the
wire is replaced by a driver that dispatches to an endpoint shaped from the
manager class (tests/fixtures/recording_endpoint.py).
"""

from __future__ import annotations

import inspect
import types
import uuid

import pytest

from compute.manager import ComputeManager
from compute.rpcapi import ComputeAPI
from conductor.manager import ConductorManager
from conductor.rpcapi import ConductorAPI
from flotilla import exception, service
from flotilla.context import RequestContext
from flotilla.objects import BlockDeviceMapping, Flavor, ImageMeta, RequestSpec
from flotilla.rpc import envelope, transport, versioning
from flotilla.rpc.dispatcher import Dispatcher, rpc_methods
from scheduler.manager import SchedulerManager
from scheduler.rpcapi import SchedulerAPI
from tests.fixtures.recording_endpoint import recording_endpoint
from volume.manager import VolumeManager
from volume.rpcapi import VolumeAPI

SERVICES = [(ComputeAPI, ComputeManager, "compute"),
            (ConductorAPI, ConductorManager, "conductor"),
            (SchedulerAPI, SchedulerManager, "scheduler"),
            (VolumeAPI, VolumeManager, "volume")]

# A value for every argument name an rpcapi method takes.
SAMPLES = {
    "ctxt": RequestContext(request_id="req-1"),
    "host": "host1", "instance_uuid": str(uuid.uuid4()),
    "instance_uuids": [str(uuid.uuid4())], "binary": "flotilla-compute",
    "topic": "compute", "rpc_version": "1.1", "read_deleted": False,
    "values": {"task_state": None}, "expected": {"task_state": None},
    "code": 500, "message": "m", "details": "d", "traceback": "t", "action": "stop",
    "event": "compute_stop_instance", "result": "Success", "resources": {"vcpus": 1},
    "request_spec": RequestSpec(flavor=Flavor(memory_mb=64), image=ImageMeta(id="i")),
    "image": ImageMeta(id="i", source="http://x", sha256="0" * 64),
    "excluded_hosts": ["host2"], "reboot_type": "HARD", "length": 10,
    "error": "spawn failed", "reason": "r",
    "image_id": str(uuid.uuid4()), "upload_url": "http://x/v2/images/i/file?signature=s",
    "base_image": ImageMeta(id="i", sha256="0" * 64), "power_on": False,
    "backup_type": "daily", "rotation": 2,
    "volume_id": str(uuid.uuid4()), "attachment_id": str(uuid.uuid4()),
    "connection": {"volume_id": "v", "export": "v", "host": "127.0.0.1", "port": 10809},
    "device_name": None, "timeout": 30, "new_size_gb": 2, "old_size_gb": 1,
    "new_size_bytes": 2 << 30,
    "migration_uuid": str(uuid.uuid4()), "force": False,
    "migrate_data": {"live": True, "source_host": "host1"},
    "progress": {"memory_total_bytes": 1},
    "flavor": {"flavorid": "2", "name": "bigger", "memory_mb": 128, "vcpus": 1, "root_gb": 2},
    "snapshot_id": str(uuid.uuid4()), "from_source": True, "blank": True, "snapshot": True,
    "from_volume": True,
    "volume_backed": True, "reimage_boot_volume": True,
    "block_device_mapping": [BlockDeviceMapping(
        source_type="image", destination_type="volume", boot_index=0, volume_size=1,
        image_id="i", volume_id="v", connection_info={
            "volume_id": "v", "export": "v", "host": "127.0.0.1", "port": 10809})],
}
# rpcapi helpers that are not RPC methods of their own.
NOT_SENDING = {"report_heartbeat"}


class DispatchingDriver:
    """A wire that hands each message to a dispatcher at once."""

    reply_to = "reply-queue"

    def __init__(self, endpoint, topic: str, options: transport.Options) -> None:
        self.dispatcher = Dispatcher([endpoint], topic)
        self.options = options
        self.sent: list[tuple[str, str]] = []
        self.timeouts: list[float] = []

    def _dispatch(self, body: bytes):
        request = envelope.decode_request(body, key=None,
                                          max_size=self.options.max_message_size)
        self.sent.append((request.method, request.version))
        return request, self.dispatcher.dispatch(request)

    def cast(self, target, body, method) -> None:
        self._dispatch(body)

    def call(self, target, body, correlation_id, method, timeout) -> bytes:
        self.timeouts.append(timeout)
        request, result = self._dispatch(body)
        return envelope.encode(envelope.build_reply(request.msg_id, result=result), None)


def _client(api_class, manager_class, topic, cap):
    options = transport.Options(control_exchange="x", call_timeout=5, signing_key=None,
                                heartbeat=0, quorum_queues=False, executor_pool_size=1,
                                max_message_size=1 << 20, reconnect_max_delay=1,
                                reconnect_timeout=1, cast_ttl=60)
    driver = DispatchingDriver(recording_endpoint(manager_class), topic, options)
    return api_class(transport.Transport("memory://", options, driver),
                     version_cap=cap), driver


def _sending_methods(api_class):
    return {name: func for name, func in inspect.getmembers(api_class, inspect.isfunction)
            if not name.startswith("_") and name not in NOT_SENDING}


def _args(func):
    params = list(inspect.signature(func).parameters.values())[1:]
    missing = [p.name for p in params if p.name not in SAMPLES]
    assert not missing, "add samples for %s to SAMPLES" % missing
    return {p.name: SAMPLES[p.name] for p in params}


def _caps(version: str) -> list[str]:
    major, minor = versioning.parse(version)
    return ["%d.%d" % (major, m) for m in range(minor + 1)]


@pytest.mark.parametrize("api_class, manager_class, topic", SERVICES,
                         ids=[s[2] for s in SERVICES])
def test_rpcapi_version_is_the_managers(api_class, manager_class, topic):
    assert api_class.VERSION == manager_class.RPC_API_VERSION


@pytest.mark.parametrize("api_class, manager_class, topic", SERVICES,
                         ids=[s[2] for s in SERVICES])
def test_every_rpcapi_method_reaches_its_manager_at_every_cap(api_class, manager_class,
                                                              topic):
    manager_methods = rpc_methods(manager_class)
    for name, func in _sending_methods(api_class).items():
        for cap in [None, *_caps(api_class.VERSION)]:
            api, driver = _client(api_class, manager_class, topic, cap)
            try:
                getattr(api, name)(**_args(func))
            except exception.UnsupportedVersion as exc:
                # Refusing is allowed only below the cap the method needs,
                # and locally: nothing may have been sent.
                assert cap is not None and driver.sent == [], (name, cap, exc)
                continue
            for method, version in driver.sent:
                assert method in manager_methods, (name, method)
                # Never more than the rpcapi's VERSION, never above the cap.
                assert versioning.within_cap(version, api_class.VERSION), (name, version)
                assert versioning.within_cap(version, cap), (name, version, cap)


@pytest.mark.parametrize("api_class, manager_class, topic", SERVICES,
                         ids=[s[2] for s in SERVICES])
def test_every_manager_method_has_an_rpcapi_method(api_class, manager_class, topic):
    api_methods = set(_sending_methods(api_class))
    # Forms kept for older senders are served without a client method.
    legacy = {"build_failed"}
    assert set(rpc_methods(manager_class)) - legacy <= api_methods


def test_a_heartbeat_waits_for_its_answer_only_as_long_as_it_is_given():
    # RPC is at most once: a heartbeat a dying conductor took is never
    # answered, and waiting call_timeout for it would make the host look down.
    api, driver = _client(ConductorAPI, ConductorManager, "conductor", None)
    api.report_heartbeat("host1", "flotilla-compute", "compute", "1.11", timeout=3.5)
    api.report_heartbeat("host1", "flotilla-compute", "compute", "1.11")
    assert driver.sent == [("service_heartbeat", "1.2")] * 2
    assert driver.timeouts == [3.5, 5]     # given; else the client's call_timeout


@pytest.mark.parametrize("report_interval, service_down_time, call_timeout, expected", [
    (10, 60, 60, 20.0),     # the defaults: a third of service_down_time
    (2, 10, 60, 2 + 4 / 3),  # the rig's
    (30, 60, 60, 30.0),     # never shorter than the interval between two
    (10, 600, 60, 60.0),    # never longer than any call
])
def test_heartbeat_timeout_leaves_room_for_the_next_heartbeat(
        report_interval, service_down_time, call_timeout, expected):
    conf = types.SimpleNamespace(report_interval=report_interval,
                                 service_down_time=service_down_time,
                                 rpc=types.SimpleNamespace(call_timeout=call_timeout))
    assert service.heartbeat_timeout(conf) == pytest.approx(expected)
