"""End-to-end in a real headless Chromium (Debian's, driven by Playwright)
against the real Keycloak, worker and both demo apps. Screenshots of the
warning and of the signed-out page go to test-artifacts/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stack import wait_for

pytestmark = [pytest.mark.keycloak, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def sign_in(page, url, user, password):
    page.goto(url)
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#kc-login")
    page.wait_for_selector("#sid")


def worker_deadline(stack, sid):
    return stack.session(sid).deadline


def test_one_policy_across_apps_with_warning_stay_signed_in_and_hard_logoff(
        chromium, make_stack, keycloak):
    stack = make_stack(idle_s=12, warn_s=6)
    user, pw, uid = keycloak.new_user()
    ctx = chromium.new_context(viewport={"width": 1100, "height": 700})
    portal = ctx.new_page()
    sign_in(portal, stack.url("patient-portal"), user, pw)
    sid = portal.inner_text("#sid")
    console = ctx.new_page()
    console.goto(stack.url("admin-console"))
    console.wait_for_selector("#sid")
    assert console.inner_text("#sid") == sid, "SSO: one session, two apps"
    for page in (portal, console):
        assert page.evaluate("localStorage.getItem('demo-access-token')")

    # Work in the portal for longer than the idle timeout; the console sits in
    # its tab, polling passively, and must neither warn nor sign out.
    portal.bring_to_front()
    end = time.monotonic() + 16
    while time.monotonic() < end:
        portal.mouse.click(300, 400)
        portal.keyboard.press("ArrowDown")
        time.sleep(1.5)  # the user's pace
    assert "/signed-out" not in console.url
    assert console.locator("#oidc-idle-warning:not([hidden])").count() == 0
    assert console.evaluate("fetch('/oidc-idle/status', {headers: {'X-OIDC-Idle-Passive': '1'}})"
                            ".then(r => r.status)") == 200

    # Go idle: the warning appears at warn_at, in an accessible dialog with focus.
    portal.wait_for_selector("#oidc-idle-warning:not([hidden])", timeout=20_000)
    shown_at = time.time() * 1000
    # No interaction since the loop ended, so this is the final deadline.
    warn_at = worker_deadline(stack, sid) - stack.policy.warning_lead_ms
    assert shown_at >= warn_at - 1500, "warned too early"
    assert shown_at <= warn_at + 3000, "warned too late"
    dialog = portal.locator("#oidc-idle-warning")
    assert dialog.get_attribute("role") == "alertdialog"
    assert portal.evaluate("document.activeElement.id") == "oidc-idle-stay"
    assert "Signed out in" in dialog.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    portal.screenshot(path=str(ARTIFACTS / "warning.png"))

    # "Stay signed in" counts as activity: the deadline moves.
    before = worker_deadline(stack, sid)
    portal.click("#oidc-idle-stay")
    wait_for(lambda: worker_deadline(stack, sid) > before, 10, "the deadline to move")
    portal.wait_for_selector("#oidc-idle-warning", state="hidden", timeout=5000)

    # Idle again: both apps end on the signed-out page, tokens cleared.
    portal.wait_for_url("**/oidc-idle/signed-out**", timeout=30_000)
    console.wait_for_url("**/oidc-idle/signed-out**", timeout=30_000)
    assert "inactivity" in portal.inner_text("main")
    portal.screenshot(path=str(ARTIFACTS / "signed-out.png"))
    for page in (portal, console):
        assert page.evaluate("localStorage.getItem('demo-access-token')") is None
    rec = wait_for(lambda: stack.terminated_record(sid), 10, "the audit record")
    assert rec["type"] == "automatic_logoff"
    assert keycloak.sessions_of(uid) == []
    # Hard termination: going back to the app asks for the password again.
    portal.goto(stack.url("patient-portal"))
    portal.wait_for_selector("#kc-form-login")
    ctx.close()


def test_two_tabs_of_one_app_stay_in_sync(chromium, make_stack, keycloak):
    stack = make_stack(idle_s=12, warn_s=8)
    user, pw, _ = keycloak.new_user()
    ctx = chromium.new_context()
    one = ctx.new_page()
    sign_in(one, stack.url("patient-portal"), user, pw)
    two = ctx.new_page()
    two.goto(stack.url("patient-portal"))
    two.wait_for_selector("#sid")
    # Both tabs warn; activity in one dismisses the warning in the other.
    one.wait_for_selector("#oidc-idle-warning:not([hidden])", timeout=20_000)
    two.wait_for_selector("#oidc-idle-warning:not([hidden])", timeout=20_000)
    one.bring_to_front()
    one.mouse.click(300, 400)
    two.wait_for_selector("#oidc-idle-warning", state="hidden", timeout=5000)
    # A tab that becomes visible again asks the server at once.
    with two.expect_request(lambda r: r.url.endswith("/oidc-idle/status"), timeout=5000):
        two.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    # A sign-out in one tab ends the other.
    one.click("text=Sign out")
    one.wait_for_url("**/signed-out**", timeout=15_000)
    two.wait_for_url("**/signed-out**", timeout=15_000)
    assert "you signed out" in one.inner_text("main")
    ctx.close()


def test_a_sleeping_laptop_rechecks_the_server_when_it_wakes(chromium, make_stack, keycloak):
    stack = make_stack(idle_s=60, warn_s=10)
    user, pw, _ = keycloak.new_user()
    ctx = chromium.new_context()
    page = ctx.new_page()
    page.clock.install()  # the page's clock, which we can jump like a wake from sleep
    sign_in(page, stack.url("patient-portal"), user, pw)
    page.wait_for_timeout(1500)  # let the snippet take its first tick
    # 8 s pass at once (the laptop slept): more than the snippet's 5 s jump threshold,
    # less than its 15 s periodic poll, so only the wake detection can ask now.
    with page.expect_request(lambda r: r.url.endswith("/oidc-idle/status"), timeout=5_000):
        page.clock.fast_forward(8_000)
    ctx.close()
