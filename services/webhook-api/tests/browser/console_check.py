"""The operators' console in a real browser: Debian's Chromium driven by Playwright.

    console_check.py BASE_URL SCREENSHOT_DIR

Reads from its standard input one JSON line with what the Rust test seeded (tokens, ids), then
walks the console as an operator would and asserts what the pages show. Where the test must
change the world mid-walk (end the session), it prints `WAIT <what>` and reads one line back.
Its last line is a JSON summary for the Rust test. Never downloads a browser: Debian's
chromium at /usr/bin/chromium (CHROMIUM to override).
"""

import json
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright


def wait_for_test(what):
    print(f"WAIT {what}", flush=True)
    answer = sys.stdin.readline().strip()
    assert answer == "ok", f"the test answered {answer!r} to {what}"


def main():
    base, shots = sys.argv[1], sys.argv[2]
    seeded = json.loads(sys.stdin.readline())
    os.makedirs(shots, exist_ok=True)
    summary = {"screenshots": []}

    def shot(page, name):
        path = os.path.join(shots, f"{name}.png")
        page.screenshot(path=path, full_page=True)
        summary["screenshots"].append(path)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        # Script errors, and what the browser could not load; the 4xx answers this walk asks
        # for on purpose (a refused sign-in, bad filters, a forged form) are the pages' own.
        console_errors = []
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.on("console", lambda m: m.type == "error"
                and not re.search(r"status of (400|401|403)", m.text)
                and console_errors.append(m.text))

        # Not signed in: the sign-in page.
        page.goto(f"{base}/console/")
        expect(page).to_have_url(re.compile(r"/console/login$"))
        page.fill("#token", "not-a-token-of-this-cluster-0123456789")
        page.click("button[type=submit]")
        expect(page.locator("p.problem")).to_contain_text("not one of this cluster's operator tokens")
        shot(page, "login-refused")

        # Signed in with a token that may read and replay.
        page.fill("#token", seeded["token"])
        page.click("button[type=submit]")
        expect(page).to_have_url(re.compile(r"/console/$"))
        expect(page.locator("header .who")).to_contain_text(seeded["token_name"])
        cookie = next(c for c in context.cookies() if c["name"] == "webhook_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        rows = page.locator("table.deliveries tbody tr")
        expect(rows).to_have_count(seeded["page_size"])
        # The front page's chart is drawn by the server (an SVG image), not by a script.
        chart = page.locator("figure.chart img")
        expect(chart).to_be_visible()
        page.wait_for_function("document.querySelector('figure.chart img').complete")
        assert page.evaluate("document.querySelector('figure.chart img').naturalWidth") > 0
        shot(page, "deliveries")

        # Operations: the avatars still in training, with the reconciler's word on each.
        page.goto(f"{base}/console/operations")
        expect(page.locator("table.trainings")).to_contain_text("console-live-1")
        expect(page.locator("p.spool")).to_contain_text("waiting for PostgreSQL")
        shot(page, "operations")

        # Older pages by the cursor, and back.
        page.goto(f"{base}/console/")
        page.click("a.next")
        expect(page).to_have_url(re.compile(r"before=\d+"))
        assert rows.count() > 0
        first_older = int(rows.first.locator("td").first.inner_text())
        assert first_older < seeded["newest_id"], (first_older, seeded["newest_id"])

        # Filters: a source, a sender's delivery id, a body search.
        page.goto(f"{base}/console/")
        page.select_option("select[name=source]", "github")
        page.click("form.filters button[type=submit]")
        expect(rows).to_have_count(seeded["github_count"])
        for source in rows.locator("td:nth-child(3)").all_inner_texts():
            assert source == "github", source
        page.goto(f"{base}/console/")
        page.fill("input[name=delivery_id]", seeded["github_delivery_id"])
        page.click("form.filters button[type=submit]")
        expect(rows).to_have_count(1)
        page.goto(f"{base}/console/")
        page.fill("input[name=body]", json.dumps({"ref": seeded["branch_ref"]}))
        page.click("form.filters button[type=submit]")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(seeded["branch_event_id"])
        shot(page, "body-search")

        # Bad input is a clear message on the page, never a 500.
        for query, said in [
            ("body=%7Bref", "the body search is not JSON"),
            ("before=nope", "is not a delivery id"),
            ("avatar_id=7", "is not a UUID"),
            ("since=2026-12-02&until=2026-12-01", "the time range is empty"),
        ]:
            response = page.goto(f"{base}/console/?{query}")
            assert response.status == 400, (query, response.status)
            expect(page.locator("p.problem")).to_contain_text(said)
        shot(page, "bad-filter")

        # One delivery: headers and body as stored, then replayed (the avatar changes once).
        page.goto(f"{base}/console/deliveries/{seeded['unmatched_id']}")
        expect(page.locator("dl.facts")).to_contain_text("unmatched")
        expect(page.locator("#body")).to_contain_text(seeded["unmatched_request_id"])
        expect(page.locator("#curl")).to_contain_text(f"/events/{seeded['unmatched_id']}/replay")
        expect(page.locator("p.change")).to_contain_text("No avatar had its request id when it arrived")
        page.click("form.replay button")
        expect(page.locator("p.notice")).to_contain_text("Replayed: applied")
        # Applied now: the avatar's status before (as the bot submitted it) and after.
        expect(page.locator("p.change")).to_contain_text("TRAINING → COMPLETED by this delivery; now COMPLETED")
        expect(page.locator("table.actions")).to_contain_text("console_replay")
        shot(page, "delivery-replayed")
        page.click("form.replay button")
        expect(page.locator("p.notice")).to_contain_text("Replayed: duplicate")

        # A state-changing request without the session's CSRF token is refused.
        status = page.evaluate(
            """async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
                 headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                 body: 'csrf=forged'})).status""",
            f"{base}/console/deliveries/{seeded['unmatched_id']}/replay",
        )
        assert status == 403, status

        # A filter's deliveries as NDJSON, streamed: one line each, with its body.
        with page.expect_download() as download:
            page.goto(f"{base}/console/")
            page.select_option("select[name=source]", "github")
            page.click("form.filters button[type=submit]")
            page.click("a.export")
        lines = open(download.value.path()).read().splitlines()
        exported = [json.loads(line) for line in lines]
        assert len(exported) == seeded["github_count"], exported
        assert all(e["source"] == "github" and e["payload"]["repository"] for e in exported)
        summary["exported"] = len(exported)

        # A filter's deliveries replayed in the background: an estimate first, then progress
        # to a result.
        page.goto(f"{base}/console/?source=github")
        page.click("a.bulk")
        expect(page.locator("p.estimate")).to_contain_text(f"{seeded['github_count']} deliveries match")
        page.click("form.bulk button")
        expect(page).to_have_url(re.compile(r"/console/replays/\d+$"))
        expect(page.locator("dd.state")).to_contain_text("done", timeout=20000)
        expect(page.locator("dd.done")).to_have_text(str(seeded["github_count"]))
        shot(page, "bulk-replay-done")
        # ... and one cancelled while it runs (this instance replays a few a second).
        page.goto(f"{base}/console/?source=fal")
        page.click("a.bulk")
        page.click("form.bulk button")
        page.click("form.cancel button")
        expect(page.locator("dd.state")).to_contain_text("cancelled", timeout=20000)
        processed = sum(int(page.locator(f"dd.{k}").inner_text().split()[0])
                        for k in ("done", "skipped", "failed"))
        assert processed < seeded["fal_count"], processed
        summary["cancelled_after"] = processed
        page.goto(f"{base}/console/replays")
        expect(page.locator("table.bulk tbody tr")).to_have_count(2)

        # The audit log names who replayed.
        page.goto(f"{base}/console/audit")
        expect(page.locator("table.audit")).to_contain_text("console_bulk_cancel")
        expect(page.locator("table.audit")).to_contain_text("console_replay")
        expect(page.locator("table.audit")).to_contain_text(seeded["token_name"])
        shot(page, "audit")

        # The live tail: a delivery committed while the page is open appears on top, with Redis
        # and (read from PostgreSQL, the page says so) without it.
        page.goto(f"{base}/console/live")
        status = page.locator("#live-status")
        expect(status).to_contain_text("live:", timeout=10000)
        newest = page.locator("#live tbody tr").first
        wait_for_test("post-live-delivery")
        expect(newest).to_contain_text("console-live-1", timeout=10000)
        wait_for_test("cut-redis")
        expect(status).to_contain_text("Redis is unavailable", timeout=15000)
        wait_for_test("post-while-redis-down")
        expect(newest).to_contain_text("console-live-2", timeout=15000)
        shot(page, "live-without-redis")
        wait_for_test("restore-redis")
        expect(status).to_contain_text("live:", timeout=15000)
        # A reconnect resumes after the last delivery shown (Last-Event-ID): none twice.
        ids = page.locator("#live tbody tr td:first-child").all_inner_texts()
        assert len(ids) == len(set(ids)), ids

        # A session that ended sends the operator back to sign in, saying why.
        wait_for_test("expire-session")
        page.goto(f"{base}/console/")
        expect(page).to_have_url(re.compile(r"/console/login\?expired=1$"))
        expect(page.locator("p.notice")).to_contain_text("Your session has ended")

        # A token without the replay scope sees no replay button.
        page.fill("#token", seeded["read_token"])
        page.click("button[type=submit]")
        page.goto(f"{base}/console/deliveries/{seeded['unmatched_id']}")
        expect(page.locator("form.replay")).to_have_count(0)
        expect(page.get_by_text("Your token has no replay scope")).to_be_visible()
        # Signing out ends the session.
        page.click("form.signout button")
        expect(page).to_have_url(re.compile(r"signed_out=1"))
        page.goto(f"{base}/console/")
        expect(page).to_have_url(re.compile(r"/console/login$"))

        summary["console_errors"] = console_errors
        browser.close()
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
