from rest_framework import serializers
from rest_framework.response import Response

from loyaltysms.tenancy.api import TenantAPIView


class TenantSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    timezone = serializers.CharField()
    currency = serializers.CharField()
    default_country = serializers.CharField()


class TenantDetailApi(TenantAPIView):
    """The brand this API key belongs to: a quick way for a storefront to check its key."""

    serializer_class = TenantSerializer

    def get(self, request):
        return Response(TenantSerializer(self.tenant).data)
