"""Request bodies of the OpenAI/DeepSeek API, as pydantic models: FastAPI validates them (a bad
field is a 400 naming it) and publishes them in the OpenAPI schema that schemathesis tests.

Unknown fields are accepted and ignored, as OpenAI's SDKs send fields newer than any server.
vLLM's extra sampling fields (`top_k`, `min_p`, `repetition_penalty`) are accepted too, and the
thinking controls: `thinking_budget` (max reasoning tokens, then `</think>` is forced) and
DeepSeek's `thinking: {"type": "enabled" | "disabled"}` (with an optional `budget_tokens`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NonNegInt = Annotated[int, Field(ge=0, le=2**31 - 1)]
PosInt = Annotated[int, Field(ge=1, le=2**31 - 1)]
StopStr = Annotated[str, Field(min_length=1)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # "5" is not 5, false is not 0


class TextPart(_Lenient):
    type: str
    text: str | None = None


class FunctionCall(_Lenient):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Lenient):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None  # accepted and dropped: earlier reasoning never reaches the model


class FunctionDef(_Lenient):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaSpec(_Lenient):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and (self.json_schema is None or self.json_schema.schema_ is None):
            raise ValueError("response_format of type json_schema needs json_schema.schema")
        return self


class StreamOptions(_Lenient):
    include_usage: bool = False


class Thinking(_Lenient):
    type: Literal["enabled", "disabled"]
    budget_tokens: NonNegInt | None = None


class _Sampling(_Lenient):
    model: str = Field(description="the served model's name (GET /v1/models)")
    max_tokens: PosInt | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=16)
    stop: StopStr | list[StopStr] | None = Field(default=None, max_length=16)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM's extra sampling parameters
    top_k: NonNegInt | None = None
    min_p: float | None = Field(default=None, ge=0, lt=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    logit_bias: dict[str, float] | None = Field(
        default=None, max_length=1024, description="token id (as a string) -> bias in [-100, 100], added to its logit")


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: PosInt | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    thinking_budget: NonNegInt | None = None
    thinking: Thinking | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if isinstance(self.tool_choice, NamedToolChoice) or self.tool_choice == "required":
            if not self.tools:
                raise ValueError("tool_choice requires tools")
            if isinstance(self.tool_choice, NamedToolChoice):
                names = {t.function.name for t in self.tools}
                if self.tool_choice.function.name not in names:
                    raise ValueError(f"tool_choice names {self.tool_choice.function.name!r}, which is not in tools")
        return self


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[NonNegInt] | list[list[NonNegInt]] = Field(
        description="text, a list of texts, token ids, or a list of token-id lists")
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)

    @model_validator(mode="after")
    def _not_empty(self) -> CompletionRequest:
        p = self.prompt
        if isinstance(p, list) and (not p or (isinstance(p[0], list) and not all(p))):
            raise ValueError("prompt must not be empty")
        return self
