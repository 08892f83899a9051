"""Request and response models of the API (what /docs shows and JSON bodies are read with)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from mpt_core.data import FIELDS, ExampleField
from mpt_core.tasks import TASKS


class ItemBase(BaseModel):
    """What every item of a JSON body has; the task inputs are added per registered task."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(description="The domain whose prompts answer (GET /v1/domains).")
    image: str = Field(
        description="The image file, base64-encoded (a `data:image/...;base64,` URL works)."
    )
    embedding: bool = Field(
        False, description="Also return the image embedding (centred, L2-normalised)."
    )


def input_fields() -> list[ExampleField]:
    """The example fields some registered task takes as a prediction input (a VQA
    question, retrieval's candidate captions), in registration order: what an item may
    send besides its domain and image."""
    names = [n for t in TASKS for n in (*TASKS.get(t).inputs, *TASKS.get(t).optional_inputs)]
    return [FIELDS[name] for name in dict.fromkeys(names)]


def _tasks_taking(name: str) -> str:
    return ", ".join(
        t for t in TASKS if name in (*TASKS.get(t).inputs, *TASKS.get(t).optional_inputs)
    )


@lru_cache(maxsize=8)
def _item_model(fields: tuple[ExampleField, ...]) -> type[ItemBase]:
    extra: dict[str, Any] = {}
    for f in fields:
        kind = list[str] if f.many else str
        extra[f.name] = (
            kind | None,
            Field(None, description=f"{f.help[:1].upper()}{f.help[1:]} ({_tasks_taking(f.name)})."),
        )
    return create_model("PredictItem", __base__=ItemBase, **extra)


def predict_item() -> type[ItemBase]:
    """The model of one item of a JSON body: `ItemBase` plus every task input."""
    return _item_model(tuple(input_fields()))


def predict_request() -> type[BaseModel]:
    """The model of a JSON body (what /docs shows)."""
    return create_model(
        "PredictRequest",
        items=(list[predict_item()], Field(description="The batch; items may mix domains.")),
    )


class BackboneOut(BaseModel):
    family: str
    name: str
    weights_sha256: str


class ItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    domain: str
    alias: str
    version: int = Field(description="The prompt version that produced this result.")
    task: str
    prediction: str | None = Field(
        description="The label, answer or best caption; null when there was nothing to rank."
    )
    scores: dict[str, float] = Field(
        description="Each class, answer or caption -> probability, highest first."
    )
    backbone: BackboneOut
    embedding: list[float] | None = None


class ItemProblem(BaseModel):
    index: int
    field: str
    problem: str
    fix: str


class ItemFailure(BaseModel):
    index: int
    error: ItemProblem


class PredictResponse(BaseModel):
    results: list[ItemResult | ItemFailure] = Field(
        description="One entry per item, in order; failures only with ?partial=true."
    )


class ErrorBody(BaseModel):
    status: int
    message: str
    field: str | None = None
    fix: str | None = None
    items: list[ItemProblem] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class DomainOut(BaseModel):
    domain: str
    alias: str
    state: str = Field(description="serving | no version | loading | failed")
    version: int | None
    task: dict[str, Any] | None = Field(
        description="The task and its value sets (class names, questions and answers)."
    )
    inputs: list[str] = Field(description="Fields an item of this domain needs.")
    optional_inputs: list[str]
    method: str | None
    backbone: BackboneOut | None
    loaded_at: str | None
    failure: dict[str, Any] | None = Field(
        description="The version the alias points at that could not be loaded, and why."
    )
    shadow: dict[str, Any] = Field(
        description="The version that also answers a share of this domain's items "
        "(`monitoring.shadow_fraction`) off the response path: state (none | loading | "
        "shadowing | failed | off on this server), version, source, fraction, and per "
        "(shadow, production) pair since this server started: answered, agreement, "
        "similarity (generated text), errors, dropped."
    )
    drift: dict[str, Any] = Field(
        description="Drift of production's predictions over the last `window` items against "
        "its test split: statistic (psi), state (measured | collecting | no reference), "
        "drift (the larger component), components (predictions, confidence), samples."
    )


class DomainsResponse(BaseModel):
    alias: str
    domains: list[DomainOut]


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its `$defs` substituted in place (for `openapi_extra`,
    where `#/$defs/...` references would not resolve)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.rsplit("/", 1)[1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def multipart_schema() -> dict[str, Any]:
    """The multipart form /docs shows: domain and images, then every task input (a text
    input once for every image or once per image; a list input repeated, for every image)."""
    inputs = {}
    for f in input_fields():
        if f.many:
            inputs[f.form_field] = {
                "type": "array",
                "items": {"type": "string"},
                "description": f"{f.help} ({_tasks_taking(f.name)}): repeat the field; for every "
                "image.",
            }
        else:
            inputs[f.form_field] = {
                "type": "string",
                "description": f"{f.help} ({_tasks_taking(f.name)}): once, or once per image.",
            }
    return {
        "type": "object",
        "properties": {
            "domain": {
                "type": "string",
                "description": "The domain; once for every image, or once per image, in order.",
            },
            "image": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": "One or more image files; each is one item.",
            },
            **inputs,
            "embedding": {"type": "boolean", "description": "Also return the image embeddings."},
            "items": {
                "type": "string",
                "description": "Instead of the fields above: a JSON list of items as in the JSON "
                "body, whose `image` names a file part of this form.",
            },
        },
        "required": ["image"],
    }
