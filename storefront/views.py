"""Settings → Widget: the snippet to paste, the store addresses allowed to use it, the
customer-signing secret; and the widget's script itself."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django import forms
from django.conf import settings as django_settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from loyaltysms.models import Role
from loyaltysms.views import tenant_view
from storefront import services

SCRIPT = Path(__file__).resolve().parent / "widget.js"


class WidgetForm(forms.Form):
    allowed_origins = forms.CharField(
        label="Store addresses",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "https://shop.example.com"}),
        help_text="One per line, like https://shop.example.com. Only pages on these "
        "addresses can use the widget in a browser.",
    )
    enabled = forms.BooleanField(label="Widget switched on", required=False)


def _initial(widget) -> dict:
    return {"allowed_origins": "\n".join(widget.allowed_origins), "enabled": widget.enabled}


def _base_url(request) -> str:
    return django_settings.PUBLIC_BASE_URL or request.build_absolute_uri("/")[:-1]


@require_http_methods(["GET", "POST"])
@tenant_view(write=Role.ADMIN)
def settings_widget(request):
    widget = services.widget_get(request.tenant)
    form = WidgetForm(request.POST or None, initial=_initial(widget))
    if request.method == "POST" and form.is_valid():
        try:
            services.widget_update(
                widget=widget,
                origins=form.cleaned_data["allowed_origins"].splitlines(),
                enabled=form.cleaned_data["enabled"],
                actor=request.user,
            )
        except ValidationError as error:
            form.add_error("allowed_origins", error.message_dict["allowed_origins"])
        else:
            messages.success(request, "Widget settings saved.")
            return redirect("settings_widget")
    return _page(request, widget, form, status=422 if form.errors else 200)


@require_POST
@tenant_view(write=Role.ADMIN)
def settings_widget_secret(request):
    widget = services.widget_get(request.tenant)
    secret = services.widget_secret_roll(widget=widget, actor=request.user)
    return _page(request, widget, None, new_secret=secret)


def _page(request, widget, form, *, status: int = 200, new_secret: str | None = None):
    if form is None:
        form = WidgetForm(
            initial={
                "allowed_origins": "\n".join(widget.allowed_origins),
                "enabled": widget.enabled,
            }
        )
    return render(
        request,
        "storefront/settings_widget.html",
        {
            "widget": widget,
            "form": form,
            "new_secret": new_secret,
            "base_url": _base_url(request),
            "settings_tab": "widget",
            "max_age_hours": int(services.SIGNATURE_MAX_AGE.total_seconds() // 3600),
        },
        status=status,
    )


@cache
def _script() -> bytes:
    return SCRIPT.read_bytes()


@require_GET
def widget_script(request):
    """The widget, at a stable address for stores' <script> tags (cached for five minutes)."""
    response = HttpResponse(_script(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response
