"""flotilla-all: every Flotilla service in one process, the embedded default.

With no configuration at all it runs on the ``memory://`` transport, an
SQLite file under ``[DEFAULT] state_path`` and, for each name in ``[all]
hosts``, a compute agent on libvirt's ``test:///default`` (or the URI
``[all] connection_uris`` gives that host); the API listens on 127.0.0.1. No
broker and no libvirtd are needed. On first start it migrates the database
and creates an ``admin`` user in an ``admin`` project, whose password it keeps
in ``[all] admin_password_file``; it prints how to reach the cloud.
"""

from __future__ import annotations

import functools
import os
import secrets
import sys

from flotilla import binaries, service


def _defaults(conf) -> None:
    # Embedded defaults; a config file still wins over every one of them.
    conf.set_default("bind_host", "127.0.0.1", group="api")
    conf.set_default("compute_driver", "libvirt", group="compute")


def make_services(conf) -> list:
    from api.app import create_app
    from api.wsgi_server import WSGIService
    from compute.manager import ComputeManager
    from compute.virt.libvirt.driver import LibvirtDriver
    from conductor.manager import ConductorManager
    from conductor.rpcapi import ConductorAPI
    from flotilla import rpc
    from flotilla.db import api as db
    from flotilla.db import schema
    from flotilla.rpc.upgrade import version_cap
    from scheduler.manager import SchedulerManager

    os.makedirs(conf.state_path, mode=0o700, exist_ok=True)
    if not conf.api.public_endpoint:
        conf.set_override("public_endpoint", "http://%s:%d" % (
            conf.api.bind_host, conf.api.bind_port), group="api")
    if not (conf.image.download_signing_key or conf.rpc.signing_key):
        # One process: a key nobody else needs to know, new at each start.
        conf.set_override("download_signing_key", secrets.token_hex(32), group="image")
    db.configure(conf)
    schema.db_sync(conf)
    password = _ensure_admin(conf)

    transport = rpc.get_transport(conf)
    conductor = ConductorAPI(transport, version_cap(conf, "conductor"))

    services = [
        # Stopped last (services stop in reverse order): it closes the
        # transport every service shares.
        service.Service(conf, binaries.CONDUCTOR, "conductor", ConductorManager(conf, transport),
                        transport=transport, close_transport=True),
        service.Service(conf, binaries.SCHEDULER, "scheduler", SchedulerManager(conf),
                        transport=transport),
    ]
    for host in conf.all.hosts:
        uri = conf.all.connection_uris.get(host, "test:///default")
        driver = LibvirtDriver(conf, connection_uri=uri, instances_path=os.path.join(
            conf.libvirt.instances_path, host))
        services.append(service.Service(
            conf, binaries.COMPUTE, "compute",
            ComputeManager(conf, driver, conductor, host=host),
            transport=transport,
            heartbeat=functools.partial(conductor.report_heartbeat,
                                        timeout=service.heartbeat_timeout(conf)),
            per_host=True, host=host))
    if conf.all.volume_host:
        from volume.manager import VolumeManager
        services.append(service.Service(
            conf, binaries.VOLUME, "volume",
            VolumeManager(conf, host=conf.all.volume_host), transport=transport,
            per_host=True, host=conf.all.volume_host))
    api = WSGIService.from_conf(create_app(conf, transport), conf)
    services.append(_APIWithBanner(api, conf, password))
    return services


def _ensure_admin(conf) -> str | None:
    """Create admin/admin on first start; the new password, else None."""
    from flotilla.db import identity
    path = conf.all.admin_password_file
    try:
        identity.user_get("admin")
        return None
    except identity.UserNotFound:
        password = secrets.token_urlsafe(18)
    try:
        identity.project_get("admin")
    except identity.ProjectNotFound:
        identity.project_create("admin", description="flotilla-all administrators")
    identity.user_create("admin", password, default_project="admin")
    identity.role_add("admin", "admin", "admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


class _APIWithBanner:
    """The API server; once it listens, print how to reach the cloud.

    Printed on stdout for the person who started it, never logged: the
    password appears only the first time, after that the file is named.
    """

    def __init__(self, api, conf, password: str | None) -> None:
        self.api = api
        self.conf = conf
        self.password = password

    def start(self) -> None:
        self.api.start()
        endpoint = "http://%s:%d" % (self.conf.api.bind_host, self.api.port)
        secret = (self.password if self.password is not None
                  else "$(cat %s)" % self.conf.all.admin_password_file)
        print("\nFlotilla is running: %d compute hosts (%s), API on %s\n"
              "  export OS_AUTH_URL=%s/identity/v3 OS_USERNAME=admin "
              "OS_PROJECT_NAME=admin\n"
              "  export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default\n"
              "  export OS_PASSWORD=%s\n"
              "  flotilla server list      # or: openstack server list\n"
              "Stop with Ctrl-C.\n"
              % (len(self.conf.all.hosts), ", ".join(self.conf.all.hosts), endpoint,
                 endpoint, secret), flush=True)

    def stop(self, grace: float | None = None) -> bool:
        return self.api.stop(grace)

    def alive(self, within: float) -> bool | str:
        return self.api.alive(within)


def main(argv: list[str] | None = None) -> int:
    from flotilla.conf import CONF
    _defaults(CONF)
    return service.run_daemon("flotilla-all", make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
