"""Dashboard forms of the loyalty program. They validate input; services do the writing."""

from __future__ import annotations

import zoneinfo

from django import forms

from programs.models import Program, RewardKind, Tier, TierBasis, TierPeriod


class ProgramForm(forms.ModelForm):
    class Meta:
        model = Program
        fields = [
            "name",
            "points_name",
            "earn_rate",
            "rounding",
            "enrollment_bonus",
            "birthday_bonus",
            "sms_bonus",
            "pending_days",
            "expiry_policy",
            "expiry_days",
        ]
        help_texts = {
            "earn_rate": "Points per unit of currency spent, before tier and event multipliers.",
            "pending_days": "Order points become spendable after this many days (returns).",
            "expiry_days": "Needed unless points never expire.",
            "birthday_bonus": "Paid once a year on the member's birthday (brand's time zone).",
            "sms_bonus": "Paid once, when the member first subscribes to texts.",
        }

    def clean(self):
        data = super().clean()
        if data.get("expiry_policy") not in (None, "never") and not data.get("expiry_days"):
            self.add_error("expiry_days", "Give the number of days before points expire.")
        return data

    def _post_clean(self):
        # Model validation runs in program_update(); the form only checks its own fields.
        pass


class TierForm(forms.Form):
    name = forms.CharField(max_length=60)
    threshold = forms.DecimalField(min_value=0, max_digits=14, decimal_places=2)
    basis = forms.ChoiceField(choices=TierBasis.choices)
    period = forms.ChoiceField(choices=TierPeriod.choices)
    earn_multiplier = forms.DecimalField(
        min_value=1, max_value=10, max_digits=5, decimal_places=2, initial=1
    )
    perks = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args, ladder: list[Tier] = (), **kwargs):
        super().__init__(*args, **kwargs)
        if ladder:  # one ladder: new tiers take the basis and period of the others
            self.fields["basis"].initial = ladder[0].basis
            self.fields["period"].initial = ladder[0].period


class RewardForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=RewardKind.choices)
    points_cost = forms.IntegerField(min_value=1, max_value=1_000_000_000)
    value = forms.CharField(
        required=False,
        max_length=200,
        help_text="Amount off (5.00), percent (15), product SKU, or what to give; "
        "empty for free shipping.",
    )


class MultiplierEventForm(forms.Form):
    name = forms.CharField(max_length=100)
    multiplier = forms.DecimalField(min_value=1.01, max_value=10, max_digits=5, decimal_places=2)
    starts_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    ends_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    # The queryset is set per request: a tenant-scoped manager has no tenant at import time.
    tier = forms.ModelChoiceField(queryset=None, required=False, empty_label="Everyone")

    def __init__(self, *args, ladder: list[Tier] = (), zone: str = "UTC", **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = zoneinfo.ZoneInfo(zone)
        self.fields["tier"].queryset = Tier.objects.filter(pk__in=[t.pk for t in ladder])
        for name in ("starts_at", "ends_at"):
            self.fields[name].help_text = f"In the brand's time zone ({zone})."

    def clean(self):
        data = super().clean()
        for name in ("starts_at", "ends_at"):
            if data.get(name):  # datetime-local has no offset: it is the brand's local time
                data[name] = data[name].replace(tzinfo=self.zone)
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", "The event must end after it starts.")
        return data


class AdjustmentForm(forms.Form):
    points = forms.IntegerField(
        min_value=-1_000_000_000,
        max_value=1_000_000_000,
        help_text="Positive to add, negative to take away.",
    )
    reason = forms.CharField(max_length=300, help_text="Shown in the member's ledger.")

    def clean_points(self):
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("An adjustment moves at least one point.")
        return points


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV with a header row: external_id (required), phone, email, first_name, "
        "last_name, birthday (YYYY-MM-DD or --MM-DD), timezone, tags (separated by ;)."
    )


__all__ = [
    "AdjustmentForm",
    "ImportForm",
    "MultiplierEventForm",
    "ProgramForm",
    "RewardForm",
    "TierForm",
]
