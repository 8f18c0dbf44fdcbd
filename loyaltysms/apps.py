from django.apps import AppConfig


class LoyaltysmsConfig(AppConfig):
    name = "loyaltysms"
    verbose_name = "loyaltysms tenancy"

    def ready(self) -> None:
        from loyaltysms.tenancy import schema  # noqa: F401 - registers the OpenAPI auth scheme
