"""docs/serve-chat*.png: the chat page in Debian's headless Chromium, the embedded default answering.

    make screenshots        # or: .venv/bin/python tools/screenshots.py [--model PATH] [--out docs]

Starts `r1 serve` on 127.0.0.1 (a free port), clicks the model card's first example prompt (or asks the README's
first question), waits for
the answer and takes two pictures: the thinking folded above the answer, then unfolded. Needs
chromium (`apt-get install chromium`) and playwright (in the test extras). Tests never write into
the repository; this command is how the README's picture is made.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model to serve (default: the embedded default)")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for the pictures (default: docs/)")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshots: needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from r1.serve.health import wait_healthy

    port = _free_port()
    cmd = [sys.executable, "-m", "r1", "serve", *([args.model] if args.model else []), "--host", "127.0.0.1",
           "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        why = wait_healthy(url, server, 120)
        if why == "exited":
            raise SystemExit(f"screenshots: r1 serve exited: {server.stderr.read()[-500:]}")
        if why:
            raise SystemExit("screenshots: the server did not become healthy in 120 s")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            page.goto(url + "/")
            page.wait_for_function("document.querySelector('#model').options.length > 0", timeout=60_000)
            page.screenshot(path=str(out / "serve-chat-empty.png"))
            if page.locator("button.example").count():
                page.locator("button.example").first.click()
            else:  # a model without a card: the README's first question
                page.fill("#prompt", "What is 347 + 858?")
                page.keyboard.press("Enter")
            page.wait_for_function("!document.querySelector('#send').hidden", timeout=120_000)
            page.screenshot(path=str(out / "serve-chat.png"))
            page.locator("details.thinking summary").first.click()
            page.screenshot(path=str(out / "serve-chat-thinking.png"))
            answer = page.locator(".msg.assistant .answer").first.inner_text()
            browser.close()
        print(f"screenshots: {', '.join(str(out / n) for n in ('serve-chat-empty.png', 'serve-chat.png', 'serve-chat-thinking.png'))}"
              f"; the answer read: {answer!r}")
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
