"""Versioned objects: record forms, primitives on the wire, version rules."""

from __future__ import annotations

import pytest

from flotilla import exception, objects
from flotilla.objects import (
    BlockDeviceMapping,
    Flavor,
    ImageMeta,
    Instance,
    MigrateData,
    RequestSpec,
)
from flotilla.objects.base import DATA_KEY, NAME_KEY, VERSION_KEY
from flotilla.rpc import serializer

UUID = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"


def test_instance_from_record_normalises():
    inst = Instance.from_record({"uuid": UUID, "display_name": "web",
                                 "flavor": {"memory_mb": "128", "vcpus": 2,
                                            "extra_specs": {"network": "true"},
                                            "hw:foo": 0},
                                 "metadata": {"a": 1}, "host": "h1",
                                 "vm_state": "active", "unknown_column": 1})
    assert inst.uuid == UUID.lower()
    assert inst.name == "web"
    assert inst.domain_name == "instance-" + UUID.lower()
    assert inst.flavor.memory_mb == 128 and inst.flavor.vcpus == 2
    assert inst.flavor.wants_network()
    assert inst.flavor.extra_specs["hw:foo"] == 0
    assert inst.metadata == {"a": "1"}
    assert (inst.host, inst.vm_state) == ("h1", "active")
    assert Instance.coerce(inst) is inst


@pytest.mark.parametrize("bad", ["", "../../etc", "x" * 36, UUID + "/.."])
def test_instance_rejects_non_uuid(bad):
    with pytest.raises(ValueError):
        Instance.from_record({"uuid": bad, "flavor": {"memory_mb": 64}})


def test_flavor_rejects_non_positive_sizes():
    with pytest.raises(ValueError):
        Flavor.from_record({"memory_mb": 0})
    assert not Flavor.from_record({"memory_mb": 64}).wants_network()
    assert Flavor(root_gb=2, ephemeral_gb=3).disk_gb == 5


def test_image_meta_from_record():
    image = ImageMeta.from_record({"id": "i", "url": "http://x/y", "sha256": "ABC",
                                   "min_ram": 5})
    assert image.source == "http://x/y" and image.sha256 == "abc"
    assert image.min_ram_mb == 5
    assert ImageMeta.coerce(None) is None


SAMPLES = [
    Instance(uuid=UUID, name="web <b>", flavor=Flavor(memory_mb=128, extra_specs={"x": 1}),
             metadata={"k": "v"}, host="h1"),
    Flavor(flavorid="1", name="tiny", memory_mb=64, root_gb=1),
    ImageMeta(id="i1", source="http://x", properties={"arch": "x86_64"}),
    RequestSpec(flavor=Flavor(memory_mb=64), image=ImageMeta(id="i1"), group="g",
                num_instances=2, ignore_hosts=("h2",)),
    BlockDeviceMapping(source_type="volume", destination_type="volume", volume_id="v1",
                       connection_info={"driver_volume_type": "nbd",
                                        "data": {"host": "127.0.0.1", "port": 10809,
                                                 "export": "v1"}}),
    MigrateData(migration_uuid="m1", migration_type="live-migration", source_host="a",
                dest_host="b", disks_to_copy=("vda",),
                bdms=(BlockDeviceMapping(source_type="volume", destination_type="volume"),),
                driver_data={"xml": "<domain/>"}),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_every_object_survives_the_wire(obj):
    wire = serializer.dumps(objects.serialize({"arg": [obj]}))
    back = objects.deserialize(serializer.loads(wire))["arg"][0]
    assert back == obj and type(back) is type(obj)


def test_every_registered_object_has_a_sample():
    assert set(objects.registered()) == {type(o).__name__ for o in SAMPLES}


def _primitive(**changes):
    prim = Flavor(memory_mb=64).to_primitive()
    prim.update(changes)
    return prim


@pytest.mark.parametrize("prim, reason", [
    (_primitive(**{NAME_KEY: "Nope"}), "unknown object"),
    (_primitive(**{VERSION_KEY: "1.1"}), "not compatible"),
    (_primitive(**{VERSION_KEY: "2.0"}), "not compatible"),
    (_primitive(**{DATA_KEY: []}), "data is not an object"),
    (_primitive(**{DATA_KEY: {"memory_mb": 64, "gpu": 1}}), "unknown fields"),
    (_primitive(**{DATA_KEY: {"memory_mb": 0}}), "non-positive"),
])
def test_refused_primitives_say_why(prim, reason):
    with pytest.raises(exception.InvalidMessage, match=reason):
        objects.deserialize(prim)


def test_an_older_target_version_of_another_major_is_refused():
    with pytest.raises(exception.InvalidMessage, match="cannot be sent as version 2.0"):
        Flavor().to_primitive(target_version="2.0")


def test_from_primitive_checks_the_class():
    with pytest.raises(exception.InvalidMessage, match="expected a Instance"):
        Instance.from_primitive(Flavor().to_primitive())
