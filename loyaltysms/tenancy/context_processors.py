from django.conf import settings

from loyaltysms.selectors import memberships_for


def tenancy(request):
    membership = getattr(request, "membership", None)
    user = getattr(request, "user", None)
    signed_in = user is not None and user.is_authenticated
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": membership,
        # Called by the template only where the brand switcher is drawn.
        "user_memberships": (lambda: list(memberships_for(user))) if signed_in else [],
        "can_edit": membership is not None and membership.allows("marketer"),
        "can_admin": membership is not None and membership.allows("admin"),
        "signup_open": settings.SIGNUP_OPEN,
    }
