"""``flotilla flavor|image|host|service|token ...``.

Image upload streams the file (the SDK hands the open file to the HTTP
layer, which sends it in chunks with its Content-Length); services are
named by host and binary, as ``flotilla-manage service`` does.
"""

from __future__ import annotations

import os
from typing import Any

from flotilla import binaries
from flotilla.cli import output

# --- flavors -----------------------------------------------------------------

FLAVOR_COLUMNS = ["ID", "Name", "RAM", "vCPUs", "Disk", "Ephemeral", "Is Public"]


def _flavor_row(f: Any) -> list:
    return [f.id, f.name, f.ram, f.vcpus, f.disk, getattr(f, "ephemeral", 0),
            getattr(f, "is_public", True)]


def _flavor_record(f: Any) -> output.Record:
    return output.Record(dict(zip(
        ["id", "name", "ram", "vcpus", "disk", "ephemeral", "is_public"],
        _flavor_row(f), strict=True)) | {"extra_specs": getattr(f, "extra_specs", None)})


def flavor_list(conn, args) -> output.Table:
    return output.Table(FLAVOR_COLUMNS,
                        [_flavor_row(f) for f in conn.compute.flavors(details=True)])


def flavor_show(conn, args) -> output.Record:
    return _flavor_record(conn.compute.find_flavor(args.flavor, ignore_missing=False))


def flavor_create(conn, args) -> output.Record:
    attrs = {"name": args.name, "ram": args.ram, "vcpus": args.vcpus, "disk": args.disk,
             "ephemeral": args.ephemeral, "is_public": not args.private}
    if args.id:
        attrs["id"] = args.id
    return _flavor_record(conn.compute.create_flavor(**attrs))


def flavor_delete(conn, args) -> None:
    for name in args.flavors:
        conn.compute.delete_flavor(conn.compute.find_flavor(name, ignore_missing=False))


# --- images ------------------------------------------------------------------

IMAGE_COLUMNS = ["ID", "Name", "Status", "Disk Format", "Size", "Visibility"]


def _image_record(image: Any) -> output.Record:
    return output.Record({
        "id": image.id, "name": image.name, "status": image.status,
        "disk_format": image.disk_format, "container_format": image.container_format,
        "size": image.size, "checksum": image.checksum,
        "os_hash_algo": getattr(image, "hash_algo", None),
        "os_hash_value": getattr(image, "hash_value", None),
        "visibility": image.visibility, "owner": getattr(image, "owner", None),
        "min_ram": getattr(image, "min_ram", None), "min_disk": getattr(image, "min_disk", None),
        "protected": getattr(image, "is_protected", None),
        "created_at": getattr(image, "created_at", None),
        "updated_at": getattr(image, "updated_at", None),
    })


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError("no such file: %s" % path)


def image_create(conn, args) -> output.Record:
    attrs: dict[str, Any] = {"disk_format": args.disk_format,
                             "container_format": args.container_format,
                             "visibility": args.visibility}
    if args.min_ram is not None:
        attrs["min_ram"] = args.min_ram
    if args.min_disk is not None:
        attrs["min_disk"] = args.min_disk
    if args.file:
        _check_file(args.file)
        # allow_duplicates: image names are not unique, as in Glance.
        image = conn.image.create_image(args.name, filename=args.file,
                                        allow_duplicates=True, **attrs)
    else:
        image = conn.image.create_image(args.name, allow_duplicates=True, **attrs)
    return _image_record(conn.image.get_image(image.id))


def image_upload(conn, args) -> output.Record:
    _check_file(args.file)
    image = conn.image.find_image(args.image, ignore_missing=False)
    with open(args.file, "rb") as data:
        response = conn.image.put(
            "/images/%s/file" % image.id, data=data,
            headers={"Content-Type": "application/octet-stream",
                     "Content-Length": str(os.fstat(data.fileno()).st_size)})
    _raise_for(response)
    return _image_record(conn.image.get_image(image.id))


def _raise_for(response) -> None:
    from openstack import exceptions as sdk_exc
    sdk_exc.raise_from_response(response)


def image_list(conn, args) -> output.Table:
    query: dict[str, Any] = {}
    if args.name:
        query["name"] = args.name
    if args.status:
        query["status"] = args.status
    rows = [[i.id, i.name, i.status, i.disk_format, i.size, i.visibility]
            for i in conn.image.images(**query)]
    return output.Table(IMAGE_COLUMNS, rows)


def image_show(conn, args) -> output.Record:
    return _image_record(conn.image.find_image(args.image, ignore_missing=False))


def image_delete(conn, args) -> None:
    for name in args.images:
        conn.image.delete_image(conn.image.find_image(name, ignore_missing=False))


# --- hosts and services ------------------------------------------------------

HOST_COLUMNS = ["ID", "Hypervisor Hostname", "Type", "State", "Status",
                "vCPUs Used", "vCPUs", "Memory MB Used", "Memory MB"]
SERVICE_COLUMNS = ["ID", "Binary", "Host", "Zone", "Status", "State", "Updated At",
                   "Disabled Reason"]


def host_list(conn, args) -> output.Table:
    rows = [[h.id, h.name, getattr(h, "hypervisor_type", None), h.state, h.status,
             getattr(h, "vcpus_used", None), getattr(h, "vcpus", None),
             getattr(h, "memory_used", None), getattr(h, "memory_size", None)]
            for h in conn.compute.hypervisors(details=True)]
    return output.Table(HOST_COLUMNS, rows)


