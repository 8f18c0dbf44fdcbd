"""The project's URL conf plus one deliberately unscoped page: the classic isolation bug, for
tests/loyaltysms/test_isolation_sweep.py to prove the sweep catches it."""

from django.http import HttpResponse
from django.urls import path

from loyaltysms.urls import handler404, handler500
from loyaltysms.urls import urlpatterns as project_urlpatterns
from loyaltysms.views import tenant_view
from programs.models import Member


@tenant_view()
def leaky_member(request, member_id: int):
    # The bug: every tenant's members, not the signed-in brand's.
    member = Member.objects.unscoped().get(pk=member_id)
    return HttpResponse(member.external_id)


urlpatterns = [
    *project_urlpatterns,
    path("leaky/members/<int:member_id>/", leaky_member, name="leaky_member"),
]

__all__ = ["handler404", "handler500", "urlpatterns"]
