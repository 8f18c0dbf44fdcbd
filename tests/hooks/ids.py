"""Ids of a brand's webhook objects, for the dashboard sweeps in tests/loyaltysms/."""

from django.utils import timezone

from hooks.services.endpoints import endpoint_create, endpoint_test_send


def webhook_route_ids(brand) -> dict[str, dict]:
    """For each webhook route with an id: the kwargs naming an object of `brand`."""
    endpoint = endpoint_create(
        tenant=brand.tenant,
        url=f"https://{brand.tenant.slug}.example/hooks",
        events=["points_earned"],
        actor=brand.owner,
    ).endpoint
    delivery = endpoint_test_send(endpoint=endpoint, now=timezone.now(), actor=brand.owner)
    return {
        **{
            name: {"endpoint_id": endpoint.pk}
            for name in (
                "webhook_endpoint",
                "webhook_endpoint_toggle",
                "webhook_endpoint_delete",
                "webhook_secret_roll",
                "webhook_test_send",
            )
        },
        "webhook_delivery_replay": {"delivery_id": delivery.pk},
        "webhook_delivery_retry": {"delivery_id": delivery.pk},
    }
