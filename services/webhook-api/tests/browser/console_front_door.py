"""The console through the operators' front door: nginx's console port, in Debian's Chromium.

    console_front_door.py BASE_URL SCREENSHOT_DIR

BASE_URL is where an operator's browser reaches nginx's console port (https://localhost:PORT,
as through `ssh -L PORT:127.0.0.1:9444`). Reads one JSON line from standard input: the token,
its name and a stored delivery's id. Signs in, replays the delivery, starts a bulk replay and
sees it done, watches the live tail end when the session is signed out in another tab, and
signs out; the browser sends what it always sends (Origin with the port, the session cookie).
Its last line is a JSON summary for the Rust test (the "Replay with curl" line among it).
"""

import json
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright


def main():
    base, shots = sys.argv[1], sys.argv[2]
    seeded = json.loads(sys.stdin.readline())
    os.makedirs(shots, exist_ok=True)
    summary = {}

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        # The cluster's own CA is not in Chromium's store; the certificate is checked by the
        # Rust side of the test (reqwest trusts only that CA).
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        origins = []
        page.on("request", lambda r: r.method == "POST" and origins.append(r.headers.get("origin")))

        page.goto(f"{base}/console/")
        expect(page).to_have_url(re.compile(r"/console/login$"))
        page.fill("#token", seeded["token"])
        page.click("button[type=submit]")
        expect(page).to_have_url(re.compile(r"/console/$"))
        expect(page.locator("header .who")).to_contain_text(seeded["token_name"])

        # One delivery, replayed; its curl line names this very address.
        page.goto(f"{base}/console/deliveries/{seeded['delivery_id']}")
        curl = page.locator("#curl").text_content()
        summary["curl"] = curl
        page.click("form.replay button")
        expect(page.locator("p.notice")).to_contain_text("Replayed:")
        expect(page.locator("table.actions")).to_contain_text("console_replay")
        page.screenshot(path=os.path.join(shots, "front-door-replayed.png"), full_page=True)

        # A bulk replay of FAL's deliveries, to its result.
        page.goto(f"{base}/console/?source=fal")
        page.click("a.bulk")
        page.click("form.bulk button")
        expect(page).to_have_url(re.compile(r"/console/replays/\d+$"))
        expect(page.locator("dd.state")).to_contain_text("done", timeout=30000)

        # A live tail in a second tab ends when the session is signed out in the first.
        tail = context.new_page()
        tail.goto(f"{base}/console/live")
        status = tail.locator("#live-status")
        expect(status).to_contain_text("live:", timeout=15000)
        page.goto(f"{base}/console/")
        page.click("form.signout button")
        expect(page).to_have_url(re.compile(r"signed_out=1"))
        expect(status).to_contain_text("Your session has ended", timeout=15000)
        summary["tail_status"] = status.inner_text()
        page.goto(f"{base}/console/")
        expect(page).to_have_url(re.compile(r"/console/login$"))

        summary["origins"] = origins
        summary["errors"] = errors
        browser.close()
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
