"""The one reconnect policy: tenacity, exponential backoff with jitter.

Every place that (re)connects to the broker, and the database sessions
(:func:`flotilla.db.engine.session_scope`), go through
:func:`call_with_retry`, so clients and servers behave alike:

* only errors in ``retry_on`` (the broker is unreachable or dropped us)
  are retried; anything else propagates at once;
* the delay grows exponentially from ``initial_delay`` with full jitter (so
  a hundred agents do not reconnect in lockstep after a broker restart),
  never above ``[rpc] reconnect_max_delay``;
* ``deadline`` seconds (a client's ``[rpc] reconnect_timeout``) bounds the
  whole effort and ends in ``give_up`` (by default
  :class:`~flotilla.exception.MessagingUnavailable`); ``None`` (servers)
  retries until ``should_stop()`` says so;
* each failed attempt is logged with the masked address, never the
  password; sleeping uses :func:`flotilla.concurrency.sleep` so it is green
  under eventlet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity

from flotilla import concurrency, exception

LOG = logging.getLogger(__name__)

T = TypeVar("T")


def call_with_retry(fn: Callable[[], T], *, retry_on: tuple,
                    max_delay: float, deadline: float | None,
                    what: str, where: str,
                    should_stop: Callable[[], bool] | None = None,
                    initial_delay: float = 0.1,
                    give_up: type[exception.FlotillaException]
                    = exception.MessagingUnavailable) -> T:
    """Run ``fn`` until it succeeds; see the module rules.

    ``what`` says what is being attempted and ``where`` is the masked broker
    (or database) address, both for log lines.
    """
    stops = [tenacity.stop_after_delay(deadline)] if deadline is not None \
        else []
    if should_stop is not None:
        stops.append(lambda _state: should_stop())
    stop = tenacity.stop_any(*stops) if stops else tenacity.stop_never

    def log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        LOG.warning("%s on %s failed (attempt %d: %s: %s); retrying in %.2fs",
                    what, where, state.attempt_number,
                    type(exc).__name__, exc, state.next_action.sleep
                    if state.next_action else 0.0)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_random_exponential(multiplier=initial_delay,
                                              max=max_delay),
        stop=stop, sleep=concurrency.sleep, before_sleep=log_retry,
        reraise=False)
    try:
        return retrying(fn)
    except tenacity.RetryError as err:
        last = err.last_attempt.exception()
        raise give_up(reason="%s on %s: %s: %s" % (what, where, type(last).__name__,
                                                  last)) from None
