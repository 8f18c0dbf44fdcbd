"""Accessibility of every dashboard page, at a laptop's size and at a phone's.

Signed in once per size (a module-scoped context), each page is checked with axe-core (no
serious or critical violations) and must not scroll sideways (wide tables scroll inside their
own container); at the phone size every link of the main navigation must also be reachable.
Pages showing one object (a member, a campaign, a flow...) are found by following the links of
their list pages, as a person would, never by a hard-coded id. A keyboard test walks the skip
link and the main navigation.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.urls import Resolver404, resolve, reverse
from playwright.sync_api import Page, expect

from .conftest import axe_violations, shot, sign_in

SIZES = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}

# Page id -> the URL name it is reversed from.
FIXED = {
    "home": "home",
    "members": "members",
    "member-import": "member_import",
    "program-settings": "program_settings",
    "tiers": "program_tiers",
    "rewards": "program_rewards",
    "subscribers": "subscribers",
    "subscriber-import": "subscribers_import",
    "inbox": "inbox",
    "sms-settings": "sms_settings",
    "phone-simulator": "sms_simulator",
    "usage": "settings_usage",
    "segments": "segments",
    "segment-new": "segment_new",
    "campaigns": "campaigns",
    "campaign-compose": "campaign_new",
    "analytics": "analytics",
    "flows": "flows",
    "api-keys": "settings_api_keys",
    "team": "settings_team",
    "activity": "settings_activity",
    "widget-settings": "settings_widget",
}
# The README's pictures of the demo brand's main pages: (page id, size) -> file name.
README_PAGES = {
    ("home", "desktop"): "demo-home",
    ("home", "phone"): "demo-home-phone",
    ("analytics", "desktop"): "analytics",
    ("campaign", "desktop"): "campaign-results",
    ("flow", "desktop"): "flow-diagram",
    ("member", "desktop"): "member",
}
# Page id -> (the page whose link leads there, the URL name of that link).
FOLLOWED = {
    "member": ("members", "member_detail"),
    "subscriber": ("subscribers", "subscriber_detail"),
    "conversation": ("inbox", "inbox_conversation"),
    "segment-existing": ("segments", "segment_edit"),
    "campaign": ("campaigns", "campaign_detail"),
    "flow": ("flows", "flow_detail"),
    "flow-editor": ("flow", "flow_edit"),
    "flow-runs": ("flow", "flow_runs"),
}
PAGES = [
    "home",
    "members",
    "member",
    "member-import",
    "program-settings",
    "tiers",
    "rewards",
    "subscribers",
    "subscriber",
    "subscriber-import",
    "inbox",
    "conversation",
    "sms-settings",
    "phone-simulator",
    "usage",
    "segments",
    "segment-new",
    "segment-existing",
    "campaigns",
    "campaign-compose",
    "campaign",
    "analytics",
    "flows",
    "flow",
    "flow-editor",
    "flow-runs",
    "api-keys",
    "team",
    "activity",
    "widget-settings",
]
assert set(PAGES) == set(FIXED) | set(FOLLOWED)


class Watched:
    """A page kept for the whole module, with the server errors and script errors it saw."""

    def __init__(self, page: Page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "response",
            lambda response: (
                self.errors.append(f"{response.status} {response.url}")
                if response.status >= 500
                else None
            ),
        )

    def visit(self, url: str) -> Page:
        self.errors.clear()
        response = self.page.goto(url)
        assert response is not None and response.ok, f"{url}: {response and response.status}"
        settle(self.page)
        return self.page

    def check_errors(self) -> None:
        errors, self.errors = self.errors, []
        assert errors == [], f"server errors or page script errors: {errors}"


def settle(page: Page) -> None:
    """Let htmx's load-time requests (counts, previews) land before checking."""
    page.evaluate(
        """async () => {
            const tick = ms => new Promise(resolve => setTimeout(resolve, ms));
            const frame = () => new Promise(resolve => requestAnimationFrame(resolve));
            await frame();
            await frame();
            for (let i = 0; i < 400 && document.querySelector('.htmx-request'); i++) await tick(25);
            await tick(50);  // htmx's swap and settle
        }"""
    )


def new_context(browser, app, size: str):
    context = browser.new_context(base_url=app.url, viewport=SIZES[size])
    context.set_default_timeout(15_000)
    return context


@pytest.fixture(scope="module")
def signed_in(browser, app):
    """One signed-in page per size, made when first asked for and kept for the module."""
    made: dict[str, Watched] = {}
    contexts = []

    def get(size: str) -> Watched:
        if size not in made:
            context = new_context(browser, app, size)
            contexts.append(context)
            watched = Watched(context.new_page())
            sign_in(watched.page)
            watched.check_errors()
            made[size] = watched
        return made[size]

    yield get
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def urls(signed_in) -> dict[str, str]:
    """Every page's path: reversed from the URL confs, or found by following links."""
    found = {name: reverse(url_name) for name, url_name in FIXED.items()}
    watched = signed_in("desktop")
    for name, (source, url_name) in FOLLOWED.items():
        page = watched.visit(found[source])
        hrefs = page.eval_on_selector_all("main a[href]", "links => links.map(a => a.href)")
        paths = [urlsplit(href).path for href in hrefs]
        matching = [path for path in paths if resolve_name(path) == url_name]
        assert matching, f"no link to {url_name} on {source} ({found[source]}): {paths}"
        found[name] = matching[0]
    watched.check_errors()
    return found


