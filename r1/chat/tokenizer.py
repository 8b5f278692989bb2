"""Tokenizer: a HF `tokenizers.Tokenizer` plus its special tokens and chat template(s).

`load_tokenizer` reads a HF folder (tokenizer.json, tokenizer_config.json, chat_template.jinja,
additional_chat_templates/, special_tokens_map.json, generation_config.json, config.json) or a
`.gguf` file, resolving each setting the way `transformers.AutoTokenizer` does, so the two agree
token for token (tests/test_chat_tokenizer.py checks it).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tokenizers

from r1.chat.detokenizer import IncrementalDetokenizer
from r1.chat.r1_template import ASSISTANT, EOS, R1_CHAT_TEMPLATE, USER
from r1.chat.template import ChatTemplate, ChatTemplateError, select_template
from r1.errors import R1Error

# The named special tokens transformers passes to every chat template (its SPECIAL_TOKENS_ATTRIBUTES).
NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Tokens that end an assistant turn in common chat formats. A model's tokenizer eos is often the
# end-of-document token (Qwen's <|endoftext|>, Llama-3's <|end_of_text|>) while its template ends
# turns with another one; generation must stop at either. Used only when the token exists in the
# vocabulary and the chat template actually writes it.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|EOT|>", EOS)

# config.json model types that speak the DeepSeek-R1 chat format when the folder carries no template.
DEEPSEEK_MODEL_TYPES = ("deepseek_v3", "deepseek_v2", "deepseek_r1")


class TokenizerLoadError(R1Error, ValueError):
    """A tokenizer file that is missing, unreadable or malformed; the message names file and field."""


class Tokenizer:
    """Encode, decode and render chats for one model.

    `special_tokens` maps transformers' names (`bos_token`, `eos_token`, `pad_token`, ...) to token
    strings; every one must be in the vocabulary. It is also what templates see as variables.
    `chat_template` is one template or `{name: template}`; `extra_eos_token_ids` adds stop ids
    (e.g. generation_config.json's list). `origin` names the source in error messages.
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, special_tokens: Mapping[str, str] | None = None,
                 chat_template: str | Mapping[str, str] | None = None,
                 extra_eos_token_ids: Sequence[int] = (), add_bos_token: bool = False,
                 origin: str = "tokenizer") -> None:
        if not isinstance(backend, tokenizers.Tokenizer):
            raise TypeError(f"{origin}: backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        self.backend = backend
        self.origin = origin
        vocab = backend.get_vocab(with_added_tokens=True)
        # ids are in [0, vocab_size); the embedding table needs at least this many rows.
        self.vocab_size: int = max(vocab.values()) + 1 if vocab else 0
        self.special_tokens: dict[str, str] = {}
        for name, token in (special_tokens or {}).items():
            if token is None:
                continue
            if not isinstance(token, str):
                raise TypeError(f"{origin}: special token {name} must be a string, got {type(token).__name__}")
            if token not in vocab:
                raise TokenizerLoadError(f"{origin}: special token {name}={token!r} is not in the vocabulary")
            self.special_tokens[name] = token
        # Whether `encode(text, add_special_tokens=True)` starts with BOS: raw-text prompts need it,
        # chat templates write their own, which is why apply_chat_template never adds one.
        self.add_bos_token = bool(add_bos_token)

        if chat_template is None:
            self.chat_templates: dict[str, str] = {}
        elif isinstance(chat_template, str):
            self.chat_templates = {"default": chat_template}
        elif isinstance(chat_template, Mapping):
            self.chat_templates = dict(chat_template)
        else:
            raise TypeError(f"{origin}: chat_template must be a string or a dict of named templates")
        for name, source in self.chat_templates.items():
            if not isinstance(source, str):
                raise TypeError(f"{origin}: chat template {name!r} must be a string, got {type(source).__name__}")
        self._compiled: dict[str, ChatTemplate] = {}  # a cache; compiled templates do not pickle

        stop: list[int] = []
        for tid in [self.eos_token_id, *extra_eos_token_ids, *self._end_of_turn_ids(vocab)]:
            if tid is None:
                continue
            if not isinstance(tid, int) or not 0 <= tid < self.vocab_size:
                raise TokenizerLoadError(f"{origin}: end-of-generation id {tid!r} is outside the vocabulary")
            if tid not in stop:
                stop.append(tid)
        self.eos_token_ids: list[int] = stop
        self._special_ids = frozenset(
            i for i, t in backend.get_added_tokens_decoder().items() if t.special
        )

    def __getstate__(self) -> dict:
        """Picklable (a trainer hands its tokenizer to the rollout worker process): without the
        compiled-template cache, which holds jinja2's generated functions."""
        return {**self.__dict__, "_compiled": {}}

    def _end_of_turn_ids(self, vocab: Mapping[str, int]) -> list[int]:
        text = "\n".join(self.chat_templates.values())
        return [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab and t in text]

    def __repr__(self) -> str:
        return (f"Tokenizer(origin={self.origin!r}, vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
                f"eos={self.eos_token!r}, templates={sorted(self.chat_templates)})")

    # ----- special tokens
    def _id_of(self, name: str) -> int | None:
        token = self.special_tokens.get(name)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_token(self) -> str | None:
        return self.special_tokens.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self.special_tokens.get("eos_token")

    @property
    def pad_token(self) -> str | None:
        return self.special_tokens.get("pad_token")

    @property
    def unk_token(self) -> str | None:
        return self.special_tokens.get("unk_token")

    @property
    def bos_token_id(self) -> int | None:
        return self._id_of("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._id_of("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._id_of("pad_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._id_of("unk_token")

    @property
    def all_special_ids(self) -> frozenset[int]:
        """Ids of added tokens flagged special: what `decode(skip_special_tokens=True)` drops."""
        return self._special_ids

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def __len__(self) -> int:
        return self.vocab_size

    # ----- text <-> ids
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of `text`. Special-token strings in the text become their ids (the way rendered chat
        prompts are meant to be read). `add_special_tokens` applies tokenizer.json's post-processor
        (e.g. a BOS), which a rendered chat template has already written itself."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"encode_batch(): texts[{i}] is {type(t).__name__}, not str")
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        ids = [int(i) for i in ids]
        # `tokenizers` silently skips unknown ids; a model emitting one is a bug worth seeing.
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(self._check_ids(ids), skip_special_tokens=skip_special_tokens)

    def detokenizer(self, *, skip_special_tokens: bool = True,
                    prompt_ids: Sequence[int] | None = None) -> IncrementalDetokenizer:
        """A streaming decoder for one generation (see `IncrementalDetokenizer`)."""
        return IncrementalDetokenizer(self, skip_special_tokens=skip_special_tokens, prompt_ids=prompt_ids)

    # ----- chat
    @property
    def chat_template(self) -> str | None:
        """The default template's source (None when the model has none)."""
        if not self.chat_templates:
            return None
        try:
            return select_template(self.chat_templates, origin=self.origin)
        except ChatTemplateError:
            return None

    def get_chat_template(self, chat_template: str | None = None,
                          tools: Sequence[Any] | None = None) -> ChatTemplate:
        """The compiled template `apply_chat_template` would use: `chat_template` may name one of
        the model's templates or be a template's full text."""
        if chat_template is not None and chat_template not in self.chat_templates:
            source, origin = chat_template, "chat_template argument"
        else:
            if not self.chat_templates:
                raise ChatTemplateError(
                    f"{self.origin}: has no chat template; pass chat_template=... or use a model that ships one"
                )
            source = select_template(self.chat_templates, chat_template, tools, origin=self.origin)
            name = next(n for n, s in self.chat_templates.items() if s == source)
            origin = f"{self.origin} chat template {name!r}"
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._compiled[source] = ChatTemplate(source, origin)
        return compiled

    @property
    def template_variables(self) -> dict[str, str]:
        """The special-token strings every template render sees (transformers' special_tokens_map)."""
        return dict(self.special_tokens)

    def apply_chat_template(self, messages: Sequence[Any], add_generation_prompt: bool = True,
                            tokenize: bool = False, tools: Sequence[Any] | None = None, *,
                            chat_template: str | None = None, documents: Sequence[Any] | None = None,
                            **kwargs: Any) -> str | list[int]:
        """Render `messages` (OpenAI-style dicts) into the prompt text, or its ids with
        `tokenize=True`. Extra keyword arguments reach the template (e.g. `enable_thinking`) and
        override the special-token variables, as in transformers."""
        template = self.get_chat_template(chat_template, tools)
        text = template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools,
                               documents=documents, **{**self.template_variables, **kwargs})
        if tokenize:
            return self.encode(text, add_special_tokens=False)
        return text


# ---------------------------------------------------------------------------------------------
# loading

def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise TokenizerLoadError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerLoadError(f"{path}: cannot read: {e}") from e


def _read_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict):
        raise TokenizerLoadError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerLoadError(f"{path}: cannot read: {e}") from e


def _token_string(value: Any, path: Path, field: str) -> str | None:
    # Saved as a plain string, or as an AddedToken dict {"content": ..., "lstrip": ..., ...}.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise TokenizerLoadError(f"{path}: field {field!r} must be a token string or an AddedToken object, got {value!r}")


def _eos_ids(value: Any, path: Path) -> list[int]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TokenizerLoadError(f"{path}: field 'eos_token_id' must be an int or a list of ints, got {value!r}")
    return list(values)


def _templates_from_config(value: Any, path: Path) -> dict[str, str]:
    # tokenizer_config.json stores one template as a string, several as [{"name", "template"}].
    if value is None:
        return {}
    if isinstance(value, str):
        return {"default": value}
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                    and isinstance(item.get("template"), str)):
                raise TokenizerLoadError(
                    f"{path}: chat_template[{i}] must be an object with string 'name' and 'template', got {item!r}"
                )
            out[item["name"]] = item["template"]
        return out
    raise TokenizerLoadError(f"{path}: field 'chat_template' must be a string or a list of named templates")


