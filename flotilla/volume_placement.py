"""Where a new volume goes and what it keeps of its image; shared by the
Block Storage API (a volume create) and the conductor's build flow (a
boot volume made from an image, issue 11).

Rules:

* a new volume goes on the up, enabled volume host with the most free
  space that can hold it (ties: the first host by name); None when no
  volume service is up, :class:`NotEnoughSpace` (413 at the API, with the
  largest free space there is) when services are up but none can hold it;
* the space of a host is Cinder's thin-provisioning rule (its
  CapacityFilter and CapacityWeigher with ``max_over_subscription_ratio``
  = ``[volume] max_over_subscription_ratio``): a volume of S GiB fits when
  ``provisioned + S <= total x ratio`` and ``S <= free x ratio``; its free
  space is ``min(total x ratio - provisioned, free x ratio)``. ``total``
  and ``free`` are what the host's backend last reported
  (flotilla.db.volume_capacity); ``provisioned`` is the sum of the sizes of
  the host's live volumes and snapshots read from the database at the time
  of the decision. Why this rule and not "reported free bytes minus what
  was created since": pool volumes are sparse files, so creating one
  lowers the backend's free bytes by nothing and a burst of creates
  between two reports would all see the same free space (the pool
  silently overcommitted); the provisioned sum moves the moment a volume
  is recorded, and with the default ratio 1.0 the sizes on a host never
  exceed its backend's size. The ``free x ratio`` bound still refuses a
  host whose filesystem other files have filled;
* a host that never reported (a volume service older than the report, or
  whose first report failed) has unknown space: it is used only when no
  host that reported can hold the volume;
* a volume made from an image keeps the image's metadata as Cinder shows
  it (``volume_image_metadata``: string values).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from flotilla import binaries, exception
from flotilla.db import api as db
from flotilla.db import volume_capacity as capdb
from flotilla.db.images import INTERNAL_PROPERTIES

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3


class NotEnoughSpace(exception.FlotillaException):
    msg_fmt = "%(reason)s"
    code = 413


@dataclasses.dataclass(frozen=True)
class HostSpace:
    """One volume host's space, in GiB."""

    host: str
    total_gb: float
    free_gb: float
    provisioned_gb: int
    ratio: float

    @property
    def virtual_free_gb(self) -> float:
        """What a new volume may still take here (Cinder's virtual free)."""
        return min(self.total_gb * self.ratio - self.provisioned_gb,
                   self.free_gb * self.ratio)

    def fits(self, size_gb: int) -> bool:
        return (self.provisioned_gb + size_gb <= self.total_gb * self.ratio
                and size_gb <= self.free_gb * self.ratio)

    def describe(self) -> str:
        return ("%s: %.1f GiB free (backend %.1f of %.1f GiB free, %d GiB provisioned, "
                "max_over_subscription_ratio %g)" % (
                    self.host, max(self.virtual_free_gb, 0.0), self.free_gb,
                    self.total_gb, self.provisioned_gb, self.ratio))


def rank_hosts(spaces: list[HostSpace], size_gb: int) -> list[HostSpace]:
    """The hosts that can hold ``size_gb``, the most free space first."""
    return sorted((s for s in spaces if s.fits(size_gb)),
                  key=lambda s: (-s.virtual_free_gb, s.host))


def up_volume_hosts(conf: cfg.ConfigOpts) -> list[str]:
    """The up, enabled volume hosts, by name."""
    return sorted(s.host for s in db.service_get_all(binary=binaries.VOLUME)
                  if not s.disabled and db.service_is_up(s, conf.service_down_time))


def host_spaces(conf: cfg.ConfigOpts, hosts: list[str]) -> dict[str, HostSpace]:
    """The space of each of ``hosts`` that reported one."""
    reports = capdb.capacity_get_all(hosts)
    provisioned = capdb.provisioned_gb(list(reports))
    ratio = conf.volume.max_over_subscription_ratio
    return {h: HostSpace(h, r.total_bytes / GIB, r.free_bytes / GIB,
                         provisioned.get(h, 0), ratio) for h, r in reports.items()}


def _no_space(size_gb: int, spaces: list[HostSpace]) -> NotEnoughSpace:
    best = max(spaces, key=lambda s: (s.virtual_free_gb, s.host))
    return NotEnoughSpace(reason="Requested volume size %d GiB is larger than the free "
                          "space of every volume host; the most is on %s"
                          % (size_gb, best.describe()))


def pick_volume_host(conf: cfg.ConfigOpts, size_gb: int = 0) -> str | None:
    """The up volume host with the most free space that can hold
    ``size_gb`` GiB; None when no enabled volume service is up; NotEnoughSpace
    (naming the largest free space) when none can hold it."""
    hosts = up_volume_hosts(conf)
    if not hosts:
        return None
    spaces = host_spaces(conf, hosts)
    ranked = rank_hosts(list(spaces.values()), size_gb)
    if ranked:
        return ranked[0].host
    unknown = [h for h in hosts if h not in spaces]
    if unknown:
        LOG.warning("no volume host that reported its space can hold %d GiB: %s, whose "
                    "space is unknown (no report yet), is used", size_gb, unknown[0])
        return unknown[0]
    raise _no_space(size_gb, list(spaces.values()))


def space_guard(conf: cfg.ConfigOpts, host: str, size_gb: int) -> Callable[[Any], None]:
    """A check for an insert that takes ``size_gb`` on ``host``
    (flotilla.db.volumes.volume_create's ``check``): in the insert's
    transaction, serialised per host, the host must still hold it
    (NotEnoughSpace otherwise), so two creates that picked the same host
    at once cannot both take its last space."""
    def check(session) -> None:
        capdb.lock_host(session, host)
        report = capdb.capacity_get(host, session)
        if report is None:
            return      # space unknown (see pick_volume_host)
        space = HostSpace(host, report.total_bytes / GIB, report.free_bytes / GIB,
                          capdb.provisioned_gb([host], session).get(host, 0),
                          conf.volume.max_over_subscription_ratio)
        if not space.fits(size_gb):
            raise NotEnoughSpace(reason="Requested size %d GiB is larger than the "
                                 "free space of volume host %s"
                                 % (size_gb, space.describe()))
    return check


def check_host_space(conf: cfg.ConfigOpts, host: str, size_gb: int,
                     why: str = "where its source is") -> None:
    """NotEnoughSpace when ``host`` (the only host that can take the GiB:
    where the source of a new volume is, or the volume an extend grows)
    reported a space that cannot hold ``size_gb`` more; ``why`` says why
    that host."""
    space = host_spaces(conf, [host]).get(host)
    if space is not None and not space.fits(size_gb):
        raise NotEnoughSpace(reason="Requested %d GiB is larger than the free space of "
                             "volume host %s, %s" % (size_gb, space.describe(), why))


def image_metadata(image: Any) -> dict[str, str]:
    """An image's metadata as a volume made from it keeps it."""
    meta = {"image_id": image.id, "image_name": image.name or "",
            "checksum": image.checksum or "", "container_format": image.container_format
            or "", "disk_format": image.disk_format or "", "min_disk": str(image.min_disk),
            "min_ram": str(image.min_ram), "size": str(image.size or 0)}
    for key, value in (image.properties or {}).items():
        if key in INTERNAL_PROPERTIES:
            continue    # Flotilla's own bookkeeping, not the image's properties
        meta.setdefault(str(key), value if isinstance(value, str) else str(value))
    return meta
