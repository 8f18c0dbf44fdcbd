"""Marketers' journeys through the dashboard, end to end, in a real browser against the real
server (gunicorn, a Celery worker and beat; see conftest.py).

Each test is one journey as a person does it: by the labels and roles on screen, checking
what the page shows. They share the server's database, so each makes what it needs with a
unique name, and each uses its own phone number of the simulator's four:

- the phone simulator's JOIN, Y, STOP:  +14155550144 (San Francisco)
- the inbox's two-way conversation:     +12125550142 (New York)

Whatever the time of day: marketing texts are held outside each recipient's send window, so
the campaign journey checks that every text was created and handed to the dispatcher (sent or
held), never that it was delivered by now. Confirmations, HELP answers and inbox replies are
transactional and go at any hour.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from .conftest import axe_violations, shot, sign_in

# A worker job (a campaign's texts, a dry run, a dispatcher round) gets this long.
WORKER = 60_000

JOIN_STOP_NUMBER = "+14155550144"
INBOX_NUMBER = "+12125550142"


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violations on the page as it stands."""
    assert axe_violations(page) == []


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def flash(page: Page, text: str | re.Pattern) -> None:
    expect(page.get_by_text(text).first).to_be_visible()


def htmx_settled(page: Page) -> None:
    """Wait for htmx to finish its swaps: new content gets its handlers as it settles, a
    moment after it appears (a person never acts faster than that; a test does)."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


@contextlib.contextmanager
def texted_back(page: Page, text: str):
    """The simulator's phone receives one more text holding `text` after the block (the
    dispatcher sends it within seconds; the thread polls)."""
    received = page.locator("#simulator-thread").get_by_role("listitem").filter(has_text=text)
    before = received.count()
    yield
    expect(received).to_have_count(before + 1, timeout=WORKER)


def card(page: Page, heading: str) -> Locator:
    """A page's card by its heading (cards without aria-labelledby aren't named regions)."""
    return page.locator("section").filter(has=page.get_by_role("heading", name=heading, exact=True))


# --- 1. segments ----------------------------------------------------------------------------
def test_segment_builder_counts_live_as_a_condition_changes_then_saves(page: Page) -> None:
    name = unique("Big balances")
    sign_in(page)
    nav(page, "Segments")
    expect(page.get_by_role("heading", name="Segments", level=1)).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="New segment").first.click()
    expect(page.get_by_role("heading", name="New segment", level=1)).to_be_visible()

    status = page.get_by_role("status")  # the live count, announced politely
    expect(status).to_have_text(re.compile(r"^[\d,]+ people match\.$"))
    everyone = _count(status.inner_text())

    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="+ Condition").click()
    htmx_settled(page)
    page.get_by_label("Field", exact=True).select_option(label="Points balance")
    operator = page.get_by_label("Points balance: operator")
    expect(operator).to_be_visible()
    htmx_settled(page)
    operator.select_option(label="is at least")
    htmx_settled(page)
    value = page.get_by_label("Points balance: value")

    value.fill("1")
    expect(status).not_to_have_text(f"{everyone:,} people match.")
    expect(status).to_have_text(re.compile(r"^[\d,]+ (people match|person matches)\.$"))
    with_points = _count(status.inner_text())
    assert 0 < with_points < everyone
    preview = page.get_by_role("region", name="Who matches now")
    expect(preview.get_by_role("table")).to_be_visible()  # a sample of who matches

    value.fill("100000000")  # nobody holds that much
    expect(status).to_have_text("0 people match.")
    expect(preview.get_by_text("No one matches these conditions.")).to_be_visible()

    value.fill("1")
    expect(status).to_have_text(
        f"{with_points:,} {'person matches' if with_points == 1 else 'people match'}."
    )
    expect(page.get_by_label("Rules", exact=True)).to_have_value(re.compile(r'"points_balance"'))
    assert_accessible(page)
    shot(page, "segment-builder")

    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("heading", name="Segments", level=1)).to_be_visible()
    flash(page, f"Created the segment {name}.")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name))
    row.scroll_into_view_if_needed()  # each row counts itself as it comes into view
    expect(row.get_by_role("cell").nth(1)).to_have_text(f"{with_points:,}")
    assert_accessible(page)


def _count(text: str) -> int:
    return int(re.match(r"[\d,]+", text).group().replace(",", ""))


# --- 2. campaigns ---------------------------------------------------------------------------
def test_campaign_composed_with_live_preview_sent_and_followed(page: Page) -> None:
    name = unique("Fresh beans")
    marker = uuid.uuid4().hex[:6]
    sign_in(page)
    nav(page, "Campaigns")
    assert_accessible(page)
    page.get_by_role("link", name="New campaign").first.click()
    expect(page.get_by_role("heading", name="New campaign", level=1)).to_be_visible()

    preview = page.get_by_role("region", name="Preview")
    expect(preview).to_contain_text("Choose who to send to")
    page.get_by_label("Name").fill(name)
    page.get_by_role("group", name="Send to").get_by_label(
        "Subscribers who aren't members yet"
    ).check()
    # The audience appears before there is a message to show.
    expect(preview).to_contain_text("subscribed now would get it")
    audience = int(preview.locator(".cmp-count").inner_text())
    assert audience >= 1  # the demo's +12125550171 joined by keyword

    page.get_by_label("Message").fill(f"Hi {{first_name|there}}! Fresh beans at {{brand}} {marker}")
    bubble = preview.locator(".bubble").first
    # Tags filled in (these people aren't members: the fallback), the footer added.
    expect(bubble).to_contain_text(f"Hi there! Fresh beans at Demo Coffee Co. {marker}")
    expect(bubble).to_contain_text("Reply STOP to opt out")
    expect(preview.locator(".bubble-meta").first).to_contain_text(
        re.compile(r"GSM-7 · \d+ characters · 1 segment · ")
    )
    expect(preview).to_contain_text(re.compile(r"about \d+ segments? in all: ≈ "))
    # Editing the message updates the phone.
    page.get_by_label("Message").fill(
        f"Hi {{first_name|there}}, new roast at {{brand}} {marker} ☕"
    )
    expect(bubble).to_contain_text(f"Hi there, new roast at Demo Coffee Co. {marker} ☕")
    expect(preview.locator(".bubble-meta").first).to_contain_text("UCS-2")
    assert_accessible(page)
    shot(page, "campaign-composer")

    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name=re.compile(re.escape(name)), level=1)).to_contain_text(
        "Draft"
    )
    flash(page, f"Saved {name}. Check it, then send or schedule it.")
    assert_accessible(page)

    page.get_by_role("link", name="Send…").click()
    expect(page.get_by_role("heading", name=f"Send {name} now?")).to_be_visible()
    assert_accessible(page)
    confirm = page.get_by_role("button", name=re.compile(r"^Yes, send to \d+$"))
    audience = int(confirm.inner_text().rsplit(" ", 1)[1])
    confirm.click()

    flash(page, f"Sending {name}.")
    heading = page.get_by_role("heading", name=re.compile(re.escape(name)), level=1)
    expect(heading).to_contain_text(re.compile(r"Scheduled|Sending|Sent"))
    progress = page.get_by_role("region", name="Progress")
    expect(progress.get_by_role("progressbar", name="Texts with an outcome")).to_be_visible(
        timeout=WORKER
    )
    # The worker freezes the audience and creates every text: all created, none left to create.
    expect(progress).to_contain_text(
        re.compile(rf"\b{audience} created\. Audience {audience}\b"), timeout=WORKER
    )
    # Each text is then handed to the dispatcher: sent (and delivered or not), or held for
    # the recipient's send window or the caps ("deferred") — never left queued.
    chips = progress.get_by_role("listitem")
    expect(chips.first).to_be_visible()
    expect(progress.get_by_role("list")).not_to_contain_text(
        re.compile(r"\b(queued|sending)\b"), timeout=WORKER
    )
    # One read of every chip (the bar is redrawn every few seconds).
    handled = {status: int(n) for status, n in map(str.split, chips.all_inner_texts())}
    assert sum(handled.values()) == audience, handled
    assert set(handled) <= {"deferred", "sent", "delivered", "undelivered"}, handled
    assert_accessible(page)
    shot(page, "campaign-progress")

    if "deferred" not in handled:
        # In everyone's window: the campaign finishes, and its results count what was sent.
        expect(progress).to_contain_text("Done: every text has an outcome.", timeout=WORKER)
        page.reload()
        results = page.get_by_role("region", name="Results")
        expect(results.get_by_text("Sent", exact=True)).to_be_visible()
        expect(results.locator("dd").first).to_have_text(str(audience))


# --- 3. the phone simulator: JOIN, Y, STOP --------------------------------------------------
def test_simulator_join_confirm_then_stop_unsubscribes_the_number(page: Page) -> None:
    number = JOIN_STOP_NUMBER
    sign_in(page)
    nav(page, "SMS settings")
    page.get_by_role("link", name="Phone simulator").first.click()
    expect(page.get_by_role("heading", name="Phone simulator", level=1)).to_be_visible()
    page.get_by_role("navigation", name="Test numbers").get_by_role(
        "link", name=re.compile(re.escape(number))
    ).click()
    expect(page.get_by_role("heading", name=number, level=2, exact=True)).to_be_visible()
    assert_accessible(page)
    quick = page.get_by_role("form", name="Quick replies")

    with texted_back(page, "Reply Y to confirm"):
        quick.get_by_role("button", name="JOIN").click()
    expect(page.get_by_role("link", name="Pending", exact=True)).to_be_visible()

    with texted_back(page, "You're subscribed!"):
        quick.get_by_role("button", name="Y", exact=True).click()
    expect(page.get_by_role("link", name="Subscribed", exact=True)).to_be_visible()

    with texted_back(page, "You're unsubscribed and will get no more messages"):
        page.get_by_label("Text").fill("STOP")
        page.get_by_role("button", name="Send from this phone").click()
    expect(page.get_by_role("link", name="Unsubscribed", exact=True)).to_be_visible()
    assert_accessible(page)
    shot(page, "simulator")

    # The number's own page says so, as the subscribers list does.
    nav(page, "Subscribers")
    page.get_by_role("searchbox", name="Search by number").fill(number.removeprefix("+1"))
    page.get_by_role("button", name="Filter").click()
    display = "+1 415-555-0144"
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=display))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Unsubscribed")
    assert_accessible(page)
    row.get_by_role("link", name=display).click()
    expect(page.get_by_role("heading", name=display, level=1)).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text(re.compile(r"Status\s*Unsubscribed\s+since"))
    history = page.get_by_role("table").first
    expect(history).to_contain_text("STOP")
    assert_accessible(page)


# --- 4. flows: install a prebuilt flow, dry-run it ------------------------------------------
def test_prebuilt_flow_installed_and_dry_run_shows_per_step_figures(page: Page) -> None:
    flow_name = "Post-purchase points update"
    sign_in(page)
    nav(page, "Flows")
    expect(page.get_by_role("heading", name="Prebuilt flows")).to_be_visible()
    assert_accessible(page)
    prebuilt = page.get_by_role("listitem").filter(
        has=page.get_by_role("heading", name=flow_name, level=3)
    )
    prebuilt.get_by_role("button", name="Install as a draft").click()

    # Installed again, a prebuilt flow gets a number: "Post-purchase points update (2)".
    installed = re.compile(rf"{flow_name}( \(\d+\))?")
    flash(page, re.compile(rf"Installed {installed.pattern} as a draft\."))
    heading = page.get_by_role("heading", name=installed, level=1)
    expect(heading).to_contain_text("Draft")
    flow_name = heading.inner_text().removesuffix("Draft").strip()
    expect(page.get_by_role("region", name="Steps")).to_be_visible()
    assert_accessible(page)

    dry_run = page.get_by_role("region", name="Dry run")
    dry_run.get_by_label("Look back").select_option(label="7 days")
    dry_run.get_by_role("button", name="Dry run").click()
    expect(
        page.get_by_role("heading", name=f"Dry run: {flow_name}, the last 7 days")
    ).to_be_visible()
    # A worker replays the history while the page polls it; then the report.
    summary = page.get_by_role("heading", name=re.compile(r"^\d+ would have entered$"))
    expect(summary).to_be_visible(timeout=WORKER)
    expect(page.get_by_role("progressbar", name="Dry run progress")).to_have_count(0)
    figures = page.get_by_role("region", name=re.compile(r"would have entered"))
    for label in ("Texts", "Sent in the window", "Held by quiet hours", "Held by caps", "Cost"):
        expect(figures.get_by_text(label, exact=True)).to_be_visible()

    steps = page.get_by_role("region", name="Step by step").get_by_role("table")
    expect(steps.get_by_role("columnheader", name="Held: quiet · caps")).to_be_visible()
    rows = steps.get_by_role("row")
    expect(rows.nth(1)).to_be_visible()  # at least one step's figures
    entered = int(summary.inner_text().split()[0])
    if entered:
        # Someone ordered this week: the first step shows them going in.
        expect(steps.get_by_role("rowgroup").last).to_contain_text(re.compile(r"entered \d+"))
    assert_accessible(page)
    shot(page, "flow-dry-run")

    # The flow's page lists the dry run, finished.
    page.get_by_role("link", name=f"← {flow_name}").click()
    expect(page.get_by_role("region", name="Dry run")).to_contain_text("last 7 days — done")


# --- 5. a member's ledger -------------------------------------------------------------------
def test_member_manual_adjustment_adds_a_ledger_line_and_rejects_bad_input(page: Page) -> None:
    reason = unique("Goodwill: spilled latte")
    sign_in(page)
    nav(page, "Members")
    assert_accessible(page)
    member_link = page.get_by_role("table").get_by_role("link").nth(3)
    member_name = member_link.inner_text()
    member_link.click()
    expect(page.get_by_role("heading", name=member_name, level=1)).to_be_visible()
    assert_accessible(page)

    balance = card(page, "Balance").locator(".big")
    before = int(balance.inner_text())
    adjust = card(page, "Adjust points")
    points, why = adjust.get_by_label("Points"), adjust.get_by_label("Reason")

    def error_beside(label: str) -> Locator:
        """The error shown in the field's own box, under its input."""
        return adjust.locator(".field").filter(has=page.get_by_label(label)).get_by_role("alert")

    # Zero points: refused beside the points, and nothing changes.
    points.fill("0")
    why.fill(reason)
    adjust.get_by_role("button", name="Adjust").click()
    expect(error_beside("Points")).to_have_text("An adjustment moves at least one point.")
    expect(points).to_have_attribute("aria-invalid", "true")
    expect(adjust.get_by_role("alert")).to_have_count(1)
    expect(why).to_have_value(reason)  # what was typed is kept
    expect(balance).to_have_text(str(before))
    assert_accessible(page)

    # No reason: refused beside the reason.
    points.fill("25")
    why.fill("")
    adjust.get_by_role("button", name="Adjust").click()
    expect(error_beside("Reason")).to_have_text("This field is required.")
    expect(why).to_have_attribute("aria-invalid", "true")
    expect(adjust.get_by_role("alert")).to_have_count(1)
    expect(balance).to_have_text(str(before))

    # Then a good one.
    points.fill("25")
    why.fill(reason)
    adjust.get_by_role("button", name="Adjust").click()
    flash(page, "Adjusted +25 points.")
    expect(balance).to_have_text(str(before + 25))
    ledger = card(page, "Ledger")
    line = ledger.get_by_role("row").nth(1)  # the newest line, under the header
    expect(line).to_contain_text(reason)
    expect(ledger.get_by_role("row").filter(has_text=reason)).to_have_count(1)
    cells = line.get_by_role("cell")
    expect(cells.nth(3)).to_have_text("demo@loyaltysms.test")  # who made it
    expect(cells.nth(4)).to_have_text("+25")
    expect(cells.nth(5)).to_have_text(str(before + 25))
    assert_accessible(page)
    shot(page, "member-ledger")


