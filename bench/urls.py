"""The project's URLs plus the baselines the benchmarks compare against.

- bench/bare-orders: what any DRF endpoint recording an order must do at the least: the
  same API-key authentication, the same validation of the same body, one INSERT, a JSON
  answer. The difference to /api/v1/orders is the loyalty engine's own work.
- bench/bare-twiml: what any Django view answering a carrier webhook must do at the least:
  the same middleware, parse the form, answer the constant empty TwiML. The difference to
  /webhooks/twilio/inbound is the STOP handling's own work (bench_stop_webhook.py).
- bench/over-limit: what a per-brand API rate limit would answer a brand over its share (the
  product has none): the same API-key authentication, one Redis counter for the brand's
  second, 429. bench_noisy_neighbour.py --limit-estimate sends the noisy brand's excess here.
"""

import time

from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework.response import Response

from loyaltysms.tenancy.api import TenantAPIView
from loyaltysms.urls import urlpatterns as project_urlpatterns
from messaging.webhooks import EMPTY_TWIML
from programs.serializers import OrderSerializer


class BareOrderApi(TenantAPIView):
    def post(self, request):
        serializer = OrderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_bare_order (tenant_id, order_id, member, subtotal) "
                "VALUES (%s, %s, %s, %s)",
                [self.tenant.pk, data["order_id"], data["member"], data["subtotal"]],
            )
        return Response({"order_id": data["order_id"]}, status=201)


class OverLimitApi(TenantAPIView):
    def answer(self, request, *args, **kwargs):
        key = f"bench:over-limit:{self.tenant.pk}:{int(time.time())}"
        cache.add(key, 0, timeout=5)
        cache.incr(key)
        return Response(
            {"title": "Too many requests for this brand"}, status=429, headers={"Retry-After": "1"}
        )

    get = post = answer


@csrf_exempt
@require_POST
def bare_twiml(request):
    request.POST.dict()  # the form is parsed, as the real webhook parses it
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


urlpatterns = [
    path("bench/bare-orders", BareOrderApi.as_view()),
    path("bench/bare-twiml", bare_twiml),
    path("bench/over-limit", OverLimitApi.as_view()),
    *project_urlpatterns,
]
