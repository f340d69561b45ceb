"""GET /image/v2/images: query parsing, filters and the ``next`` link.

Rules (Glance's):

* filters: ``name``, ``id``, ``status``, ``owner``, ``visibility``
  (public, private, shared, community, all), ``disk_format``,
  ``container_format``, ``os_hidden``; ``name`` and ``id`` take
  ``in:a,b,c``; any other key filters on an extra property;
* values are literal strings (``os_hidden=True``); ``os_hidden=true`` lists
  only hidden images, while false or absent lists all (unlike Glance,
  hidden images are not left out by default);
* ``limit`` defaults to ``[image] limit_param_default`` and is capped at
  ``[image] api_limit_max``; ``marker`` is the id of the last image of the
  previous page; a full page carries ``next``, the same query with the
  marker moved (relative to the endpoint, as Glance writes it);
* sorting: ``sort_key``/``sort_dir`` or ``sort=key:dir`` (first key only).
"""

from __future__ import annotations

import urllib.parse

import falcon

from api.image import common
from flotilla.context import RequestContext
from flotilla.db import images as db_images

_VISIBILITIES = ("public", "private", "shared", "community", "all")
_PAGING = frozenset({"limit", "marker", "sort_key", "sort_dir", "sort"})
_IGNORED: frozenset[str] = frozenset()
_MEMBER_STATUSES = ("pending", "accepted", "rejected", "all")


def _in_list(value: str) -> list[str]:
    if value.startswith("in:"):
        return [v.strip().strip('"') for v in value[3:].split(",") if v.strip()]
    return [value]


def parse_query(conf, ctxt: RequestContext, params: dict[str, str]) -> db_images.ImageQuery:
    """An ImageQuery from the query string of ``ctxt``'s list request."""
    query = db_images.ImageQuery(project_id=ctxt.project_id,
                                 all_projects=ctxt.is_admin,
                                 limit=conf.image.limit_param_default)
    properties: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, list):  # a repeated key: Glance uses the last
            value = value[-1]
        if key == "name":
            query.names = _in_list(value)
        elif key == "id":
            query.ids = _in_list(value)
        elif key in ("status", "owner", "disk_format", "container_format"):
            setattr(query, key, value)
        elif key == "visibility":
            if value not in _VISIBILITIES:
                raise falcon.HTTPBadRequest(
                    description="visibility must be one of %s" % ", ".join(_VISIBILITIES))
            query.visibility = value
        elif key == "member_status":
            if value not in _MEMBER_STATUSES:
                raise falcon.HTTPBadRequest(description="member_status must be one of %s"
                                            % ", ".join(_MEMBER_STATUSES))
            query.member_status = _MEMBER_STATUSES[:3] if value == "all" else (value,)
        elif key == "os_hidden":
            if common.parse_bool(key, value):
                properties[db_images.HIDDEN_KEY] = "True"
        elif key == "tag":
            raise falcon.HTTPBadRequest(description="Filtering by tag is not supported.")
        elif key in _PAGING or key in _IGNORED:
            continue
        elif key.startswith("_"):
            raise falcon.HTTPBadRequest(description="Unknown filter %s." % key)
        else:
            properties[key] = value
    query.properties = properties
    _parse_paging(conf, params, query)
    return query


def _last(params: dict, key: str) -> str | None:
    value = params.get(key)
    return value[-1] if isinstance(value, list) else value


def _parse_paging(conf, params: dict, query: db_images.ImageQuery) -> None:
    limit = _last(params, "limit")
    if limit is not None:
        try:
            query.limit = int(limit)
        except ValueError:
            raise falcon.HTTPBadRequest(description="limit must be an integer") from None
        if query.limit < 0:
            raise falcon.HTTPBadRequest(description="limit must not be negative")
    query.limit = min(query.limit, conf.image.api_limit_max)
    query.marker = _last(params, "marker")
    sort = _last(params, "sort")
    if sort:
        key, _, direction = sort.split(",")[0].partition(":")
        query.sort_key = key.strip()
        query.sort_dir = (direction or "desc").strip()
    if _last(params, "sort_key"):
        query.sort_key = _last(params, "sort_key").split(",")[0]
    if _last(params, "sort_dir"):
        query.sort_dir = _last(params, "sort_dir").split(",")[0]
    if query.sort_key not in db_images.SORT_KEYS:
        raise falcon.HTTPBadRequest(
            description="sort_key must be one of %s" % ", ".join(db_images.SORT_KEYS))
    if query.sort_dir not in ("asc", "desc"):
        raise falcon.HTTPBadRequest(description="sort_dir must be asc or desc")


def next_link(params: dict, query: db_images.ImageQuery, page: list) -> str | None:
    """The ``next`` link after ``page``, or None when it is the last."""
    if not page or len(page) < query.limit:
        return None
    items = [(k, v) for k, v in params.items() if k not in ("marker", "limit")]
    flat = [(k, x) for k, v in items for x in (v if isinstance(v, list) else [v])]
    flat += [("limit", str(query.limit)), ("marker", page[-1].id)]
    return "/v2/images?" + urllib.parse.urlencode(flat)
