"""The project's URLs plus the baselines the benchmarks compare against.

- bench/bare-orders: what any DRF endpoint recording an order must do at the least: the
  same API-key authentication, the same validation of the same body, one INSERT, a JSON
  answer. The difference to /api/v1/orders is the loyalty engine's own work.
- bench/bare-twiml: what any Django view answering a carrier webhook must do at the least:
  the same middleware, parse the form, answer the constant empty TwiML. The difference to
  /webhooks/twilio/inbound is the STOP handling's own work (bench_stop_webhook.py).
"""

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


@csrf_exempt
@require_POST
def bare_twiml(request):
    request.POST.dict()  # the form is parsed, as the real webhook parses it
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


urlpatterns = [
    path("bench/bare-orders", BareOrderApi.as_view()),
    path("bench/bare-twiml", bare_twiml),
    *project_urlpatterns,
]