def _load_hf_folder(folder: Path) -> Tokenizer:
    tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise TokenizerLoadError(f"{folder}: no tokenizer.json (and no .gguf file) to load a tokenizer from")
    try:
        backend = tokenizers.Tokenizer.from_file(str(tok_file))
    except Exception as e:  # the Rust side raises a bare Exception for every kind of malformation
        raise TokenizerLoadError(f"{tok_file}: not a valid tokenizers file: {e}") from e

    cfg_file = folder / "tokenizer_config.json"
    cfg = _read_json_object(cfg_file)
    special: dict[str, str | None] = {}
    for key, value in cfg.items():
        if key in NAMED_SPECIAL_TOKENS:
            special[key] = _token_string(value, cfg_file, key)
        elif key.endswith("_token") and (isinstance(value, str) or (isinstance(value, dict) and "content" in value)):
            # Model-specific tokens (image_token, ...) are template variables too, as in transformers.
            special[key] = _token_string(value, cfg_file, key)
    # Legacy folders keep the special tokens in special_tokens_map.json; transformers reads it only
    # when tokenizer_config.json has no `added_tokens_decoder`, and then lets it win.
    map_file = folder / "special_tokens_map.json"
    if "added_tokens_decoder" not in cfg:
        for key, value in _read_json_object(map_file).items():
            if key in NAMED_SPECIAL_TOKENS:
                special[key] = _token_string(value, map_file, key)

    # Like transformers, named special tokens missing from the vocabulary are added as special tokens.
    missing = [t for t in dict.fromkeys(v for v in special.values() if v) if backend.token_to_id(t) is None]
    if missing:
        backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in missing])

    # Templates: chat_template.jinja and additional_chat_templates/*.jinja win over the config.
    templates = _templates_from_config(cfg.get("chat_template"), cfg_file)
    template_file = folder / "chat_template.jinja"
    extra_dir = folder / "additional_chat_templates"
    file_templates: dict[str, str] = {}
    if template_file.is_file():
        file_templates["default"] = _read_text(template_file)
    if extra_dir.is_dir():
        for f in sorted(extra_dir.glob("*.jinja")):
            file_templates[f.stem] = _read_text(f)
    if file_templates:
        templates = file_templates

    model_cfg = _read_json_object(folder / "config.json")
    gen_file = folder / "generation_config.json"
    gen_cfg = _read_json_object(gen_file)
    if not templates and (model_cfg.get("model_type") in DEEPSEEK_MODEL_TYPES or _speaks_r1(backend)):
        templates = {"default": R1_CHAT_TEMPLATE}
    extra_eos = _eos_ids(gen_cfg.get("eos_token_id"), gen_file) + _eos_ids(
        model_cfg.get("eos_token_id"), folder / "config.json")
    # transformers ignores tokenizer_config's add_bos_token when tokenizer.json exists: the
    # post-processor in tokenizer.json decides, so report what it does.
    add_bos = _post_processor_adds_bos(backend, special.get("bos_token"))
    return Tokenizer(backend, special_tokens=special, chat_template=templates or None,
                     extra_eos_token_ids=extra_eos, add_bos_token=add_bos, origin=str(folder))


