from tests.functional.api.fixtures import api_cloud  # noqa: F401
