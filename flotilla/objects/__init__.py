"""Versioned objects carried by the RPC APIs (see :mod:`.base` for the rules)."""

from flotilla.objects.base import FlotillaObject, deserialize, registered, serialize
from flotilla.objects.block_device import BlockDeviceMapping
from flotilla.objects.flavor import Flavor
from flotilla.objects.image_meta import ImageMeta
from flotilla.objects.instance import Instance
from flotilla.objects.migrate_data import MigrateData
from flotilla.objects.request_spec import RequestSpec

__all__ = ["BlockDeviceMapping", "Flavor", "FlotillaObject", "ImageMeta", "Instance",
           "MigrateData", "RequestSpec", "deserialize", "registered", "serialize"]
