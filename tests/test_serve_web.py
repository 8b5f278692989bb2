"""The web chat page driven by Playwright in Debian's headless Chromium: a question typed in, the
thinking streaming into a collapsible block, the answer rendered below it, the stop button."""
import shutil
import time
from pathlib import Path

import pytest

from r1.serve.app import create_app
from serve_helpers import LiveServer, tiny_engine, wait_until

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_chat_page_streams_thinking_then_answer(browser, tmp_path):
    # the random model never closes its think block by itself: the server's default thinking
    # budget closes it, as a deployment would bound an R1 model's thinking
    app = create_app(tiny_engine(), model_name="r1-tiny", default_thinking_budget=60, default_max_tokens=140)
    with LiveServer(app) as s:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(s.url + "/")
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        assert page.locator("#model").input_value() == "r1-tiny"
        page.fill("#prompt", "Why is the sky blue? Answer with a short list and a code example.")
        page.keyboard.press("Enter")
        thinking = page.locator("details.thinking .thinking-body")
        thinking.wait_for(state="visible")
        sizes = []
        for _ in range(40):  # watch the thinking grow while it streams
            sizes.append(len(thinking.inner_text()))
            if page.locator(".answer").inner_text().strip():
                break
            time.sleep(0.05)
        assert len(set(sizes)) >= 3, sizes
        assert page.locator("#stop").is_visible()
        page.screenshot(path=str(tmp_path / "streaming.png"))  # tests never write into the repository
        page.wait_for_function("!document.querySelector('#send').hidden", timeout=120_000)
        details = page.locator("details.thinking")
        assert details.get_attribute("open") is None  # folded once the answer is there
        assert page.locator("details.thinking summary").inner_text().startswith("Thought for")
        answer = page.locator(".msg.assistant .answer")
        assert answer.inner_text().strip()
        # the answer sits below the thinking block, in the same message
        assert details.bounding_box()["y"] < answer.bounding_box()["y"]
        page.locator("details.thinking summary").click()  # one click unfolds it
        assert details.get_attribute("open") is not None
        page.screenshot(path=str(tmp_path / "unfolded.png"))
        page.close()


def test_markdown_is_rendered_and_html_escaped(browser):
    app = create_app(tiny_engine(), model_name="r1-tiny")
    with LiveServer(app) as s:
        page = browser.new_page()
        page.goto(s.url + "/")
        html = page.evaluate("renderMarkdown('# Title\\n\\n- **a**\\n\\n```python\\nprint(1 < 2)\\n```\\n\\n<img src=x onerror=alert(1)> [x](javascript:alert(1))')")
        assert "<h1>Title</h1>" in html and "<strong>a</strong>" in html
        assert '<code class="language-python">print(1 &lt; 2)' in html
        assert "<img" not in html and "javascript:" not in html.split("</pre>")[-1].replace("&lt;img", "")
        page.close()


def test_math_is_typeset_and_code_is_left_alone(browser):
    app = create_app(tiny_engine(), model_name="r1-tiny")
    with LiveServer(app) as s:
        page = browser.new_page()
        page.goto(s.url + "/")
        page.evaluate("""() => { const d = document.createElement('div'); d.id = 'probe'; d.className = 'answer';
            d.innerHTML = renderMarkdown('The answer is \\\\boxed{83}, and $x^2$ with \\\\[\\\\frac{1}{2}\\\\] '
              + 'costs $5 and $10. `echo $HOME$`');
            document.body.appendChild(d); }""")
        probe = page.locator("#probe")
        assert probe.locator(".katex").count() == 3  # boxed, inline, display
        text = probe.inner_text()
        assert "\\boxed" not in text and "83" in text and "costs $5 and $10" in text
        assert probe.locator("code").inner_text() == "echo $HOME$"
        page.close()


def test_stop_button_aborts_the_request(browser):
    app = create_app(tiny_engine(), model_name="r1-tiny")  # no budget: it would think for ~1000 tokens
    with LiveServer(app) as s:
        engine = app.state.r1.engine.engine
        page = browser.new_page()
        page.goto(s.url + "/")
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        page.fill("#prompt", "Think for a long time.")
        page.click("#send")
        page.locator("details.thinking .thinking-body").wait_for(state="visible")
        assert engine.requests
        page.click("#stop")
        page.wait_for_function("!document.querySelector('#send').hidden")
        assert wait_until(lambda: not engine.requests and engine.blocks.usage == 0, timeout=10)
        assert page.locator("details.thinking summary").inner_text().startswith("Thought for")
        page.close()


def test_page_asks_for_the_api_key(browser):
    app = create_app(tiny_engine(), model_name="r1-tiny", api_keys=["sekret"])
    with LiveServer(app) as s:
        page = browser.new_page()
        page.goto(s.url + "/")
        page.locator("#key-field").wait_for(state="visible", timeout=10_000)  # shown once the page reads /config
        notice = page.locator("#key-needed")
        notice.wait_for(state="visible", timeout=10_000)  # asked plainly, where the chat would be
        assert "API key" in notice.inner_text() and "--api-key" in notice.inner_text()
        page.fill("#api-key", "sekret")
        page.locator("#api-key").dispatch_event("change")
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        notice.wait_for(state="hidden", timeout=10_000)
        page.close()


def test_page_says_what_the_model_is_for_and_offers_its_examples(browser, tmp_path):
    import json

    from serve_helpers import save_tiny_model_dir

    folder = save_tiny_model_dir(tmp_path / "r1-tiny")
    (folder / "card.json").write_text(json.dumps({"about": "Trained here for arithmetic.",
                                                  "examples": ["What is 347 + 858?"]}))
    with LiveServer(create_app(str(folder), model_name="r1-tiny", default_max_tokens=8)) as s:
        page = browser.new_page()
        page.goto(s.url + "/")
        page.locator("#empty").get_by_text("Trained here for arithmetic.").wait_for(timeout=10_000)
        page.wait_for_function("document.querySelector('#model').options.length > 0", timeout=60_000)
        page.locator("button.example").click()
        page.locator(".msg.user").get_by_text("What is 347 + 858?").wait_for(timeout=10_000)
        page.close()
