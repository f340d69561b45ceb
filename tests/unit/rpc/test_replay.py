"""The in-process replay store (flotilla.rpc.replay)."""

from __future__ import annotations

from flotilla.rpc.replay import MemorySeenStore


def test_a_key_is_seen_once_until_its_deadline():
    store = MemorySeenStore()
    assert store.first_sighting("q/m1", 100.0, now=10.0)
    assert not store.first_sighting("q/m1", 100.0, now=50.0)
    assert store.first_sighting("q/m2", 100.0, now=50.0)
    # After the deadline the entry is gone (the expiry check refuses copies).
    assert store.first_sighting("q/m1", 200.0, now=101.0)
    assert len(store) == 1


def test_bounded_size_forgets_the_nearest_deadline_first():
    store = MemorySeenStore(max_entries=2)
    assert store.first_sighting("a", 10.0, now=0.0)
    assert store.first_sighting("b", 30.0, now=0.0)
    assert store.first_sighting("c", 20.0, now=0.0)
    assert len(store) == 2
    assert store.first_sighting("a", 10.0, now=0.0)   # forgotten
    assert not store.first_sighting("b", 30.0, now=0.0)
