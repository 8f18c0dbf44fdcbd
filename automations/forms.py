"""The campaign composer's form: what the marketer types, turned into the arguments of
automations.services.campaigns (which checks what only it can: bodies, segments, A/B).

Times are read and shown in the brand's zone (the view activates it), A/B variants are up to
five fixed slots A–E whose blank bodies are ignored, and the service's errors (keys such as
"variants.1.body") land beside the field they are about."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.utils import timezone

from automations.metrics import WINNER_METRICS
from automations.models import Campaign, SendMode, WinnerMetric
from automations.services.campaigns import MAX_VARIANTS, VariantSpec

LABELS = "ABCDE"[:MAX_VARIANTS]
BODY_HELP = (
    "Tags: {first_name}, {points_balance}, {vip_tier}, {brand} … with a fallback as "
    "{first_name|there}. Links are shortened and tracked. The opt-out footer is added for you."
)


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=100)
    segment_ids = forms.TypedMultipleChoiceField(
        label="Send to", coerce=int, widget=forms.CheckboxSelectMultiple
    )
    exclude_segment_ids = forms.TypedMultipleChoiceField(
        label="Leave out",
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="People in these segments get nothing, even if they are in one above.",
    )
    body = forms.CharField(
        label="Message",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=BODY_HELP,
    )
    ab_test = forms.BooleanField(label="A/B test 2 to 5 versions", required=False)
    test_percent = forms.IntegerField(
        label="Test share (%)",
        min_value=1,
        max_value=99,
        initial=20,
        required=False,
        help_text="Of the texted audience; the winner goes to the rest.",
    )
    winner_metric = forms.ChoiceField(
        label="Winner by",
        choices=[(m.value, m.label) for m in WinnerMetric if m.value in WINNER_METRICS],
        initial=WinnerMetric.CLICKS,
        required=False,
    )
    wait_minutes = forms.IntegerField(
        label="Wait before choosing (minutes)",
        min_value=1,
        max_value=7 * 24 * 60,
        initial=240,
        required=False,
        help_text="Counted from the last test text's send time.",
    )
    send_mode = forms.ChoiceField(
        label="When",
        choices=SendMode.choices,
        initial=SendMode.NOW,
        widget=forms.RadioSelect,
    )
    send_at = forms.DateTimeField(
        label="Send at",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    local_date = forms.DateField(
        label="Date", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    local_time = forms.TimeField(
        label="Local time",
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="Each person gets it at this time in their own zone.",
    )
    smart_sending_hours = forms.IntegerField(
        label="Smart sending (hours)",
        min_value=1,
        max_value=24 * 14,
        required=False,
        help_text="Skip numbers that got a marketing text in the last this many hours; blank: off.",
    )
    holdout_percent = forms.IntegerField(
        label="Holdout (%)",
        min_value=0,
        max_value=50,
        initial=0,
        required=False,
        help_text="A share of the audience deliberately not texted, to measure the revenue the "
        "campaign added (0: none).",
    )
    expires_hours = forms.IntegerField(
        label="Give up after (hours)",
        min_value=1,
        max_value=24 * 7,
        required=False,
        help_text="A text held back (quiet hours, caps) longer than this is not sent; blank: "
        "never.",
    )

    def __init__(self, *args, segments=(), now: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(s.pk, s.name) for s in segments]
        self.fields["segment_ids"].choices = choices
        self.fields["exclude_segment_ids"].choices = choices
        self.now = now or timezone.now()
        for n, label in enumerate(LABELS):
            self.fields[f"variant_{n}"] = forms.CharField(
                label=f"Version {label}",
                required=False,
                widget=forms.Textarea(attrs={"rows": 4}),
            )

    @property
    def variant_fields(self) -> list:
        return [self[f"variant_{n}"] for n in range(len(LABELS))]

    @classmethod
    def initial_of(cls, campaign: Campaign, variants) -> dict:
        initial = {
            name: getattr(campaign, name)
            for name in (
                "name",
                "segment_ids",
                "exclude_segment_ids",
                "body",
                "ab_test",
                "test_percent",
                "winner_metric",
                "wait_minutes",
                "send_mode",
                "send_at",
                "local_date",
                "local_time",
                "smart_sending_hours",
                "holdout_percent",
                "expires_hours",
            )
        }
        if campaign.send_at is not None:
            initial["send_at"] = timezone.localtime(campaign.send_at)
        for n, variant in enumerate(variants[: len(LABELS)]):
            initial[f"variant_{n}"] = variant.body
        return initial

    def clean(self):
        data = super().clean()
        mode = data.get("send_mode")
        if mode == SendMode.AT:
            send_at = data.get("send_at")
            if send_at is None:
                self.add_error("send_at", "Choose the date and time to send at.")
            elif send_at <= self.now:
                self.add_error("send_at", "That time has passed; choose a later one or send now.")
        if mode == SendMode.LOCAL:
            if data.get("local_date") is None:
                self.add_error("local_date", "Choose the date.")
            if data.get("local_time") is None:
                self.add_error("local_time", "Choose the local time of day.")
            elif data.get("local_date") and data["local_date"] < timezone.localdate(self.now):
                self.add_error("local_date", "That date has passed.")
        if data.get("ab_test"):
            if len(self.variants()) < 2:
                self.add_error("ab_test", "Write at least two versions, or turn the A/B test off.")
        elif not (data.get("body") or "").strip():
            self.add_error("body", "Write the message.")
        return data

    def variants(self) -> list[VariantSpec]:
        """The versions written, labelled by their slot (A–E)."""
        data = self.cleaned_data
        return [
            VariantSpec(label, data[f"variant_{n}"])
            for n, label in enumerate(LABELS)
            if (data.get(f"variant_{n}") or "").strip()
        ]

    def service_fields(self) -> dict:
        """The campaign fields the services take (A/B ones only for an A/B test)."""
        data = self.cleaned_data
        mode = data["send_mode"]
        fields = {
            "name": data["name"],
            "segment_ids": data["segment_ids"],
            "exclude_segment_ids": data.get("exclude_segment_ids") or [],
            "body": "" if data.get("ab_test") else data.get("body", ""),
            "send_mode": mode,
            "send_at": data.get("send_at") if mode == SendMode.AT else None,
            "local_date": data.get("local_date") if mode == SendMode.LOCAL else None,
            "local_time": data.get("local_time") if mode == SendMode.LOCAL else None,
            "smart_sending_hours": data.get("smart_sending_hours"),
            "holdout_percent": data.get("holdout_percent") or 0,
            "expires_hours": data.get("expires_hours"),
        }
        if data.get("ab_test"):
            fields |= {
                "test_percent": data.get("test_percent") or 20,
                "winner_metric": data.get("winner_metric") or WinnerMetric.CLICKS,
                "wait_minutes": data.get("wait_minutes") or 240,
            }
        return fields

    def add_service_errors(self, errors: dict) -> None:
        """The service's field errors beside their fields ("variants.1.body" → version B)."""
        written = [n for n in range(len(LABELS)) if (self.data.get(f"variant_{n}") or "").strip()]
        for key, messages in errors.items():
            field = key
            if key.startswith("variants."):
                index = int(key.split(".")[1])
                field = f"variant_{written[index]}" if index < len(written) else "ab_test"
            elif key == "variants":
                field = "ab_test"
            self.add_error(field if field in self.fields else None, messages)
