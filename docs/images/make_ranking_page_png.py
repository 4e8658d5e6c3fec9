"""Retake docs/images/ranking-page.png: the ranking page of `rankact serve` over the sample data.

    .venv/bin/python docs/images/make_ranking_page_png.py

Builds a scratch store with `rankact feedback demo-data`, creates an annotator, starts
`rankact serve` on a free port and captures the page with Playwright driving Debian's chromium
(apt-get install chromium), the browser the tests use. Needs no model.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

OUT = Path(__file__).with_name("ranking-page.png")
RANKACT = str(Path(sys.executable).with_name("rankact"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("error: chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/screenshot.db"
        subprocess.run([RANKACT, "feedback", "demo-data", "--db", db], check=True, capture_output=True)
        created = subprocess.run([RANKACT, "admin", "create", "alice", "--role", "annotator", "--db", db],
                                 check=True, capture_output=True, text=True)
        token = created.stdout.split()[-1]
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([RANKACT, "serve", "--db", db, "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):  # the server imports FastAPI first: wait until it answers
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(url)
                page.fill("#token-input", token)
                page.click("#login-form button[type=submit]")
                page.wait_for_selector("#cards .card")
                page.screenshot(path=str(OUT), full_page=False)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
