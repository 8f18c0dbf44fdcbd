"""The project's URLs plus the baseline: a bare DRF endpoint for the same request.

The bare endpoint does what any DRF endpoint recording an order must do at the least: the
same API-key authentication, the same validation of the same body, one INSERT, a JSON answer.
The difference to /api/v1/orders is the loyalty engine's own work.
"""

from django.db import connection
from django.urls import path
from rest_framework.response import Response

from loyaltysms.tenancy.api import TenantAPIView
from loyaltysms.urls import urlpatterns as project_urlpatterns
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


urlpatterns = [
    path("bench/bare-orders", BareOrderApi.as_view()),
    *project_urlpatterns,
]
