"""Request and response models of the API (what /docs shows and JSON bodies are read with)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PredictItem(BaseModel):
    """One image to predict for, in a JSON body."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(description="The domain whose prompts answer (GET /v1/domains).")
    image: str = Field(
        description="The image file, base64-encoded (a `data:image/...;base64,` URL works)."
    )
    question: str | None = Field(
        None, description="VQA domains: the question, one the domain declares."
    )
    candidates: list[str] | None = Field(
        None,
        description="Retrieval domains: captions to rank for this image. Without them the "
        "result carries the image embedding only.",
    )
    embedding: bool = Field(
        False, description="Also return the image embedding (centred, L2-normalised)."
    )


TASK_FIELDS = ("question", "candidates")
"""PredictItem fields that are task inputs (Example fields named by a task's `inputs` or
`optional_inputs`); a test keeps this in step with the task registry."""


class PredictRequest(BaseModel):
    items: list[PredictItem] = Field(description="The batch; items may mix domains.")


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


MULTIPART_SCHEMA: dict[str, Any] = {
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
        "question": {"type": "string", "description": "VQA: once, or once per image."},
        "candidate": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Retrieval: a caption to rank (repeat the field), for every image.",
        },
        "embedding": {"type": "boolean", "description": "Also return the image embeddings."},
        "items": {
            "type": "string",
            "description": "Instead of the fields above: a JSON list of items as in the JSON "
            "body, whose `image` names a file part of this form.",
        },
    },
    "required": ["image"],
}
