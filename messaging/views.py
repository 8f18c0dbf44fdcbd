"""Dashboard pages of the SMS channel: subscribers and their consent evidence, the subscriber
import, the two-way inbox, compliance settings and senders, and the phone simulator."""

from __future__ import annotations

import csv
import json
import re

from django.conf import settings as django_settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from loyaltysms.models import Role
from loyaltysms.tenancy.context import tenant_scope
from loyaltysms.tenancy.tasks import enqueue_on_commit
from loyaltysms.views import _form_errors, keyset_page, tenant_view
from messaging import forms, selectors
from messaging.models import (
    ConsentSource,
    InboundMessage,
    Sender,
    SenderKind,
    Subscriber,
    SubscriberImport,
    SubscriberStatus,
)
from messaging.services import imports as import_services
from messaging.services import inbox as inbox_services
from messaging.services import setup
from messaging.services.outbound import BodyInvalid
from messaging.services.subscribers import Evidence, subscriber_opt_out
from messaging.simulator import (
    TEST_NUMBER_SET,
    TEST_NUMBERS,
    NotSandbox,
    simulator_text,
    simulator_thread,
)
from messaging.tasks import import_subscribers as import_subscribers_task
from programs.services.program import program_get

PAGE = 50


def _int(value: str | None) -> int | None:
    """A query string's id: ASCII digits that fit a bigint, else None (never a 500)."""
    return int(value) if value and re.fullmatch(r"[0-9]{1,18}", value) else None


def _choice(value: str | None, choices) -> str:
    return value if value in choices.values else ""


def inbox_nav(request) -> dict:
    """The nav's "Inbox (3)": unread texts of the current brand, one aggregate query, run only
    when the nav is drawn. A context processor (settings.TEMPLATES), so every page shows it."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return {"inbox_unread": 0}

    def total() -> int:
        with tenant_scope(tenant):
            # Only conversations have unread texts: the partial inbox index covers them.
            return (
                Subscriber.objects.filter(last_message_at__isnull=False, unread_count__gt=0)
                .aggregate(n=Sum("unread_count"))
                .get("n")
                or 0
            )

    return {"inbox_unread": total}


def _thread(subscriber: Subscriber) -> list:
    """The conversation, oldest first (at equal times, their text before our answer)."""
    return selectors.conversation(subscriber)


# --- subscribers ----------------------------------------------------------------------------


@require_GET
@tenant_view()
def subscribers(request):
    """Subscribers, newest first, by status, source and number digits; keyset pages."""
    status = _choice(request.GET.get("status"), SubscriberStatus)
    source = _choice(request.GET.get("source"), ConsentSource)
    q = request.GET.get("q", "").strip()[:40]
    after = _int(request.GET.get("after"))
    with tenant_scope(request.tenant):
        matching = selectors.subscriber_search(Subscriber.objects.all(), source=source, q=q)
        # How many each status would show, with the other filters applied.
        counts = dict(
            matching.order_by().values("status").annotate(n=Count("id")).values_list("status", "n")
        )
        queryset = selectors.subscriber_search(matching, status=status)
        if after:
            queryset = queryset.filter(pk__lt=after)
        page = list(queryset.select_related("member").order_by("-pk")[: PAGE + 1])
    page, next_url = keyset_page(request, page, PAGE)
    first_params = request.GET.copy()
    first_params.pop("after", None)

    def filter_url(status_value: str) -> str:
        params = {"status": status_value, "source": source, "q": q}
        return "?" + urlencode({key: value for key, value in params.items() if value})

    status_counts = [
        {"value": value, "label": label, "count": counts.get(value, 0), "url": filter_url(value)}
        for value, label in SubscriberStatus.choices
    ]
    return render(
        request,
        "messaging/subscribers.html",
        {
            "subscribers": page,
            "status": status,
            "source": source,
            "q": q,
            "statuses": SubscriberStatus.choices,
            "sources": ConsentSource.choices,
            "status_counts": status_counts,
            "all_url": filter_url(""),
            "total": sum(counts.values()),
            "filtered": bool(status or source or q),
            "next_url": next_url,
            "first_url": None if after is None else f"?{first_params.urlencode()}",
            "sms_tab": "subscribers",
        },
    )


@require_GET
@tenant_view()
def subscriber_detail(request, subscriber_id: int):
    subscriber = selectors.get_subscriber_by_id(request.tenant, subscriber_id)
    with tenant_scope(request.tenant):
        consent = list(selectors.consent_history(subscriber))
        thread = _thread(subscriber)
    return render(
        request,
        "messaging/subscriber_detail.html",
        {
            "subscriber": subscriber,
            "consent": consent,
            "thread": thread,
            "sms_tab": "subscribers",
        },
    )


CONSENT_COLUMNS = (
    "phone",
    "recorded_at",
    "action",
    "source",
    "disclosure_version",
    "disclosure_text",
    "page_url",
    "ip",
    "user_agent",
    "keyword",
    "message_body",
    "inbound_sid",
    "confirmation_text",
    "actor",
    "evidence",
)


def _cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ would make it a formula
    (texts and user agents come from outside), so such a cell gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@require_GET
@tenant_view()
def subscriber_consent_export(request, subscriber_id: int):
    """The number's full consent history as evidence: one row per record, every field."""
    subscriber = selectors.get_subscriber_by_id(request.tenant, subscriber_id)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    digits = subscriber.e164.lstrip("+")
    response["Content-Disposition"] = f'attachment; filename="consent-{digits}.csv"'
    writer = csv.writer(response)
    writer.writerow(CONSENT_COLUMNS)
    with tenant_scope(request.tenant):
        for record in selectors.consent_history(subscriber).iterator():
            writer.writerow(
                [
                    subscriber.e164,  # E.164 as it is; the one cell that starts with "+"
                    record.created_at.isoformat(),
                    record.action,
                    record.source,
                    *map(
                        _cell,
                        (
                            record.disclosure_version,
                            record.disclosure_text,
                            record.page_url,
                            record.ip,
                            record.user_agent,
                            record.keyword,
                            record.message_body,
                            record.inbound_sid,
                            record.confirmation_text,
                            record.actor,
                            json.dumps(record.evidence, sort_keys=True) if record.evidence else "",
                        ),
                    ),
                ]
            )
    return response


