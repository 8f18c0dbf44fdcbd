from ..programs.conftest import alice_api, charlie_api  # noqa: F401 - the storefront fixtures
