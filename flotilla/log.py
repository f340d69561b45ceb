"""Logging for daemons: one line per record on stderr, request id included.

systemd's journal takes stderr, so a daemon needs no log files. Every record
carries the request id of the context being handled by its thread (see
:func:`flotilla.context.current`), so one API request can be followed across
hosts. A filter masks credentials in URLs as a last line of defence: secrets
must never reach a log even when some code logs a URL carelessly.
"""

from __future__ import annotations

import logging
import re
import sys

from flotilla import context

FORMAT = ("%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s "
          "[%(request_id)s] %(message)s")
DATEFMT = "%Y-%m-%d %H:%M:%S"

# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<tail>@)")


def mask_password(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)


class ContextFilter(logging.Filter):
    """Adds ``request_id`` to every record and masks URL passwords."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctxt = context.current()
        record.request_id = ctxt.request_id if ctxt else "-"
        if record.args:
            try:
                record.msg = record.msg % record.args
            except (TypeError, ValueError):
                record.msg = "%s %r" % (record.msg, record.args)
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask_password(record.msg)
        else:
            record.msg = mask_password(str(record.msg))
        return True


def setup(debug: bool = False, stream=None) -> None:
    """Configure the root logger for a daemon or a command."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # Libraries are chatty at DEBUG; keep them at WARNING unless asked.
    for noisy in ("amqp", "kombu", "sqlalchemy", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