# --- 6. the inbox ---------------------------------------------------------------------------
def test_inbox_reply_to_a_text_shows_in_the_thread_and_on_the_phone(page: Page) -> None:
    number, display = INBOX_NUMBER, "+1 212-555-0142"
    question = f"Do you have decaf today? ({uuid.uuid4().hex[:6]})"
    answer = f"Yes, all day! ({uuid.uuid4().hex[:6]})"
    sign_in(page)
    page.goto(f"/sms/simulator/?number={number}")
    expect(page.get_by_role("heading", name=number, level=2, exact=True)).to_be_visible()
    quick = page.get_by_role("form", name="Quick replies")
    # Subscribe (once: a rerun against the same server finds it subscribed already).
    if not page.get_by_role("link", name="Subscribed", exact=True).is_visible():
        with texted_back(page, "Reply Y to confirm"):
            quick.get_by_role("button", name="JOIN").click()
        quick.get_by_role("button", name="Y", exact=True).click()
        expect(page.get_by_role("link", name="Subscribed", exact=True)).to_be_visible()

    page.get_by_label("Text").fill(question)
    page.get_by_role("button", name="Send from this phone").click()
    expect(page.get_by_label("Text")).to_have_value("")

    nav(page, "Inbox")
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(re.compile(r"Inbox \(\d+"))
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=display))
    expect(row).to_contain_text(question)
    expect(row).to_contain_text("unread")
    assert_accessible(page)
    row.get_by_role("link", name=display).click()

    expect(page.get_by_role("heading", name=display, level=1)).to_be_visible()
    conversation = card(page, "Conversation")
    expect(conversation.get_by_role("listitem").filter(has_text=question)).to_contain_text(
        "They wrote"
    )
    assert_accessible(page)
    reply = card(page, "Reply")
    reply.get_by_role("button", name="Send reply").click()  # empty: refused beside the field
    expect(reply.get_by_role("alert")).to_have_text("This field is required.")
    expect(reply.get_by_label("Reply")).to_have_attribute("aria-invalid", "true")
    reply.get_by_label("Reply").fill(answer)
    reply.get_by_role("button", name="Send reply").click()

    flash(page, "Reply queued; its status shows in the thread.")
    sent = card(page, "Conversation").get_by_role("listitem").filter(has_text=answer)
    expect(sent).to_contain_text("Sent to them")
    assert_accessible(page)
    shot(page, "inbox-conversation")
    # The dispatcher sends it (a reply to a person goes at any hour) and the phone gets it.
    page.goto(f"/sms/simulator/?number={number}")
    expect(page.locator("#simulator-thread")).to_contain_text(answer, timeout=WORKER)


def test_members_export_shows_progress_then_downloads_the_filtered_list(page: Page) -> None:
    sign_in(page)
    nav(page, "Members")
    page.get_by_label("Search members").fill("Ava")
    page.get_by_role("button", name="Search").click()
    shown = page.get_by_role("region", name="Members").locator("tbody tr").count()
    assert shown > 0
    page.get_by_role("button", name="Export CSV (these)").click()
    expect(page.get_by_role("heading", name="Members export")).to_be_visible()
    expect(page.get_by_text("filtered by q “Ava”")).to_be_visible()
    download_link = page.get_by_role("link", name=re.compile(r"^Download \d+ rows? \(CSV"))
    expect(download_link).to_be_visible(timeout=WORKER)  # the worker wrote it; the page polled
    assert_accessible(page)
    with page.expect_download() as info:
        download_link.click()
    lines = Path(info.value.path()).read_text().splitlines()
    assert lines[0].startswith("external_id,phone,email,first_name,last_name,birthday")
    rows = int(re.search(r"Download (\d+) row", download_link.inner_text()).group(1))
    assert len(lines) == rows + 1 and rows >= shown
    assert all("ava" in line.lower() for line in lines[1:])  # the search is case-blind
