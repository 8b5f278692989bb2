"""Ctrl-C in `r1 chat`, typed into a real pseudo-terminal: it stops the reply, not the program.

The chat runs as a child on a pty (its controlling terminal), so ^C reaches it as SIGINT from the
terminal driver, as it does for a user. Before, the reply died with a KeyboardInterrupt traceback,
exit 130, and the conversation was gone."""
from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time

import pytest


class Pty:
    def __init__(self, argv: list[str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the chat, on the pty
            os.environ["COLUMNS"], os.environ["TERM"] = "120", "xterm"
            os.execv(sys.executable, [sys.executable, "-m", "r1", *argv])
        self.out = ""

    def read_until(self, text: str, timeout: float, start: int = 0) -> int:
        """Read until `text` appears after position `start`; its position."""
        deadline = time.monotonic() + timeout
        while (i := self.out.find(text, start)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} within {timeout}s; the terminal shows:\n{self.out[-3000:]}")
            if select.select([self.fd], [], [], min(left, 0.5))[0]:
                try:
                    self.out += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    raise AssertionError(f"chat exited before {text!r}:\n{self.out[-3000:]}") from None
        return i

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            with_data = select.select([self.fd], [], [], 0.2)[0]
            if with_data:
                try:
                    self.out += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    pass
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"chat did not exit within {timeout}s:\n{self.out[-3000:]}")


def test_ctrl_c_stops_the_reply_and_the_chat_goes_on(smollm2_gguf):
    chat = Pty(["chat", str(smollm2_gguf), "--temperature", "0", "--max-tokens", "400"])
    try:
        chat.read_until("› ", 120)
        chat.send("Write a long story about a dragon who learns to bake bread.\r")
        echo = chat.read_until("bread.", 30) + len("bread.")
        at = chat.read_until("ragon", 120, start=echo)  # the answer is streaming
        chat.send("\x03")
        stop = chat.read_until("(stopped)", 30, start=at)
        assert "Traceback" not in chat.out and "KeyboardInterrupt" not in chat.out
        chat.read_until("› ", 30, start=stop)
        chat.send("What animal was the story about? Answer in one word.\r")
        echo = chat.read_until("one word.", 30, start=stop) + len("one word.")
        reply = chat.read_until("› ", 120, start=echo)
        answer = chat.out[echo:reply]
        assert "ragon" in answer, answer  # the same conversation: it remembers the story
        chat.send("\x04")  # Ctrl-D at the prompt: a clean exit
        assert chat.wait(30) == 0
    finally:
        try:
            os.kill(chat.pid, signal.SIGKILL)
            os.waitpid(chat.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(chat.fd)


def test_ctrl_c_at_the_prompt_exits_cleanly(smollm2_gguf):
    chat = Pty(["chat", str(smollm2_gguf)])
    try:
        chat.read_until("› ", 120)
        time.sleep(1.0)  # as a person would: readline sets up its terminal after the prompt is out
        chat.send("\x03")
        assert chat.wait(30) == 0
        assert "Traceback" not in chat.out
    finally:
        os.close(chat.fd)


if sys.platform != "linux":
    pytest.skip("pseudo-terminals as on Linux", allow_module_level=True)
