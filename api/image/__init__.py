"""The image API: a Glance v2 subset under ``/image``.

Mounted by the API application with :func:`api.image.routes.add_routes`.
"""
