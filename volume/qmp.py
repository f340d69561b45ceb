"""A QMP client: one session on a QEMU process's UNIX monitor socket.

Rules:

* Line-delimited JSON, one command at a time: :meth:`QMP.execute` writes a
  command and returns its ``return``; an ``error`` answer raises
  :class:`QMPError` with QEMU's error class. Events arriving meanwhile are
  skipped (they are not answers).
* A session is cheap and not shared between threads: open one per piece of
  work and close it (the caller serialises work on one daemon).
* :func:`wait_job` waits for a block job to conclude, dismisses it and
  raises if it failed; one that outlives its timeout is cancelled.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any


class QMPError(Exception):
    def __init__(self, command: str, error: dict) -> None:
        super().__init__("QMP %s failed: %s: %s" % (command, error.get("class"),
                                                      error.get("desc")))
        self.error_class = error.get("class")


class QMP:
    """One QMP session on a UNIX socket (line-delimited JSON)."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self._read()                      # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("QMP socket closed")
            message = json.loads(line)
            if "event" not in message:    # events are not answers
                return message

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise QMPError(command, reply["error"])
        return reply.get("return")

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


def wait_job(qmp: QMP, job: str, timeout: float) -> None:
    """Wait for block job ``job`` to conclude and dismiss it; RuntimeError
    if it failed, vanished, or is still running after ``timeout`` seconds
    (then it is cancelled)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [j for j in qmp.execute("query-jobs") if j.get("id") == job]
        if found and found[0].get("status") == "concluded":
            error = found[0].get("error")
            qmp.execute("job-dismiss", id=job)
            if error:
                raise RuntimeError("block job %s failed: %s" % (job, error))
            return
        if not found:
            raise RuntimeError("block job %s vanished" % job)
        if time.monotonic() > deadline:
            qmp.execute("job-cancel", id=job, force=True)
            with contextlib.suppress(QMPError):
                qmp.execute("job-dismiss", id=job)
            raise RuntimeError("block job %s did not end in %ds" % (job, timeout))
        time.sleep(0.05)