@require_POST
@tenant_view(write=Role.ADMIN)
def subscriber_unsubscribe(request, subscriber_id: int):
    """Unsubscribe a number for the person (e.g. asked by phone or email): a confirm step,
    then an opt-out with who did it and why as its evidence. No text is sent."""
    subscriber = selectors.get_subscriber_by_id(request.tenant, subscriber_id)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        messages.info(request, f"{subscriber.phone.as_international} is unsubscribed already.")
        return redirect("subscriber_detail", subscriber_id=subscriber.pk)
    reason = request.POST.get("reason", "").strip()[:300]
    if request.POST.get("confirm") != "yes":
        return render(
            request,
            "messaging/subscriber_unsubscribe.html",
            {"subscriber": subscriber, "reason": reason, "sms_tab": "subscribers"},
        )
    subscriber_opt_out(
        subscriber=subscriber,
        evidence=Evidence(
            source=ConsentSource.DASHBOARD,
            actor=request.user.email,
            extra={"reason": reason} if reason else {},
        ),
        now=timezone.now(),
        confirm=False,
    )
    messages.success(
        request,
        f"{subscriber.phone.as_international} is unsubscribed: no more marketing texts go to it.",
    )
    return redirect("subscriber_detail", subscriber_id=subscriber.pk)


@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.ADMIN, write=Role.ADMIN)
def subscribers_import(request):
    """Upload numbers that consented elsewhere; a worker imports them while the import's own
    page shows progress."""
    if request.method == "POST":
        form = forms.SubscriberImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                form.add_error("file", "This file isn't UTF-8 text. Save it as “CSV UTF-8”.")
            else:
                job = import_services.subscriber_import_queue(
                    tenant=request.tenant,
                    filename=upload.name,
                    content=text,
                    consent_text=form.cleaned_data["consent_text"],
                    user=request.user,
                )
                enqueue_on_commit(import_subscribers_task, request.tenant.pk, job.pk)
                return redirect("subscribers_import_detail", import_id=job.pk)
    else:
        form = forms.SubscriberImportForm()
    with tenant_scope(request.tenant):
        recent = list(SubscriberImport.objects.order_by("-pk")[:10])
    return render(
        request,
        "messaging/subscribers_import.html",
        {"form": form, "imports": recent, "sms_tab": "subscribers"},
        status=422 if form.errors else 200,
    )


