"""Logging: request ids on every line, no password ever printed."""

from __future__ import annotations

import io
import logging

from flotilla import context, log


def _capture():
    stream = io.StringIO()
    log.setup(debug=False, stream=stream)
    return stream


def test_mask_password():
    assert (log.mask_password("rabbit://guest:s3cret@10.0.0.1:5672/")
            == "rabbit://guest:***@10.0.0.1:5672/")
    assert (log.mask_password("postgresql+psycopg://fl:p%40ss@db/flotilla x")
            == "postgresql+psycopg://fl:***@db/flotilla x")
    assert log.mask_password("memory://") == "memory://"
    assert log.mask_password("http://host/path") == "http://host/path"


def test_line_carries_request_id_and_masks_urls():
    stream = _capture()
    logger = logging.getLogger("flotilla.test")
    ctxt = context.RequestContext(request_id="req-abc")
    with ctxt:
        logger.info("connecting to %s", "rabbit://u:topsecret@h:5672/")
    logger.info("no context here")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "[req-abc]" in lines[0] and "rabbit://u:***@h:5672/" in lines[0]
    assert "topsecret" not in stream.getvalue()
    assert "[-]" in lines[1]
