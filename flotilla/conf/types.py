"""Option types shared by several groups."""

from __future__ import annotations

import urllib.parse

from oslo_config import types

TRANSPORT_SCHEMES = ("rabbit", "amqp", "memory")


class TransportURL(types.String):
    """A messaging URL: ``rabbit://user:pass@host:port/vhost`` or ``memory://``.

    Several ``host:port`` pairs may be given comma-separated after the
    credentials (``rabbit://u:p@h1:5672,h2:5672/``) for failover.  The error
    raised for a bad value never repeats the value, because it may carry a
    password.
    """

    def __init__(self) -> None:
        super().__init__(type_name="transport URL")

    def __call__(self, value):
        value = super().__call__(value)
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in TRANSPORT_SCHEMES:
            raise ValueError(
                "scheme %r is not one of %s"
                % (parsed.scheme, ", ".join(TRANSPORT_SCHEMES)))
        if parsed.scheme != "memory":
            hosts = parsed.netloc.rpartition("@")[2]
            if not hosts:
                raise ValueError("no broker host given")
            for hostport in hosts.split(","):
                host, _, port = hostport.rpartition(":") if ":" in hostport \
                    else (hostport, "", "")
                if not host:
                    raise ValueError("empty broker host")
                if port and not port.isdigit():
                    raise ValueError("port %r is not a number" % port)
        return value

    def __repr__(self) -> str:
        return "TransportURL"


class DatabaseURL(types.String):
    """An SQLAlchemy URL on a backend Flotilla supports (sqlite, postgresql)."""

    SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")

    def __init__(self) -> None:
        super().__init__(type_name="database URL")

    def __call__(self, value):
        value = super().__call__(value)
        scheme = value.partition(":")[0]
        if "://" not in value or scheme not in self.SCHEMES:
            raise ValueError(
                "not a URL of a supported backend (%s)" % ", ".join(self.SCHEMES))
        return value

    def __repr__(self) -> str:
        return "DatabaseURL"
