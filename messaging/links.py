"""Tracked links: /l/{code} → 302 to the target, the click recorded once per recipient and
link (api.md, Links). Link-preview fetchers (the carrier or the phone unfurling the URL) are
redirected but not counted."""

from __future__ import annotations

import re

from django.db.models import F
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.utils import timezone
from django.views.decorators.http import require_safe

from messaging.models import ShortLink

# User agents of link unfurlers: iMessage presents itself as facebookexternalhit + Twitterbot,
# others name themselves.
PREVIEW_AGENTS = re.compile(
    r"facebookexternalhit|facebot|twitterbot|slackbot|whatsapp|telegrambot|discordbot|"
    r"linkedinbot|skypeuripreview|googlebot|bingbot|applebot|embedly|preview|crawler|spider|"
    r"google-read-aloud|\bbot\b|curl/|wget/|python-requests|"
    # Crawlers name a URL about themselves; browsers don't.
    r"\+?https?://",
    re.IGNORECASE,
)


def is_preview_fetch(request: HttpRequest) -> bool:
    if request.method == "HEAD":
        return True
    agent = request.headers.get("User-Agent", "")
    return not agent or bool(PREVIEW_AGENTS.search(agent))


@require_safe
def follow(request: HttpRequest, code: str) -> HttpResponseRedirect:
    # WARNING: all tenants' links; the code alone identifies one (unguessable, unique).
    links = ShortLink.objects.unscoped().filter(code=code)
    target = links.values_list("target", flat=True).first()
    if target is None:
        raise Http404("No such link.")
    if not is_preview_fetch(request):
        now = timezone.now()
        links.update(clicks=F("clicks") + 1, first_clicked_at=Coalesce(F("first_clicked_at"), now))
    return HttpResponseRedirect(target)
