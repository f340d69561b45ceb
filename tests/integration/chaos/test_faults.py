"""Real faults of the containerised broker and database during a burst of 20
boots and a stream of casts (issue 13).

Each test applies one fault while 20 servers are being created through the
API (separate processes: API, conductor, scheduler, two agents) and a cast
stream runs between two processes: the broker's network cut for 5 s or 30 s
(an nftables drop rule in its network namespace), the broker killed with
SIGKILL and started again, PostgreSQL restarted. Afterwards:

* every one of the 20 servers is ACTIVE, or ERROR with a fault saying why,
  and none is left in a task past its deadline;
* every cast the broker confirmed to the sender was applied by the
  receiver, and none was applied twice (a cast whose confirm was lost is
  sent again; the receiver drops the copy by message id).

Each test's duration is bounded: the fault's own length, then deadlines on
the boots (the task timeouts plus the reaper's interval) and on the casts.
A summary line per fault is printed (``make test-containers`` shows it).
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.integration.chaos.conftest import ENV, REPO, TASK_TIMEOUT, wait_for

BOOTS = 20
SETTLE = TASK_TIMEOUT + 60


class BootBurst:
    """20 POST /servers from 4 threads, each retried (like a client would)
    when the API could not take it and did not create it."""

    def __init__(self, cloud, run: str) -> None:
        self.cloud = cloud
        self.names = ["%s-vm-%02d" % (run, i) for i in range(BOOTS)]
        self.accepted: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.answers: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._work, args=(self.names[i::4],),
                                         daemon=True) for i in range(4)]

    def _headers(self) -> dict:
        return {"X-Auth-Token": self.cloud.token, "Content-Type": "application/json"}

    def _existing(self, name: str) -> str | None:
        try:
            r = requests.get(self.cloud.endpoint + "/compute/v2.1/servers",
                             params={"name": name}, headers=self._headers(), timeout=30)
        except requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        found = [s["id"] for s in r.json()["servers"] if s["name"] == name]
        return found[0] if found else None

    def _work(self, names) -> None:
        body = {"server": {"name": None, "flavorRef": "tiny",
                           "imageRef": self.cloud.image_id, "networks": "none"}}
        for name in names:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not self.stop.is_set():
                body["server"]["name"] = name
                try:
                    r = requests.post(self.cloud.endpoint + "/compute/v2.1/servers",
                                      json=body, headers=self._headers(), timeout=200)
                    answer = r.status_code
                except requests.RequestException as exc:
                    answer = type(exc).__name__
                with self.lock:
                    self.answers[answer] += 1
                if answer == 202:
                    with self.lock:
                        self.accepted[name] = r.json()["server"]["id"]
                    break
                if isinstance(answer, int) and answer < 500:
                    with self.lock:
                        self.refused[name] = "%d %s" % (answer, r.text[:200])
                    break
                existing = self._existing(name)
                if existing:  # created, then the cast failed: it is in ERROR
                    with self.lock:
                        self.accepted[name] = existing
                    break
                self.stop.wait(1)  # a client's pause before retrying

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)


def _apply(fault: str, ctl) -> str:
    started = time.monotonic()
    if fault == "cut-5s":
        ctl.cut("rabbitmq")
        time.sleep(5)  # the fault's length
        ctl.restore("rabbitmq")
    elif fault == "cut-30s":
        ctl.cut("rabbitmq")
        time.sleep(30)
        ctl.restore("rabbitmq")
    elif fault == "broker-sigkill":
        ctl.kill("rabbitmq")
        ctl.start("rabbitmq")
    elif fault == "postgresql-restart":
        ctl.restart("postgresql")
    return "%s applied for %.1fs" % (fault, time.monotonic() - started)


def _lines(path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("fault", ["cut-5s", "cut-30s", "broker-sigkill",
                                   "postgresql-restart"])
def test_fault_during_boots_and_casts(chaos, containers, fault):
    from flotilla import states as st
    from flotilla.db import api as db

    run = fault
    sent = chaos.root / ("sent-%s.txt" % run)
    sender = subprocess.Popen(
        [sys.executable, str(REPO / "tests/integration/chaos/caststream.py"), "send",
         str(chaos.base), str(sent), run], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=open(chaos.root / ("sender-%s.log" % run), "ab"), text=True,
        env={**__import__("os").environ, **ENV})
    assert sender.stdout.readline().strip() == "ready"
    burst = BootBurst(chaos, run)
    try:
        wait_for(lambda: len(_lines(sent)) >= 100, 60, "the cast stream to flow")
        burst.start()
        wait_for(lambda: len(burst.accepted) >= BOOTS // 2 or burst.refused, 120,
                 "half the boots accepted")
        assert not burst.refused, burst.refused
        applied = _apply(fault, containers)
        burst.join(300)
        assert len(burst.accepted) == BOOTS, (burst.answers, burst.refused, chaos.logs())
        wait_for(lambda: len(_lines(sent)) >= 200 + 100, 120, "casts to flow again")
    finally:
        burst.stop.set()
        sender.stdin.close()
        sender.wait(200)

    # Casts: every confirmed one applied, none twice.
    confirmed = set(_lines(sent))
    wait_for(lambda: confirmed <= set(_lines(chaos.received)), 180,
             "every confirmed cast to be applied")
    received = [line for line in _lines(chaos.received) if line.startswith(run + "-")]
    counts = collections.Counter(received)
    twice = [item for item, n in counts.items() if n > 1]
    assert not twice, twice[:10]
    failed = _lines(sent.with_name(sent.name + ".failed"))

    # Boots: every server ACTIVE or ERROR with a reason, none stuck.
    uuids = list(burst.accepted.values())

    def settled():
        insts = [db.instance_get(u) for u in uuids]
        if all(i.task_state is None and i.vm_state in (st.ACTIVE, st.ERROR) for i in insts):
            return insts
        return None

    insts = wait_for(settled, SETTLE, "the %d servers to settle" % BOOTS)
    errors = {}
    for inst in insts:
        if inst.vm_state == st.ERROR:
            faults = db.instance_fault_get_all(inst.uuid)
            assert faults and faults[0].message, inst.uuid
            errors[inst.name] = faults[0].message[:120]
    active = sum(i.vm_state == st.ACTIVE for i in insts)
    print("\nCHAOS %s: %s; boots %d ACTIVE, %d ERROR (%s); POST answers %s; casts "
          "confirmed %d, applied %d, applied twice 0, unconfirmed %d"
          % (fault, applied, active, len(errors),
             "; ".join(sorted(set(errors.values())))[:300] or "-",
             dict(burst.answers), len(confirmed), len(set(received)), len(failed)))
    assert active + len(errors) == BOOTS
