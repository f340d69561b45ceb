"""libvirt domain lifecycle events → Flotilla :class:`LifecycleEvent`.

libvirt calls back on its event-loop thread (a native thread, see host.py),
which must never block nor touch green-thread primitives. So the callback
only translates the event and appends it to a deque; a dispatcher spawned
with the process's concurrency backend hands queued events to the listener.
"""

from __future__ import annotations

import collections
import logging

import libvirt

from compute.virt import events
from compute.virt.libvirt.xml import volume_id_of_alias
from flotilla import concurrency

LOG = logging.getLogger(__name__)

# How long the dispatcher sleeps when the queue is empty. Polling keeps the
# native producer and a (possibly green) consumer free of shared locks.
_IDLE_POLL = 0.05


def translate(event: int, detail: int) -> str | None:
    """The Flotilla transition of a libvirt (event, detail), or None when
    the event does not change the power state (define, undefine, the
    SHUTDOWN notice that precedes STOPPED)."""
    if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
        return events.STARTED
    if event == libvirt.VIR_DOMAIN_EVENT_RESUMED:
        return events.RESUMED
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
        return events.PAUSED
    if event == libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED:
        return events.SUSPENDED
    if event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
        return events.CRASHED
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
            return events.SUSPENDED
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED:
            return events.CRASHED
        return events.STOPPED
    return None


class EventDispatcher:
    """Queue of lifecycle events between libvirt's thread and a listener."""

    def __init__(self) -> None:
        self._queue: collections.deque = collections.deque()
        self._listener: events.EventListener | None = None
        self._removing: dict[tuple[str, str], str] = {}
        self._running = False

    def set_listener(self, listener: events.EventListener | None) -> None:
        self._listener = listener

    def start(self) -> None:
        if not self._running:
            self._running = True
            concurrency.spawn(self._dispatch_loop)

    def stop(self) -> None:
        self._running = False

    def on_libvirt_event(self, conn, dom, event, detail, opaque) -> None:
        """virConnectDomainEventCallback; runs on libvirt's loop thread."""
        transition = translate(event, detail)
        if transition is not None:
            # UUIDString() reads the handle, no round trip to the daemon.
            self._queue.append(events.LifecycleEvent(dom.UUIDString(),
                                                     transition))

    def on_device_removed(self, conn, dom, dev_alias, opaque) -> None:
        """virConnectDomainEventDeviceRemovedCallback (libvirt's loop
        thread): a volume's disk (alias ua-<volume id>) left the guest."""
        volume_id = volume_id_of_alias(dev_alias or "")
        if volume_id is not None:
            uuid = dom.UUIDString()
            # The event names the alias only; the guest's device name is the
            # one the detach request recorded.
            device = self._removing.pop((uuid, volume_id), "")
            self._queue.append(events.DeviceRemovedEvent(uuid, volume_id, device))

    def on_io_error(self, conn, dom, src_path, dev_alias, action, reason,
                    opaque) -> None:
        """virConnectDomainEventIOErrorReasonCallback (libvirt's loop
        thread): a disk's request failed; for a volume disk (error policy
        stop, see templates/nbd-disk.xml) the guest paused."""
        volume_id = volume_id_of_alias(dev_alias or "")
        if volume_id is not None and action == libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE:
            self._queue.append(events.VolumeIOErrorEvent(dom.UUIDString(), volume_id))

    def expect_removal(self, instance_uuid: str, volume_id: str, device: str) -> None:
        """A detach of ``volume_id`` (guest device ``device``) was asked for."""
        self._removing[(instance_uuid, volume_id)] = device

    def emit(self, event: events.Event) -> None:
        """Queue an event made by the driver itself (see volumes.py)."""
        self._queue.append(event)

    def _dispatch_loop(self) -> None:
        while self._running:
            try:
                event = self._queue.popleft()
            except IndexError:
                concurrency.sleep(_IDLE_POLL)
                continue
            listener = self._listener
            if listener is None:
                continue
            try:
                listener(event)
            except Exception:  # a listener bug must not stop the events
                LOG.exception("lifecycle event listener failed on %s", event)