def _post_processor_adds_bos(backend: tokenizers.Tokenizer, bos: str | None) -> bool:
    if bos is None:
        return False
    return backend.encode("", add_special_tokens=True).ids[:1] == [backend.token_to_id(bos)]


def _speaks_r1(backend: tokenizers.Tokenizer) -> bool:
    # A vocabulary with R1's role tokens is a DeepSeek-family tokenizer whatever the folder says.
    return backend.token_to_id(USER) is not None and backend.token_to_id(ASSISTANT) is not None


def _load_gguf(path: Path) -> Tokenizer:
    from r1.formats.gguf_tokenizer import tokenizer_from_gguf

    spec = tokenizer_from_gguf(path)
    special = {"bos_token": spec.bos_token, "eos_token": spec.eos_token,
               "unk_token": spec.unk_token, "pad_token": spec.pad_token}
    template = spec.chat_template
    if template is None and _speaks_r1(spec.tokenizer):
        template = R1_CHAT_TEMPLATE
    return Tokenizer(spec.tokenizer, special_tokens=special, chat_template=template,
                     add_bos_token=spec.add_bos_token, origin=str(path))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a HF model folder or a `.gguf` file (a folder holding no tokenizer.json
    but exactly one .gguf file loads that file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder to load a tokenizer from")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return _load_gguf(path)
        if path.name == "tokenizer.json":
            return _load_hf_folder(path.parent)
        raise TokenizerLoadError(f"{path}: not a tokenizer: give a model folder, a tokenizer.json or a .gguf file")
    if not (path / "tokenizer.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _load_gguf(ggufs[0])
        if len(ggufs) > 1:
            raise TokenizerLoadError(
                f"{path}: no tokenizer.json and several .gguf files ({', '.join(g.name for g in ggufs)}); pick one"
            )
    return _load_hf_folder(path)
