"""What the chat page learns before its first API call: the model's card (what it is for, prompts to
try), the favicon, and that a key is needed -- without a browser (the Playwright tests drive the page)."""
import json

import httpx

from r1.serve.app import create_app
from r1.serve.state import read_card
from serve_helpers import LiveServer, save_tiny_model_dir, wait_until


def test_the_card_beside_the_weights_reaches_the_page(tmp_path):
    folder = save_tiny_model_dir(tmp_path / "m")
    (folder / "card.json").write_text(json.dumps({"name": "m", "about": "Arithmetic only.",
                                                  "examples": ["What is 347 + 858?", "hi"]}))
    with LiveServer(create_app(str(folder), model_name="m", api_keys=["k"])) as s:
        cfg = httpx.get(s.url + "/config.json", timeout=30).json()
        assert cfg["about"] == "Arithmetic only." and cfg["examples"] == ["What is 347 + 858?", "hi"]
        assert cfg["auth"] is True  # the page then asks for the key
        fav = httpx.get(s.url + "/favicon.ico", timeout=30)
        assert fav.status_code == 200 and fav.headers["content-type"].startswith("image/svg+xml")
        assert wait_until(lambda: httpx.get(s.url + "/health", timeout=30).status_code == 200, timeout=60)


def test_a_missing_or_broken_card_is_no_card(tmp_path, caplog):
    assert read_card(tmp_path) == ("", [])
    (tmp_path / "card.json").write_text('{"about": 3}')
    assert read_card(tmp_path) == ("", [])
    (tmp_path / "card.json").write_text("not json")
    assert read_card(tmp_path) == ("", [])
    assert "card.json: ignored" in caplog.text
