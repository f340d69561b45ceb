"""RPC API versions: "MAJOR.MINOR" strings and their compatibility rule.

Rules:

* A version is exactly two non-negative integers joined by a dot.
* A server speaking ``S`` handles a request for ``R`` when the majors are
  equal and ``R.minor <= S.minor``: a minor bump only adds methods or
  optional arguments, a major bump breaks the interface.
* A client with a ``version_cap`` never sends a version above the cap (so a
  new service can talk to old ones during an upgrade).
"""

from __future__ import annotations

import re

from flotilla import exception

_VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")


def parse(version: str) -> tuple[int, int]:
    """(major, minor) of ``version``; InvalidMessage when malformed."""
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    if not match:
        raise exception.InvalidMessage(
            reason="bad version string %r" % (version,))
    return int(match.group(1)), int(match.group(2))


def is_compatible(server_version: str, requested: str) -> bool:
    """True when a server at ``server_version`` can handle ``requested``."""
    s_major, s_minor = parse(server_version)
    r_major, r_minor = parse(requested)
    return s_major == r_major and r_minor <= s_minor


def within_cap(version: str, cap: str | None) -> bool:
    """True when ``version`` may be sent under ``cap`` (None: no cap)."""
    if cap is None:
        return True
    return parse(version) <= parse(cap)
