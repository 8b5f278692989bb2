"""Tokenizer loading, chat templates, and reasoning / tool-call parsing.

These modules depend only on `tokenizers`, `jinja2` and (for .gguf files) `r1.formats`; none of
them imports torch, the model or the engine.
"""
from __future__ import annotations

from r1.chat.detokenizer import IncrementalDetokenizer
from r1.chat.reasoning import ReasoningStreamParser, prompt_opens_reasoning, split_reasoning
from r1.chat.r1_template import R1_CHAT_TEMPLATE
from r1.chat.template import ChatTemplate, ChatTemplateError
from r1.chat.tokenizer import Tokenizer, TokenizerLoadError, load_tokenizer
from r1.chat.tool_calls import ToolCall, ToolCallStreamParser, parse_tool_calls

__all__ = [
    "ChatTemplate", "ChatTemplateError", "IncrementalDetokenizer", "R1_CHAT_TEMPLATE", "ReasoningStreamParser",
    "Tokenizer", "TokenizerLoadError", "ToolCall", "ToolCallStreamParser", "load_tokenizer", "parse_tool_calls",
    "prompt_opens_reasoning", "split_reasoning",
]
