from __future__ import annotations

import pytest

from compute.virt.hardware import Flavor, ImageMeta, Instance

UUID = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"


def test_instance_from_dict_normalises():
    inst = Instance.from_dict({"uuid": UUID, "display_name": "web",
                               "flavor": {"memory_mb": "128", "vcpus": 2,
                                          "extra_specs": {"network": "true"},
                                          "swap": 0},
                               "metadata": {"a": 1}})
    assert inst.uuid == UUID.lower()
    assert inst.name == "web"
    assert inst.domain_name == "instance-" + UUID.lower()
    assert inst.flavor.memory_mb == 128 and inst.flavor.vcpus == 2
    assert inst.flavor.wants_network()
    assert inst.flavor.extra["swap"] == 0
    assert inst.metadata == {"a": "1"}
    assert Instance.coerce(inst) is inst


@pytest.mark.parametrize("bad", ["", "../../etc", "x" * 36, UUID + "/.."])
def test_instance_rejects_non_uuid(bad):
    with pytest.raises(ValueError):
        Instance.from_dict({"uuid": bad, "flavor": {"memory_mb": 64}})


def test_flavor_rejects_non_positive_sizes():
    with pytest.raises(ValueError):
        Flavor.from_dict({"memory_mb": 0})
    assert not Flavor.from_dict({"memory_mb": 64}).wants_network()


def test_image_meta_from_dict():
    image = ImageMeta.from_dict({"id": "i", "url": "http://x/y",
                                 "sha256": "ABC"})
    assert image.source == "http://x/y" and image.sha256 == "abc"
    assert ImageMeta.coerce(None) is None
