"""Dashboard forms of the SMS channel. They validate input; services do the writing."""

from __future__ import annotations

from django import forms

from messaging.keywords import RESERVED, normalize_keyword
from messaging.models import MessagingSettings
from messaging.services.setup import ACCOUNT_SID, SERVICE_SID, SETTINGS_FIELDS
from messaging.simulator import TEST_NUMBERS

UPLOAD_MAX_BYTES = 5 * 2**20
BODY_MAX_CHARACTERS = 1600  # what Twilio accepts (compliance.md, Message encoding)

# The law's limits (compliance.md, "When a marketing text may go out"); the model's check
# constraints hold the same numbers, so nothing looser can be saved by any path.
EARLIEST_HOUR = 8
LATEST_HOUR = 21
HOURS_PER_MESSAGE = 12

# How orders are credited to texts (messaging/attribution.py); the model's validators and
# check constraint hold the same limits.
ATTRIBUTION_FIELDS = ("attribution_click_days", "attribution_delivery_hours")
CLICK_DAYS = (1, 30)
DELIVERY_HOURS_MAX = 7 * 24


class MessagingSettingsForm(forms.ModelForm):
    """The brand's compliance settings. Looser-than-law values are field errors here; the
    model's validators and check constraints (run by the ModelForm's full_clean) are the
    backstop, so a bad value is a form error and never a 500."""

    join_keywords = forms.CharField(
        max_length=200,
        help_text="Comma-separated, e.g. JOIN, VIP. A text that is one of these alone starts a "
        "double opt-in: the number gets “Reply Y to confirm…” and is subscribed only by that "
        "reply. STOP, START, HELP and the other carrier keywords can't be used.",
    )

    terms_url = forms.URLField(
        label="Terms URL",
        required=False,
        assume_scheme="https",
        help_text="Linked from the opt-in confirmation when set.",
    )
    privacy_url = forms.URLField(
        label="Privacy URL",
        required=False,
        assume_scheme="https",
        help_text="Linked from the opt-in confirmation when set.",
    )

    class Meta:
        model = MessagingSettings
        fields = list(SETTINGS_FIELDS)
        labels = {
            "attribution_click_days": "Credit an order to a click within … days",
            "attribution_delivery_hours": "…or to a delivered text within … hours",
            "window_start_hour": "Marketing texts from (hour)",
            "window_end_hour": "Marketing texts until (hour)",
            "cap_messages": "At most … marketing texts",
            "cap_hours": "… per subscriber in any … hours",
            "opt_out_footer": "End marketing texts with opt-out language",
            "smart_encoding": "Smart encoding",
        }
        help_texts = {
            "brand_name": "Starts every compliance text (“Alice's Bakery: You're unsubscribed…”). "
            "Blank: the brand's name.",
            "help_text": "The answer to HELP or INFO is “{brand}: {this text} Reply STOP to "
            "cancel. Msg&data rates may apply.”",
            "frequency_text": "Goes in the opt-in confirmation: “Recurring automated marketing "
            "msgs” or “up to N msgs/month”.",
            "disclosure_text": "The exact text shown where people subscribe. It is kept with every "
            "consent record; changing it starts a new version.",
            "window_start_hour": "In the recipient's local time (8–20). Federal law: no "
            "marketing texts before 8:00. An unknown time zone gets only the hours legal in "
            "every zone the number could be in.",
            "window_end_hour": "Texts stop at this hour. Federal law: not after 21:00; numbers "
            "in Florida, Oklahoma, Washington, Maryland and Connecticut stop at 20:00 whatever "
            "is set here. A text held back is deferred to the next allowed moment, not dropped.",
            "cap_messages": "The ceiling is one marketing text per subscriber per 12 hours; you "
            "may allow fewer. Florida and Oklahoma numbers also get at most 3 per 24 hours.",
            "cap_hours": "Transactional texts (opt-in confirmations, HELP answers, reward codes) "
            "don't count and aren't held back.",
            "opt_out_footer": "Added to marketing texts that don't already say STOP; it counts "
            "toward the segments shown to marketers.",
            "footer_text": "Must say how to opt out (include STOP).",
            "smart_encoding": "Replaces look-alike characters (curly quotes, long dashes) so one "
            "of them doesn't make the whole text UCS-2: 70 characters per segment instead of 160.",
            "attribution_click_days": "Last-click attribution (1–30 days): an order placed within "
            "this many days after someone tapped a tracked link in a marketing text is credited "
            "to the text of their last such click. Each order is credited once, to one text.",
            "attribution_delivery_hours": "Orders without such a click are credited to the last "
            "marketing text delivered to the buyer within this many hours before the order "
            "(0–168; 0 turns this off, so only clicks count). Orders already credited keep "
            "their text when you change either window.",
        }
        widgets = {
            "disclosure_text": forms.Textarea(attrs={"rows": 4}),
            "help_text": forms.TextInput(),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["join_keywords"] = ", ".join(self.instance.join_keywords)
        # Hints for the browser's number inputs; the rules themselves are in clean().
        for name, low, high in (
            ("window_start_hour", EARLIEST_HOUR, LATEST_HOUR - 1),
            ("window_end_hour", EARLIEST_HOUR + 1, LATEST_HOUR),
            ("cap_messages", 1, None),
            ("cap_hours", HOURS_PER_MESSAGE, None),
            ("attribution_click_days", CLICK_DAYS[0], CLICK_DAYS[1]),
            ("attribution_delivery_hours", 0, DELIVERY_HOURS_MAX),
        ):
            self.fields[name].widget.attrs.update({"min": low, **({"max": high} if high else {})})
        version = self.instance.disclosure_version
        self.fields["disclosure_text"].help_text += f" Now version {version}."
        # A post without the attribution windows (a client that knows only the compliance
        # fields) leaves them as they are; an emptied field is still an error.
        for name in ATTRIBUTION_FIELDS:
            self.fields[name].required = False

    def _window(self, name: str) -> int:
        value = self.cleaned_data.get(name)
        if value is None:
            if self.is_bound and name not in self.data:
                return getattr(self.instance, name)
            raise forms.ValidationError("Give a number.")
        return value

    def clean_attribution_click_days(self) -> int:
        return self._window("attribution_click_days")

    def clean_attribution_delivery_hours(self) -> int:
        return self._window("attribution_delivery_hours")

    @property
    def compliance_fields(self) -> list:
        return [self[name] for name in SETTINGS_FIELDS]

    @property
    def attribution_fields(self) -> list:
        return [self[name] for name in ATTRIBUTION_FIELDS]

    def clean_join_keywords(self) -> list[str]:
        keywords = []
        for raw in self.cleaned_data["join_keywords"].split(","):
            if not raw.strip():
                continue
            keyword = normalize_keyword(raw)
            if not keyword:
                raise forms.ValidationError(f"“{raw.strip()}” has no letters or digits.")
            if keyword in RESERVED:
                raise forms.ValidationError(
                    f"{keyword} is a carrier keyword (opt-out, opt-in or help); choose another."
                )
            if len(keyword) > 20:
                raise forms.ValidationError(f"{keyword} is longer than 20 characters.")
            if keyword not in keywords:
                keywords.append(keyword)
        if not keywords:
            raise forms.ValidationError("Give at least one keyword, e.g. JOIN.")
        return keywords

    def clean(self):
        data = super().clean()
        start, end = data.get("window_start_hour"), data.get("window_end_hour")
        if start is not None and start < EARLIEST_HOUR:
            self.add_error(
                "window_start_hour",
                f"Federal law: no marketing texts before {EARLIEST_HOUR}:00 in the recipient's "
                "time zone.",
            )
        if end is not None and end > LATEST_HOUR:
            self.add_error(
                "window_end_hour",
                f"Federal law: no marketing texts after {LATEST_HOUR}:00 in the recipient's "
                "time zone.",
            )
        elif start is not None and end is not None and end <= start:
            self.add_error("window_end_hour", "The window must end after it starts.")
        messages, hours = data.get("cap_messages"), data.get("cap_hours")
        if messages and hours and hours < messages * HOURS_PER_MESSAGE:
            self.add_error(
                "cap_messages",
                f"At most one marketing text per {HOURS_PER_MESSAGE} hours: {messages} texts "
                f"need a window of at least {messages * HOURS_PER_MESSAGE} hours.",
            )
        footer = data.get("footer_text") or ""
        if data.get("opt_out_footer") and "STOP" not in footer.upper():
            self.add_error("footer_text", "Say how to opt out: include STOP.")
        return data


class SenderConnectForm(forms.Form):
    """A Twilio number or Messaging Service. The token is never rendered back."""

    account_sid = forms.CharField(
        label="Account SID",
        max_length=34,
        help_text="From the Twilio console: AC followed by 32 characters.",
    )
    auth_token = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        max_length=100,
        help_text="Stored encrypted; it is never shown again.",
    )
    from_number = forms.CharField(
        label="From number",
        required=False,
        max_length=20,
        help_text="The Twilio number texts come from, e.g. +12125550100…",
    )
    messaging_service_sid = forms.CharField(
        label="Messaging Service SID",
        required=False,
        max_length=34,
        help_text="…or a Messaging Service (MG followed by 32 characters). Give one of the two.",
    )
    mps = forms.IntegerField(
        label="Throughput (MPS)",
        min_value=1,
        max_value=1000,
        initial=1,
        help_text="Messages per second your number or service may send: 1 for a long code.",
    )

    def clean_account_sid(self) -> str:
        value = self.cleaned_data["account_sid"].strip()
        if not ACCOUNT_SID.match(value):
            raise forms.ValidationError("The Account SID is AC followed by 32 hex characters.")
        return value

    def clean_auth_token(self) -> str:
        value = self.cleaned_data["auth_token"].strip()
        if len(value) < 16:
            raise forms.ValidationError("This is too short for a Twilio auth token.")
        return value

    def clean_messaging_service_sid(self) -> str:
        value = self.cleaned_data["messaging_service_sid"].strip()
        if value and not SERVICE_SID.match(value):
            raise forms.ValidationError(
                "The Messaging Service SID is MG followed by 32 hex characters."
            )
        return value

    def clean(self):
        data = super().clean()
        number, service = data.get("from_number"), data.get("messaging_service_sid")
        if "messaging_service_sid" in data and bool(number) == bool(service):
            self.add_error("from_number", "Give either a From number or a Messaging Service SID.")
        return data


class SubscriberImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, with a header row; up to 5 MB.")
    consent_text = forms.CharField(
        label="Disclosure text",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The text these people agreed to, used for rows without a consent_text "
        "column value.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"This file is {upload.size / 2**20:.1f} MB; files up to "
                f"{UPLOAD_MAX_BYTES // 2**20} MB are accepted. Split it and import each part."
            )
        return upload


class ReplyForm(forms.Form):
    body = forms.CharField(
        label="Reply",
        max_length=BODY_MAX_CHARACTERS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sent as written (no personalization tags); not held by quiet hours or caps.",
    )


class SimulatorForm(forms.Form):
    number = forms.ChoiceField(choices=TEST_NUMBERS)
    body = forms.CharField(label="Text", max_length=BODY_MAX_CHARACTERS)


__all__ = [
    "MessagingSettingsForm",
    "ReplyForm",
    "SenderConnectForm",
    "SimulatorForm",
    "SubscriberImportForm",
]
