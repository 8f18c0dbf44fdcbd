from loyaltysms.selectors import membership_for, memberships_for
from loyaltysms.tenancy.context import activate, deactivate

SESSION_TENANT_KEY = "tenant_id"


class TenantContextMiddleware:
    """Every request starts with no tenant in scope and leaves none behind.

    Outermost, so that whatever sets the tenant further in (the dashboard middleware below,
    API-key authentication inside a DRF view, a webhook's receiving number) is undone here.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = activate(None)
        try:
            return self.get_response(request)
        finally:
            deactivate(token)


class DashboardTenantMiddleware:
    """For a signed-in user: request.tenant and request.membership from the session's choice
    (checked against the user's memberships on every request), and the tenant in scope."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.tenant = None
        request.membership = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            membership = None
            tenant_id = request.session.get(SESSION_TENANT_KEY)
            if tenant_id is not None:
                membership = membership_for(user=user, tenant_id=tenant_id)
            if membership is None:
                membership = memberships_for(user).first()
                if membership is not None:
                    request.session[SESSION_TENANT_KEY] = membership.tenant_id
            if membership is not None:
                request.membership = membership
                request.tenant = membership.tenant
                activate(membership.tenant)  # undone by TenantContextMiddleware
        return self.get_response(request)