@require_GET
@tenant_view(read=Role.ADMIN)
def subscribers_import_detail(request, import_id: int):
    job = selectors.get_subscriber_import(request.tenant, import_id)
    partial = request.headers.get("HX-Request") == "true"  # htmx polling for progress
    template = (
        "messaging/_subscribers_import_progress.html"
        if partial
        else "messaging/subscribers_import_detail.html"
    )
    return render(request, template, {"job": job, "sms_tab": "subscribers"})


# --- inbox ----------------------------------------------------------------------------------

INBOX_FILTERS = {"unread": Q(unread_count__gt=0), "attention": Q(needs_attention=True)}


@require_GET
@tenant_view()
def inbox(request):
    """Conversations, the latest first; keyset pages (?after=<id> of the last one shown)."""
    show = request.GET.get("show", "")
    show = show if show in INBOX_FILTERS else ""
    after = _int(request.GET.get("after"))
    with tenant_scope(request.tenant):
        rows = Subscriber.objects.filter(last_message_at__isnull=False)
        if show:
            rows = rows.filter(INBOX_FILTERS[show])
        if after:
            # The page ends at that conversation's place in the order; if a new text has moved
            # it up since, the next page repeats a few rows rather than skipping any.
            anchor = (
                Subscriber.objects.filter(pk=after, last_message_at__isnull=False)
                .values_list("last_message_at", flat=True)
                .first()
            )
            if anchor is not None:
                rows = rows.filter(
                    Q(last_message_at__lt=anchor) | Q(last_message_at=anchor, pk__lt=after)
                )
        last_text = InboundMessage.objects.filter(subscriber=OuterRef("pk")).order_by("-id")
        page = list(
            rows.select_related("member")
            .annotate(last_text=Subquery(last_text.values("body")[:1]))
            .order_by("-last_message_at", "-pk")[: PAGE + 1]
        )
    page, next_url = keyset_page(request, page, PAGE)
    return render(
        request,
        "messaging/inbox.html",
        {
            "conversations": page,
            "show": show,
            "next_url": next_url,
            "first_url": None if after is None else "?" + urlencode({"show": show} if show else {}),
            "sms_tab": "inbox",
        },
    )


def _conversation_page(request, subscriber: Subscriber, form, *, status: int = 200):
    can_reply = request.membership.allows(Role.MARKETER)
    with tenant_scope(request.tenant):
        thread = _thread(subscriber)
    # Opening a conversation reads it for the team (a possible opt-out stays flagged until
    # resolved). Viewers only look: their visit leaves it unread for someone who can answer.
    if request.method == "GET" and can_reply and subscriber.unread_count:
        inbox_services.inbox_mark_read(subscriber=subscriber)
    return render(
        request,
        "messaging/inbox_conversation.html",
        {
            "subscriber": subscriber,
            "thread": thread,
            "form": form,
            "can_reply": can_reply,
            "unsubscribed": subscriber.status == SubscriberStatus.UNSUBSCRIBED,
            "sms_tab": "inbox",
        },
        status=status,
    )


@require_GET
@tenant_view()
def inbox_conversation(request, subscriber_id: int):
    subscriber = selectors.get_subscriber_by_id(request.tenant, subscriber_id)
    return _conversation_page(request, subscriber, forms.ReplyForm())


@require_POST
@tenant_view(write=Role.MARKETER)
def inbox_resolve(request, subscriber_id: int):
    """A person decided about a text that might be an opt-out; the flag goes, audited."""
    subscriber = selectors.get_subscriber_by_id(request.tenant, subscriber_id)
    inbox_services.inbox_resolve(subscriber=subscriber, actor=request.user)
    messages.success(request, "Marked as resolved.")
    return redirect("inbox_conversation", subscriber_id=subscriber.pk)