def _own_binary(name: str | None) -> str | None:
    """The compute API names daemons as Nova does (nova-compute); this CLI
    names them as Flotilla does (flotilla-compute)."""
    if name and name.startswith("nova-"):
        return "flotilla-" + name[len("nova-"):]
    return name


def _service_row(s: Any) -> list:
    return [s.id, _own_binary(s.binary), s.host, getattr(s, "availability_zone", None), s.status,
            s.state, getattr(s, "updated_at", None), getattr(s, "disabled_reason", None)]


def service_list(conn, args) -> output.Table:
    query = {k: v for k, v in (("host", args.host), ("binary", args.binary)) if v}
    return output.Table(SERVICE_COLUMNS, [_service_row(s) for s in conn.compute.services(**query)])


def _find_service(conn, host: str, binary: str):
    from openstack import exceptions as sdk_exc
    for service in conn.compute.services(host=host, binary=binary):
        if service.host == host and _own_binary(service.binary) == _own_binary(binary):
            return service
    raise sdk_exc.NotFoundException("no service %s on host %s" % (binary, host))


def service_disable(conn, args) -> output.Table:
    service = _find_service(conn, args.host, args.binary)
    result = conn.compute.disable_service(service, args.host, args.binary,
                                          disabled_reason=args.reason)
    return output.Table(SERVICE_COLUMNS, [_service_row(result or service)])


def service_enable(conn, args) -> output.Table:
    service = _find_service(conn, args.host, args.binary)
    result = conn.compute.enable_service(service, args.host, args.binary)
    return output.Table(SERVICE_COLUMNS, [_service_row(result or service)])


# --- tokens ------------------------------------------------------------------

def token_issue(conn, args) -> output.Record:
    access = conn.session.auth.get_access(conn.session)
    expires = getattr(access, "expires", None)
    return output.Record({
        "id": conn.session.get_token(),
        "expires": expires.isoformat() if hasattr(expires, "isoformat") else expires,
        "project_id": getattr(access, "project_id", None),
        "user_id": getattr(access, "user_id", None),
    })


# --- parsers -----------------------------------------------------------------

def register(subparsers) -> None:
    flavor = subparsers.add_parser("flavor", help="Flavors (server sizes)")
    sub = flavor.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="List flavors").set_defaults(func=flavor_list)
    p = sub.add_parser("show", help="Show a flavor")
    p.add_argument("flavor", help="Flavor name or id")
    p.set_defaults(func=flavor_show)
    p = sub.add_parser("create", help="Create a flavor (admin)")
    p.add_argument("name")
    p.add_argument("--id", help="Flavor id (default: the name)")
    p.add_argument("--ram", type=int, required=True, help="Memory in MiB")
    p.add_argument("--vcpus", type=int, default=1)
    p.add_argument("--disk", type=int, default=0, help="Root disk in GiB")
    p.add_argument("--ephemeral", type=int, default=0, help="Ephemeral disk in GiB")
    p.add_argument("--private", action="store_true", help="Not public")
    p.set_defaults(func=flavor_create)
    p = sub.add_parser("delete", help="Delete flavors (admin)")
    p.add_argument("flavors", nargs="+", metavar="flavor")
    p.set_defaults(func=flavor_delete)

    image = subparsers.add_parser("image", help="Images")
    sub = image.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("create", help="Create an image (and upload --file)")
    p.add_argument("name")
    p.add_argument("--file", help="Image data to upload")
    p.add_argument("--disk-format", choices=["qcow2", "raw"], default="qcow2")
    p.add_argument("--container-format", choices=["bare"], default="bare")
    p.add_argument("--min-ram", type=int)
    p.add_argument("--min-disk", type=int)
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--public", dest="visibility", action="store_const", const="public")
    vis.add_argument("--private", dest="visibility", action="store_const", const="private")
    vis.add_argument("--community", dest="visibility", action="store_const",
                     const="community")
    p.set_defaults(func=image_create, visibility="private")
    p = sub.add_parser("upload", help="Upload data to a queued image")
    p.add_argument("image", help="Image name or id")
    p.add_argument("file")
    p.set_defaults(func=image_upload)
    p = sub.add_parser("list", help="List images")
    p.add_argument("--name")
    p.add_argument("--status")
    p.set_defaults(func=image_list)
    p = sub.add_parser("show", help="Show an image")
    p.add_argument("image", help="Image name or id")
    p.set_defaults(func=image_show)
    p = sub.add_parser("delete", help="Delete images")
    p.add_argument("images", nargs="+", metavar="image")
    p.set_defaults(func=image_delete)

    host = subparsers.add_parser("host", help="Hypervisor hosts (admin)")
    sub = host.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="List hypervisors").set_defaults(func=host_list)
    from flotilla.cli import host_drain
    host_drain.register(sub)

    service = subparsers.add_parser("service", help="Compute services (admin)")
    sub = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="List services")
    p.add_argument("--host")
    p.add_argument("--binary")
    p.set_defaults(func=service_list)
    p = sub.add_parser("disable", help="Stop scheduling to a service")
    p.add_argument("host")
    p.add_argument("binary", nargs="?", default=binaries.COMPUTE)
    p.add_argument("--reason", help="Why (shown in service list)")
    p.set_defaults(func=service_disable)
    p = sub.add_parser("enable", help="Resume scheduling to a service")
    p.add_argument("host")
    p.add_argument("binary", nargs="?", default=binaries.COMPUTE)
    p.set_defaults(func=service_enable)

    token = subparsers.add_parser("token", help="Identity tokens")
    sub = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("issue", help="Issue a token").set_defaults(func=token_issue)
