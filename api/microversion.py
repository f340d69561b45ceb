"""Compute API microversions.

Rules (as Nova):

* the client asks with ``OpenStack-API-Version: compute X.Y`` (or the
  legacy ``X-OpenStack-Nova-API-Version: X.Y``); ``latest`` means
  :data:`MAX`; no header means :data:`MIN`;
* a version outside [MIN, MAX] is 406, a malformed one 400;
* every compute response echoes the version in both headers with
  ``Vary`` naming them, so caches keep representations apart.

Representations that change with the version (kept honest up to MAX):
2.9 ``locked``; 2.16 ``host_status``; 2.19 ``description``; 2.26 ``tags``;
2.47 flavor embedded in the server; 2.53 services updated by id; 2.55
flavor ``description``; 2.58 instance action ``updated_at``; 2.61 flavor
``extra_specs``; 2.62 event ``host``/``hostId``; 2.64 server group
``policy``/``rules``; 2.73 ``locked_reason``; 2.75 flavor ``swap`` 0;
2.88 hypervisors without resource figures; 2.96
``pinned_availability_zone``; 2.98 image properties in the server; 2.100
``scheduler_hints`` in the server.
"""

from __future__ import annotations

import functools
import re

from api import errors

MIN = (2, 1)
MAX = (2, 100)

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
VARY = "%s, %s" % (HEADER, LEGACY_HEADER)

# Bounded digits: a 5000-digit number would be refused by int() itself.
_VERSION = re.compile(r"([1-9]\d{0,3})\.(0|[1-9]\d{0,3})")


def to_str(version: tuple[int, int]) -> str:
    return "%d.%d" % version


@functools.lru_cache(maxsize=512)
def parse(value: str) -> tuple[int, int]:
    """``X.Y`` or ``latest`` to a version tuple; APIError 400/406."""
    value = value.strip()
    if value.lower() == "latest":
        return MAX
    match = _VERSION.fullmatch(value)
    if not match:
        raise errors.bad_request(
            "Invalid compute API version %r: expected X.Y or latest" % value[:40])
    version = (int(match.group(1)), int(match.group(2)))
    if not MIN <= version <= MAX:
        raise errors.APIError(
            406, "Version %s is not supported by the API. Minimum is %s and "
            "maximum is %s." % (value, to_str(MIN), to_str(MAX)))
    return version


def from_headers(headers: dict[str, str]) -> tuple[int, int]:
    """The version a request asks for (``headers`` keys upper-case, as
    Falcon gives them)."""
    value = headers.get(HEADER.upper())
    if value:
        for part in value.split(","):
            service, _, version = part.strip().partition(" ")
            if service.lower() == "compute":
                return parse(version)
    legacy = headers.get(LEGACY_HEADER.upper())
    if legacy:
        return parse(legacy)
    return MIN


def response_headers(version: tuple[int, int]) -> dict[str, str]:
    text = to_str(version)
    return {HEADER: "compute " + text, LEGACY_HEADER: text, "Vary": VARY}
