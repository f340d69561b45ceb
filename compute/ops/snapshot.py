"""The agent's part of a snapshot (createImage, createBackup).

Rules:

* the conductor's snapshot flow sends ``snapshot_instance`` with the image
  id, a signed upload URL (for that image, once; the agent holds no token)
  and the image the server's disk came from; the work runs on a pool of
  ``[compute] max_concurrent_snapshots`` workers, not on an RPC worker;
* the server must be on this host in task ``image_snapshot``; the driver
  copies its disk under the instance's lock (the guest is never paused)
  into ``<[compute] snapshots_directory>/<host>/<image id>.qcow2``; once
  the guest's disk is copied the task becomes ``image_pending_upload``
  (the copy is being flattened), then ``image_uploading`` while the file
  is streamed to the image API, each a compare-and-swap: a server that
  left its snapshot task (deleted meanwhile) ends the snapshot;
* whatever happens the file is removed and the outcome is reported with
  conductor ``snapshot_done`` (for administrators what failed, for the
  server's owner why, in words that name no host or path); the flow then
  makes the image active or removes it and clears the task;
* the upload URL is a secret: it is never logged nor put in a message;
* after a crash, :meth:`SnapshotOps.clean_directory` (at start-up, before
  any snapshot can run) removes what the dead agent left, and
  :meth:`SnapshotOps.recover` ends the driver's leftovers of one server and
  reports the snapshot failed.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import time
import urllib.parse

from oslo_config import cfg

from compute.lifecycle import Lifecycle
from flotilla import actions, concurrency, exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.objects import ImageMeta, Instance

LOG = logging.getLogger(__name__)

ACTION = st.operation("snapshot").action
_CHUNK = 1024 * 1024
_MIB = 1024 * 1024


class SnapshotAbandoned(exception.FlotillaException):
    """The snapshot cannot go on; ``public`` says why to the owner."""

    msg_fmt = "%(reason)s"
    public_msg = "The snapshot of the server failed."

    def __init__(self, public: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if public:
            self.public_msg = public


class UploadFailed(SnapshotAbandoned):
    msg_fmt = "Upload of image %(image_id)s failed: %(reason)s"


# What the image API's answer to an upload means for the server's owner.
_UPLOAD_ANSWERS = {
    404: "The image was deleted before the snapshot was uploaded.",
    409: "The image changed before the snapshot was uploaded.",
    403: "The upload permission of the snapshot expired before it was used.",
    413: "The snapshot is larger than the image service accepts.",
}


def upload_file(url: str, path: str, bandwidth_mib: int = 0, timeout: float = 300) -> None:
    """PUT the file ``path`` to ``url`` (the signed upload URL) with its
    Content-Length, at most ``bandwidth_mib`` MiB/s when non-zero.
    UploadFailed on any answer but 204 or a broken connection; the error
    never contains the URL."""
    parsed = urllib.parse.urlsplit(url)
    image_id = parsed.path.rstrip("/").split("/")[-2]
    connection_class = (http.client.HTTPSConnection if parsed.scheme == "https"
                        else http.client.HTTPConnection)
    size = os.path.getsize(path)
    conn = connection_class(parsed.hostname, parsed.port, timeout=timeout)
    try:
        conn.putrequest("PUT", parsed.path + "?" + parsed.query)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        started = time.monotonic()
        sent = 0
        with open(path, "rb") as f:
            if not bandwidth_mib and parsed.scheme != "https":
                # Unlimited: the kernel sends the file (no copy through here).
                conn.sock.sendfile(f)
            while chunk := f.read(_CHUNK):
                conn.send(chunk)
                sent += len(chunk)
                if bandwidth_mib:
                    ahead = sent / (bandwidth_mib * _MIB) - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        response = conn.getresponse()
        body = response.read(512).decode("utf-8", "replace")
    except OSError as exc:
        raise UploadFailed(public="The snapshot could not be uploaded to the image service.",
                           image_id=image_id, reason="connection: %s" % exc) from exc
    finally:
        conn.close()
    if response.status != 204:
        raise UploadFailed(
            public=_UPLOAD_ANSWERS.get(response.status,
                                       "The image service refused the snapshot."),
            image_id=image_id, reason="HTTP %d: %s" % (response.status, body.strip()))


class SnapshotOps:
    """Snapshots of the guests of one host."""

    def __init__(self, conf: cfg.ConfigOpts, lifecycle: Lifecycle) -> None:
        self.conf = conf
        self.lifecycle = lifecycle
        self.host = lifecycle.host
        self.driver = lifecycle.driver
        self.conductor = lifecycle.conductor
        self.reporter = lifecycle.reporter
        self.directory = os.path.join(conf.compute.snapshots_directory, self.host)
        self.pool = concurrency.WorkerPool(conf.compute.max_concurrent_snapshots,
                                           name="snapshot")

    # --- the work -------------------------------------------------------------------

    def start(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
              upload_url: str, base_image: ImageMeta | dict | None) -> None:
        """Queue the snapshot and return (no RPC worker waits for it)."""
        self.pool.submit(self.snapshot, ctxt, instance_uuid, image_id, upload_url,
                         ImageMeta.coerce(base_image))

    def snapshot(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
                 upload_url: str, base_image: ImageMeta | None = None) -> bool:
        """Take, upload and report the snapshot; True when uploaded."""
        target = os.path.join(self.directory, "%s.qcow2" % image_id)
        error = message = None
        try:
            self._take_and_upload(ctxt, instance_uuid, image_id, upload_url, base_image,
                                  target)
        except Exception as exc:
            error = actions.admin_details(exc, with_traceback=False)
            message = self._public(exc)
            LOG.warning("snapshot of %s into image %s failed: %s", instance_uuid,
                        image_id, error)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
        try:
            self.conductor.snapshot_done(ctxt, instance_uuid, self.host, image_id,
                                         error=error, message=message)
        except exception.MessagingException as exc:
            # The flow's poll finds an active image; a failure the reaper ends.
            LOG.warning("could not report the snapshot of %s: %s", instance_uuid, exc)
        return error is None

    def _take_and_upload(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
                         upload_url: str, base_image: ImageMeta | None,
                         target: str) -> None:
        if not self.driver.capabilities.supports_snapshots:
            raise SnapshotAbandoned(public="Snapshots are not supported by the server's host.",
                                    reason="the %s driver cannot snapshot"
                                           % type(self.driver).__name__)
        try:
            record = self.conductor.instance_get(ctxt, instance_uuid)
        except exception.InstanceNotFound:
            raise SnapshotAbandoned(public="The server was deleted during the snapshot.",
                                    reason="instance %s is gone" % instance_uuid) from None
        if record.get("host") != self.host or record.get("task_state") != st.IMAGE_SNAPSHOT:
            raise SnapshotAbandoned(
                public="The server changed before its snapshot started.",
                reason="instance is on %s in task %s" % (record.get("host"),
                                                         record.get("task_state")))
        instance = Instance.from_record(record)
        os.makedirs(self.directory, exist_ok=True)
        with self.reporter.event(ctxt, instance_uuid, ACTION, "compute_snapshot_instance",
                                 fault=False) as event:
            with self.lifecycle.locks.hold(instance_uuid):
                written = self.driver.snapshot(
                    instance, target, base_image,
                    on_copied=lambda: self._next_task(ctxt, instance_uuid, st.IMAGE_SNAPSHOT,
                                                      st.IMAGE_PENDING_UPLOAD))
            event.details = "%d bytes" % written.size_bytes
        self._next_task(ctxt, instance_uuid, st.IMAGE_PENDING_UPLOAD, st.IMAGE_UPLOADING)
        with self.reporter.event(ctxt, instance_uuid, ACTION, "compute_upload_image",
                                 fault=False) as event:
            started = time.monotonic()
            concurrency.run_blocking(upload_file, upload_url, target,
                                     self.conf.compute.image_upload_bandwidth)
            event.details = "%d bytes in %.1fs" % (written.size_bytes,
                                                   time.monotonic() - started)
        LOG.info("snapshot of %s uploaded as image %s", instance_uuid, image_id)

    def _next_task(self, ctxt: RequestContext, instance_uuid: str, current: str,
                   following: str) -> None:
        try:
            self.conductor.instance_update(ctxt, instance_uuid, {"task_state": following},
                                           expected={"task_state": current})
        except exception.InstanceNotFound:
            raise SnapshotAbandoned(public="The server was deleted during the snapshot.",
                                    reason="instance %s is gone" % instance_uuid) from None
        except exception.InstanceStateConflict as exc:
            raise SnapshotAbandoned(public="The server changed state during the snapshot.",
                                    reason=str(exc)) from None

    @staticmethod
    def _public(exc: Exception) -> str:
        if isinstance(exc, SnapshotAbandoned):
            return exc.public_message()
        if isinstance(exc, exception.NotSupported):
            return "Snapshots are not supported by the server's host."
        if isinstance(exc, exception.InstanceNotFound):
            return "The server's guest was not found on its host."
        return "The server's disk could not be copied."

    # --- after a crash ---------------------------------------------------------------

    def clean_directory(self) -> None:
        """Remove every file a previous agent of this host left in its
        snapshots directory (no snapshot runs before start-up is over)."""
        if not os.path.isdir(self.directory):
            return
        for entry in os.scandir(self.directory):
            LOG.warning("removing %s, left by an interrupted snapshot", entry.name)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def recover(self, ctxt: RequestContext, record: dict) -> None:
        """The agent restarted while ``record``'s server was in a snapshot
        task: end the driver's leftovers (a block job, temporary files) and
        report the snapshot failed, so its flow removes the image and
        clears the task."""
        uuid = record["uuid"]
        if self.driver.capabilities.supports_snapshots:
            try:
                self.driver.recover_snapshot(Instance.from_record(record))
            except Exception:
                LOG.exception("could not recover the snapshot leftovers of %s", uuid)
        self.conductor.snapshot_done(
            ctxt, uuid, self.host, None,
            error="the compute agent restarted during the snapshot (task %s)"
                  % record["task_state"],
            message="The snapshot was interrupted by a restart of the server's host "
                    "service.")

    def shutdown(self, timeout: float | None) -> None:
        self.pool.shutdown(timeout=timeout)
