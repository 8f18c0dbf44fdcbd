from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"

    def ready(self) -> None:
        # Registers the `orders` and `revenue` A/B winner metrics (attribution-based).
        from automations import stats  # noqa: F401
