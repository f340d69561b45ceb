"""The downtime limit of a live migration grows in steps (Nova's scheme):
a tenth of [libvirt] live_migration_downtime first, all of it last, a step
every live_migration_downtime_delay seconds per GiB to move."""

from __future__ import annotations

from compute.virt.libvirt.migration import downtime_steps


def test_defaults_for_a_guest_of_one_gib(conf):
    steps = downtime_steps(conf.libvirt, 1.0)
    assert steps[0] == (0, 50) and steps[-1] == (750, 500)
    assert len(steps) == 11
    times = [t for t, _ in steps]
    limits = [ms for _, ms in steps]
    assert times == sorted(times) and limits == sorted(limits)
    assert steps[1] == (75, 95)


def test_the_delay_scales_with_the_data_to_move(conf):
    conf.set_override("live_migration_downtime", 200, group="libvirt")
    conf.set_override("live_migration_downtime_steps", 4, group="libvirt")
    conf.set_override("live_migration_downtime_delay", 10, group="libvirt")
    assert downtime_steps(conf.libvirt, 3.0) == [(0, 50), (30, 87), (60, 125),
                                                 (90, 162), (120, 200)]
    # A tiny guest still waits a little between steps.
    assert downtime_steps(conf.libvirt, 0.0)[1][0] == 1.0


def test_one_step_is_the_whole_limit_at_once(conf):
    conf.set_override("live_migration_downtime_steps", 1, group="libvirt")
    assert downtime_steps(conf.libvirt, 1.0) == [(0, 500), (75, 500)]
