"""A new brand from sign-up to its first automated text, the way the README walks it: every
step through the pages a person sees, the checklist ticking itself off, and the welcome flow's
text arriving on the phone simulator. With SCREENSHOTS=1 its pictures are the README's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from messaging.compliance import next_window_time, place_of, recipient_zones, window_for
from messaging.simulator import TEST_NUMBERS

from .conftest import axe_violations, shot

PASSWORD = "a-long-unusual-passphrase"


def number_in_window(now: datetime) -> str:
    """A simulator number inside its sending window now and for the next half hour, by the
    dispatcher's own rules (marketing texts wait for 08:00–21:00 in every zone the number
    could be in, 20:00 in some states); the flow's text must not wait."""
    for number, _label in TEST_NUMBERS:
        place = place_of(number)
        zones = recipient_zones("", place, "America/Chicago")
        window = window_for(place.region, 8, 21)
        moments = (now, now + timedelta(minutes=30))
        if all(next_window_time(moment, zones, window) == moment for moment in moments):
            return number
    raise AssertionError(f"no simulator number is in its sending window at {now:%H:%M} UTC")


def step(page: Page, key: str):
    return page.locator(f'.checklist li[data-step="{key}"]')


def expect_done(page: Page, *keys: str) -> None:
    for key in keys:
        expect(step(page, key)).to_have_class("done")


def no_serious_violations(page: Page) -> None:
    assert axe_violations(page) == [], page.url


def test_sign_up_to_first_automated_text(page: Page):
    email = f"maya-{uuid.uuid4().hex[:6]}@juniper.test"
    brand = "Juniper & Sage"  # a name taken already is fine: the brand's slug is made unique

    # 1. Sign up from the sign-in page.
    page.goto("/login/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "01-sign-up")
    no_serious_violations(page)
    page.get_by_role("button", name="Create account").click()

    # 2. The brand: name, zone, currency, default country.
    expect(page.get_by_role("heading", name="Create your brand")).to_be_visible()
    page.get_by_label("Brand name").fill(brand)
    page.get_by_label("Time zone").select_option("America/Chicago")
    page.get_by_label("Currency").select_option("USD")
    page.get_by_label("Default country").select_option("US")
    shot(page, "02-create-brand")
    no_serious_violations(page)
    page.get_by_role("button", name="Create brand").click()

    # 3. Home: the checklist, nothing done yet.
    expect(page.get_by_role("heading", name=brand, exact=True)).to_be_visible()
    expect(page.get_by_text("0 of 7 done")).to_be_visible()
    shot(page, "03-home-checklist")
    no_serious_violations(page)

    # 4. Program basics.
    step(page, "program").get_by_role("link").click()
    page.get_by_label("Name", exact=True).fill("Juniper Rewards")
    page.get_by_label("Points name").fill("sprigs")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Program settings saved.")).to_be_visible()
    page.get_by_role("link", name="Home").click()
    expect_done(page, "program")

    # 5. Tiers and rewards from the templates, in one click.
    page.get_by_role("button", name="Add starter tiers and rewards").click()
    expect(page.get_by_text("Added 3 tiers and 3 rewards.")).to_be_visible()
    expect_done(page, "program", "tiers_rewards")

    # 6. The sender: keep the sandbox; then the compliance texts, prefilled, read and saved.
    page.get_by_role("button", name="Keep the sandbox").click()
    expect(page.get_by_role("heading", name="SMS settings")).to_be_visible()
    shot(page, "04-sms-settings")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_role("link", name="Home").click()
    expect_done(page, "program", "tiers_rewards", "sender", "compliance")

    # 7. The welcome series from the prebuilt flows, switched on.
    step(page, "flow").get_by_role("link").click()
    welcome = page.locator("#prebuilt-welcome_series")
    welcome.get_by_label("Link to your shop").fill("https://juniper.example/shop")
    shot(page, "05-prebuilt-flows")
    welcome.get_by_role("button", name="Install as a draft").click()
    expect(page.get_by_role("heading", name="Welcome series")).to_be_visible()
    page.get_by_role("button", name="Switch on").click()
    expect(page.get_by_role("heading", name="Welcome series")).to_contain_text("Live")
    shot(page, "06-flow-live")
    no_serious_violations(page)

    # 8. The storefront's API key, shown once.
    page.get_by_role("link", name="Home").click()
    expect_done(page, "flow")
    step(page, "api_key").get_by_role("link").click()
    page.get_by_label("Name").fill("Storefront")
    page.get_by_role("button", name="Create API key").click()
    expect(page.locator("#new-api-key")).to_contain_text("lsk_")
    shot(page, "07-api-key")
    page.get_by_role("link", name="Home").click()
    expect_done(page, "api_key")

    # 9. The phone simulator: a number (in its daytime) texts JOIN, confirms with Y, and the
    # welcome flow's text arrives once the worker has run the flow and the dispatcher sent it.
    number = number_in_window(datetime.now(UTC))
    step(page, "first_text").get_by_role("link").click()
    page.get_by_role("link", name=number).click()
    quick = page.get_by_role("form", name="Quick replies")
    quick.get_by_role("button", name="JOIN").click()
    thread = page.locator("#simulator-thread")
    expect(thread).to_contain_text("Reply Y", timeout=30_000)
    quick.get_by_role("button", name="Y", exact=True).click()
    expect(thread).to_contain_text("Welcome", timeout=60_000)
    expect(thread).to_contain_text("Thanks for joining our texts", timeout=60_000)
    shot(page, "08-first-text")

    # 10. Home: every step done, the checklist makes way for the month's numbers.
    page.get_by_role("link", name="Home").click()
    expect(page.get_by_role("heading", name="Get set up")).to_have_count(0)
    expect(page.get_by_role("heading", name="This month")).to_be_visible()
    shot(page, "09-home")
    no_serious_violations(page)