def resolve_name(path: str) -> str | None:
    try:
        return resolve(path).url_name
    except Resolver404:  # a link outside the URL confs is just no match
        return None


def no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate(
        """() => {
            // The outermost elements sticking out to the right, outside any scrolling box.
            const edge = window.innerWidth + 1;
            const scrolls = e => getComputedStyle(e).overflowX !== 'visible';
            const outermost = e => {
                for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
                    if (scrolls(p) || p.getBoundingClientRect().right > edge) return false;
                }
                return true;
            };
            return {
                scroll: document.documentElement.scrollWidth,
                inner: window.innerWidth,
                wide: [...document.body.querySelectorAll('*')]
                    .filter(e => e.getBoundingClientRect().right > edge && outermost(e))
                    .slice(0, 5)
                    .map(e => e.outerHTML.slice(0, 120)),
            };
        }"""
    )
    assert widths["scroll"] <= widths["inner"] + 1, f"the page scrolls sideways: {widths}"


def main_nav_reachable(page: Page) -> None:
    """Each link of the main navigation can be brought into view and is not covered there."""
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_visible()
    links = nav.evaluate(
        """nav => [...nav.querySelectorAll('a[href]')].map(a => {
            a.scrollIntoView({block: 'nearest', inline: 'nearest'});
            const r = a.getBoundingClientRect();
            const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            const shown = r.width >= 1 && r.left >= -1 && r.right <= window.innerWidth + 1;
            return {text: a.innerText.trim(), reachable: shown && a.contains(hit)};
        })"""
    )
    assert len(links) >= 10, links
    unreachable = [link["text"] for link in links if not link["reachable"]]
    assert unreachable == [], f"main navigation links out of reach: {unreachable}"
    page.evaluate("window.scrollTo(0, 0)")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", PAGES)
def test_signed_in_page_is_accessible(signed_in, urls, name, size):
    watched = signed_in(size)
    page = watched.visit(urls[name])
    assert axe_violations(page) == [], f"{name} ({urls[name]}) at {size} size"
    no_sideways_scroll(page)
    if size == "phone":
        main_nav_reachable(page)
    if (name, size) in README_PAGES:
        shot(page, README_PAGES[name, size])
    watched.check_errors()


@pytest.mark.parametrize("size", SIZES)
def test_login_page_is_accessible(browser, app, size):
    context = new_context(browser, app, size)
    try:
        watched = Watched(context.new_page())
        page = watched.visit(reverse("login"))
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        assert axe_violations(page) == []
        no_sideways_scroll(page)
        watched.check_errors()
    finally:
        context.close()


def focused(page: Page) -> dict:
    return page.evaluate(
        """() => {
            const e = document.activeElement;
            const style = getComputedStyle(e);
            return {
                tag: e.tagName.toLowerCase(),
                id: e.id,
                text: (e.innerText || '').trim(),
                inMainNav: !!e.closest('nav[aria-label="Main"]'),
                skipLink: e.classList.contains('skip-link'),
                focusVisible: e.matches(':focus-visible'),
                outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
                shadow: style.boxShadow !== 'none',
            };
        }"""
    )


def test_keyboard_skip_link_main_nav_and_visible_focus(signed_in):
    context = signed_in("desktop").page.context
    page = context.new_page()
    try:
        page.goto(reverse("members"))
        page.keyboard.press("Tab")
        first = focused(page)
        assert first["skipLink"], f"the first Tab stop is not the skip link: {first}"
        expect(page.locator(".skip-link")).to_be_in_viewport()
        assert first["outline"] or first["shadow"], f"no visible focus on the skip link: {first}"
        page.keyboard.press("Enter")
        assert focused(page)["id"] == "main", "Enter on the skip link does not move focus to main"
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.closest('main') !== null"), (
            "after the skip link, Tab does not go on inside main"
        )

        page.goto(reverse("members"))
        stops = []
        for _ in range(10):
            page.keyboard.press("Tab")
            stops.append(focused(page))
            if stops[-1]["inMainNav"]:
                break
        link = stops[-1]
        assert link["inMainNav"], f"Tab never reached the main navigation: {stops}"
        assert link["tag"] == "a" and link["text"] == "Home"
        assert link["focusVisible"] and (link["outline"] or link["shadow"]), (
            f"a focused nav link shows no focus ring: {link}"
        )
        # The rest of the navigation follows in order, each with a visible focus ring.
        texts = [link["text"]]
        for _ in range(page.get_by_role("navigation", name="Main").get_by_role("link").count() - 1):
            page.keyboard.press("Tab")
            stop = focused(page)
            assert stop["inMainNav"] and (stop["outline"] or stop["shadow"]), stop
            texts.append(stop["text"])
        assert "Members" in texts and "Settings" in texts
    finally:
        page.close()
