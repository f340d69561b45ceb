"""Who may use which flavor, and how much disk a boot claims.

Rules (Nova's):

* a private flavor is visible and usable only by admins and the projects on
  its access list (os-flavor-access); to anyone else it does not exist: 404
  on show, absent from lists, 400 "could not be found" on boot or resize;
* the root disk of a server is the flavor's ``disk``; an image whose virtual
  size (or, when unknown, its file size) exceeds it is refused (400);
* a flavor with ``disk`` 0 boots on a disk as large as the image declares:
  allowed only by the named rule ``os_compute_api:servers:create:
  zero_disk_flavor`` (admins by default: 403 for others), and the boot claims
  that size, rounded up to whole GiB, from the host.
"""

from __future__ import annotations

import math

from api import errors, policy
from flotilla import exception
from flotilla.db import api as db

ZERO_DISK_RULE = "os_compute_api:servers:create:zero_disk_flavor"
GiB = 1024 ** 3


def visible(ctx, flavor) -> bool:
    if ctx.is_admin:
        return True
    return not flavor.disabled and db.flavor_accessible(flavor, ctx.project_id)


def usable_flavor(ctx, ref) -> object:
    """The flavor a boot or resize by ``ctx`` names (by id or link); 400
    when it is missing, disabled or not accessible to the project."""
    flavorid = str(ref).rstrip("/").rsplit("/", 1)[-1]
    try:
        flavor = db.flavor_get(flavorid)
    except exception.FlavorNotFound:
        flavor = None
    if flavor is None or not (ctx.is_admin or db.flavor_accessible(flavor, ctx.project_id)):
        raise errors.bad_request("Flavor %s could not be found." % flavorid[:64])
    if flavor.disabled:
        raise errors.bad_request("Flavor %s is disabled." % flavorid[:64])
    return flavor


def root_disk_gb(ctx, conf, flavor, image) -> int:
    """The root disk (GiB) a boot of ``image`` on ``flavor`` claims; 400/403
    per the module rules."""
    image_bytes = int(getattr(image, "virtual_size", None) or image.size or 0)
    if flavor.root_gb:
        if (image.min_disk or 0) > flavor.root_gb or image_bytes > flavor.root_gb * GiB:
            raise errors.bad_request("Flavor's disk is too small for requested image.")
        return flavor.root_gb
    if not policy.allowed(ZERO_DISK_RULE, ctx, conf):
        raise errors.forbidden("Only volume-backed servers are allowed for flavors "
                               "with zero disk.")
    return max(int(image.min_disk or 0), math.ceil(image_bytes / GiB), 1)
