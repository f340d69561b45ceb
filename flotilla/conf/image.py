"""[image] options: the image API's store and the URLs compute agents use."""

from __future__ import annotations

from oslo_config import cfg

image_group = cfg.OptGroup(
    "image", title="Image API options",
    help="The Glance-compatible image API: where image files are stored and "
         "how compute agents download them.")

image_opts = [
    cfg.StrOpt(
        "store_path",
        default="$state_path/images",
        help="Directory holding the uploaded image files, one file per image "
             "named by its id. Uploads are written to a temporary file in the "
             "same directory and renamed into place when complete."),
    cfg.IntOpt(
        "max_image_size",
        default=10 * 1024 ** 3,
        min=1,
        help="Largest image upload accepted, in bytes; a bigger upload is "
             "refused with 413 and nothing of it is kept."),
    cfg.StrOpt(
        "public_endpoint",
        help="Base URL of the image API as compute agents reach it, e.g. "
             "http://controller:8774/image. Agents download images from "
             "<public_endpoint>/v2/images/<id>/file with a time-limited "
             "signed URL. Unset: [api] public_endpoint followed by /image; "
             "when that is unset too, agents read the stored file directly "
             "(file://), which only works where they share store_path (one "
             "host, flotilla-all)."),
    cfg.StrOpt(
        "download_signing_key",
        secret=True,
        help="Key of the HMAC-SHA256 signatures of image download URLs given "
             "to compute agents. Unset: [rpc] signing_key is used. Every API "
             "process of a cloud must share it."),
    cfg.IntOpt(
        "download_url_ttl",
        default=3600,
        min=60,
        help="Seconds a signed image download URL stays valid. It must cover "
             "the time between the API accepting a server and its agent "
             "starting the download."),
    cfg.IntOpt(
        "upload_url_ttl",
        default=21600,
        min=60,
        help="Seconds a signed snapshot upload URL stays valid. The conductor "
             "makes it when a snapshot starts and the compute agent uses it once "
             "the disk is copied, so it must cover the copy of the largest root "
             "disk."),
    cfg.IntOpt(
        "image_count_total",
        default=100,
        min=-1,
        help="Images a project may own at once, server snapshots and backups "
             "included (-1: no limit). An upload or snapshot beyond it is "
             "refused."),
    cfg.IntOpt(
        "image_property_quota",
        default=128,
        min=-1,
        help="Properties one image may have (-1: no limit), as Glance's "
             "option of that name; a server snapshot whose metadata would "
             "exceed it is refused with 400."),
    cfg.IntOpt(
        "limit_param_default",
        default=25,
        min=1,
        help="Images returned by one list request when the client gives no "
             "limit."),
    cfg.IntOpt(
        "api_limit_max",
        default=1000,
        min=1,
        help="Most images one list request returns, whatever limit the "
             "client asks for."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(image_group)
    conf.register_opts(image_opts, group=image_group)


def list_opts() -> dict:
    return {image_group: image_opts}
