"""flotilla-api: the compute, identity and image HTTP APIs.

Serves :func:`api.app.create_app` with waitress (api.wsgi_server) on
``[api] bind_host``:``[api] bind_port`` with ``[api] workers`` threads.
"""

from __future__ import annotations

import sys

from flotilla import binaries, service


def make_services(conf) -> list:
    from api.app import create_app
    from api.wsgi_server import WSGIService
    from flotilla import rpc
    from flotilla.db import api as db
    from flotilla.db import schema
    db.configure(conf)
    schema.check_synced()
    transport = rpc.get_transport(conf)
    app = create_app(conf, transport)
    return [WSGIService.from_conf(app, conf, on_stop=transport.cleanup)]


def main(argv: list[str] | None = None) -> int:
    return service.run_daemon(binaries.API, make_services, argv)


if __name__ == "__main__":
    sys.exit(main())