@require_POST
@tenant_view(write=Role.MARKETER)
def inbox_reply(request, subscriber_id: int):
    subscriber = selectors.get_subscriber_by_id(request.tenant, subscriber_id)
    form = forms.ReplyForm(request.POST)
    if form.is_valid():
        try:
            inbox_services.inbox_reply(
                subscriber=subscriber,
                body=form.cleaned_data["body"],
                actor=request.user,
                now=timezone.now(),
            )
        except BodyInvalid as error:
            form.add_error("body", str(error))
        else:
            if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
                messages.warning(
                    request,
                    "Reply saved but not sent: this number has unsubscribed, and nothing more "
                    "goes to it until it opts in again (START).",
                )
            else:
                messages.success(request, "Reply queued; its status shows in the thread.")
            return redirect("inbox_conversation", subscriber_id=subscriber.pk)
    return _conversation_page(request, subscriber, form, status=422)


# --- settings and senders -------------------------------------------------------------------


def _settings_page(request, *, form, connect_form, status: int = 200):
    tenant = request.tenant
    with tenant_scope(tenant):
        senders = list(Sender.objects.order_by("-is_default", "created_at"))
        current = setup.messaging_settings_get(tenant)
    default = next((s for s in senders if s.is_default), None)
    return render(
        request,
        "messaging/settings.html",
        {
            "form": form,
            "connect_form": connect_form,
            "settings": current,
            "senders": senders,
            # No sender yet: the brand's first text creates the sandbox one.
            "sandbox_default": default is None or default.kind == SenderKind.SANDBOX,
            "inbound_url": (django_settings.PUBLIC_BASE_URL or request.build_absolute_uri("/")[:-1])
            + reverse("twilio_inbound"),
            "sms_tab": "settings",
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def sms_settings(request):
    tenant = request.tenant
    with tenant_scope(tenant):
        # The form writes its values onto the instance while validating: a copy of its own.
        instance = setup.messaging_settings_get(tenant)
        form = forms.MessagingSettingsForm(
            request.POST if request.method == "POST" else None, instance=instance
        )
        if request.method == "POST" and form.is_valid():
            # The service saves only what differs, and versions a new disclosure text.
            changes = {name: form.cleaned_data[name] for name in setup.SETTINGS_FIELDS}
            try:
                with transaction.atomic():
                    setup.messaging_settings_update(
                        tenant=tenant, changes=changes, actor=request.user
                    )
            except ValidationError as error:
                _form_errors(form, error)
            else:
                messages.success(request, "SMS settings saved.")
                return redirect("sms_settings")
    return _settings_page(
        request,
        form=form,
        connect_form=forms.SenderConnectForm(),
        status=422 if form.errors else 200,
    )


@require_POST
@tenant_view(write=Role.ADMIN)
def sms_sender_connect(request):
    tenant = request.tenant
    connect_form = forms.SenderConnectForm(request.POST)
    if connect_form.is_valid():
        data = connect_form.cleaned_data
        try:
            sender = setup.sender_connect_twilio(
                tenant=tenant,
                account_sid=data["account_sid"],
                auth_token=data["auth_token"],
                from_number=data["from_number"] or None,
                messaging_service_sid=data["messaging_service_sid"],
                mps=data["mps"],
                actor=request.user,
            )
        except setup.SetupError as error:
            # The form checked the SIDs, the token and the MPS; what the service can still
            # refuse is the From number (not a number, or another brand's).
            connect_form.add_error("from_number" if data["from_number"] else None, str(error))
        else:
            messages.success(request, f"Connected Twilio ({sender}). New texts go out through it.")
            return redirect("sms_settings")
    with tenant_scope(tenant):
        form = forms.MessagingSettingsForm(instance=setup.messaging_settings_get(tenant))
    return _settings_page(request, form=form, connect_form=connect_form, status=422)


@require_POST
@tenant_view(write=Role.ADMIN)
def sms_sender_sandbox(request):
    setup.sender_use_sandbox(tenant=request.tenant, actor=request.user)
    messages.success(
        request, "The sandbox is the default sender: texts go to the phone simulator only."
    )
    return redirect("sms_settings")


# --- usage ---------------------------------------------------------------------------------

USAGE_MONTHS = 12
USAGE_COLUMNS = ("month", "messages_sent", "segments", "inbound_messages", "estimated_cost")


@require_GET
@tenant_view()
def settings_usage(request):
    """Texts per calendar month in the brand's zone (the last 12, this one so far first):
    handed to the carrier, segments billed, texts received, and the estimated cost. ?format=csv
    downloads the same rows."""
    tenant = request.tenant
    price = setup.messaging_settings_get(tenant).price_per_segment
    months = selectors.usage_by_month(
        tenant, price_per_segment=price, now=timezone.now(), months=USAGE_MONTHS
    )
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-{tenant.slug}.csv"'
        writer = csv.writer(response)
        writer.writerow(USAGE_COLUMNS)
        for month in months:
            writer.writerow(
                [
                    month.month.strftime("%Y-%m"),
                    month.messages,
                    month.segments,
                    month.inbound,
                    month.cost,
                ]
            )
        return response
    return render(
        request,
        "messaging/usage.html",
        {
            "months": months,
            "this_month": months[0],
            "price_per_segment": price,
            "currency": program_get(tenant).currency,
            "any_texts": any(m.messages or m.inbound for m in months),
            "settings_tab": "usage",
        },
    )


# --- phone simulator ------------------------------------------------------------------------


def _test_number(raw: str | None) -> str:
    number = (raw or "").strip()
    if number and not number.startswith("+"):
        number = "+" + number  # a "+" that arrived unencoded in a query string is a space
    return number if number in TEST_NUMBER_SET else TEST_NUMBERS[0][0]


@require_http_methods(["GET", "POST"])
@tenant_view(read=Role.MARKETER, write=Role.MARKETER)
def sms_simulator(request):
    """A test handset texting the sandbox number through the real webhook."""
    tenant = request.tenant
    sender = setup.sender_default(tenant)
    sandbox = sender.kind == SenderKind.SANDBOX
    if request.method == "POST":
        form = forms.SimulatorForm(request.POST)
        number = _test_number(request.POST.get("number"))
        if not sandbox:
            messages.error(request, "The simulator texts the sandbox only; make it the default.")
            return redirect("sms_settings")
        if form.is_valid():
            number = form.cleaned_data["number"]
            base_url = django_settings.PUBLIC_BASE_URL or request.build_absolute_uri("/")[:-1]
            try:
                code = simulator_text(
                    sender=sender,
                    from_number=number,
                    body=form.cleaned_data["body"],
                    base_url=base_url,
                )
            except NotSandbox:
                code = None
            if code != 200:
                messages.error(
                    request,
                    f"The webhook refused the text ({code}). If the dashboard is behind a proxy, "
                    "set PUBLIC_BASE_URL to its public address.",
                )
            return redirect(f"{reverse('sms_simulator')}?{urlencode({'number': number})}")
        status = 422
    else:
        number = _test_number(request.GET.get("number"))
        form = forms.SimulatorForm(initial={"number": number})
        status = 200
    thread = simulator_thread(tenant, number) if sandbox else []
    context = {"number": number, "thread": thread, "sandbox": sandbox}
    if request.headers.get("HX-Request") == "true":  # htmx polling the thread
        return render(request, "messaging/_simulator_thread.html", context)
    with tenant_scope(tenant):
        subscriber = Subscriber.objects.filter(phone=number).first()
        join_keyword = (setup.messaging_settings_get(tenant).join_keywords or ["JOIN"])[0]
    return render(
        request,
        "messaging/simulator.html",
        {
            **context,
            "form": form,
            "numbers": TEST_NUMBERS,
            "number_label": dict(TEST_NUMBERS)[number],
            "subscriber": subscriber,
            "quick": ["STOP", "Y", "HELP", join_keyword],
            "sender": sender,
            "sms_tab": "simulator",
        },
        status=status,
    )
