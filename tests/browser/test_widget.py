"""The storefront widget on a plain HTML "store" page of another origin: a visitor signs up
for texts (the double opt-in text arrives in the sandbox), and a customer the store signed in
reads their balance and redeems a reward."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from playwright.sync_api import Page, expect

from storefront.services import customer_signature

from .conftest import axe_violations, shot, sign_in

NUMBER = "+13055550143"  # the simulator's Miami number: this test's own
STORE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rewards · Demo Coffee Co.</title></head>
<body><main><h1>Our rewards</h1><p>Earn beans on every order.</p>
<div data-loyaltysms-widget></div>
<script src="{app}/widget/v1/widget.js" async data-key="{key}" data-customer="{customer}"
  data-ts="{ts}" data-signature="{signature}"></script>
</main></body></html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def store_server(directory):
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_page_signs_up_a_number_and_a_customer_redeems(page: Page, app, tmp_path):
    with store_server(tmp_path) as store:
        # The brand lists its store's address and makes a signing secret for its server.
        sign_in(page)
        page.goto("/settings/widget/")
        page.get_by_label("Store addresses").fill(store)
        page.get_by_role("button", name="Save widget settings").click()
        expect(page.get_by_text("Widget settings saved.")).to_be_visible()
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="New signing secret").click()
        secret = page.locator("#new-widget-secret").inner_text()
        key = page.locator("#widget-key").inner_text()
        shot(page, "10-widget-settings")

        # The store's server signs in a customer who can afford a reward.
        (customer, balance, reward, cost) = app.sql(
            """SELECT m.external_id, m.points_balance, r.name, r.points_cost
               FROM programs_member m JOIN loyaltysms_tenant t ON t.id = m.tenant_id
               JOIN programs_reward r ON r.tenant_id = t.id AND r.active
               WHERE t.slug = 'demo' AND m.points_balance >= r.points_cost
               ORDER BY r.points_cost, m.id LIMIT 1"""
        )[0]
        ts = int(time.time())
        (tmp_path / "index.html").write_text(
            STORE_PAGE.format(
                app=app.url,
                key=key,
                customer=customer,
                ts=ts,
                signature=customer_signature(secret, customer, ts),
            )
        )

        shop = page.context.new_page()
        shop.goto(f"{store}/index.html")
        widget = shop.locator("[data-loyaltysms-widget]")
        expect(widget.locator("[data-balance]")).to_have_text(str(balance))
        assert axe_violations(shop) == []

        # A visitor signs up for texts with the brand's disclosure.
        widget.get_by_label("Mobile number").fill(NUMBER)
        widget.get_by_role("checkbox").check()
        widget.get_by_role("button", name="Text me").click()
        expect(widget.get_by_text("Check your phone")).to_be_visible()
        shot(shop, "11-widget-store-page")

        # The customer redeems the reward: a code, and the balance goes down by its cost.
        widget.get_by_role("button", name=f"Redeem {reward} for {cost}").click()
        expect(widget.get_by_text(f"Your code for {reward}:")).to_be_visible()
        expect(widget.locator("[data-balance]")).to_have_text(str(balance - cost))
        code = app.sql(
            "SELECT code FROM programs_redemption ORDER BY id DESC LIMIT 1",
        )[0][0]
        expect(widget.get_by_text(code).first).to_be_visible()
        shop.close()

        # The double opt-in text arrived on the simulated phone, from the sandbox.
        page.goto(f"/sms/simulator/?number={NUMBER}")
        expect(page.locator("#simulator-thread")).to_contain_text(
            "Reply Y to confirm", timeout=60_000
        )
