"""From a request body to checked items: read (JSON or multipart), then check each item
against the served version of its domain and decode its image.

Every problem becomes an `ItemError` naming the item's index, the field and the fix;
request-level problems (no items, too many, not JSON) an `ApiError`. Cheap checks come
first, so an item with an unknown domain never has its image decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from mpt_core import DataError, Example

from . import images
from .catalog import Deployed, Snapshot
from .errors import ApiError, ItemError
from .json_body import JsonRefused, loads_limited
from .schemas import ItemBase, input_fields, predict_item
from .settings import ServeSettings

TRUE = {"1", "true", "yes", "on"}
FORM_FIELD_BYTES = 1024 * 1024
"""Largest text field of a multipart form (the `items` JSON of 64 items needs a few KB)."""
DOMAINS_HINT = "GET /v1/domains lists the domains and what each takes"


@dataclass
class RawItem:
    """An item as read from the body, before it is checked against its domain."""

    index: int
    domain: str = ""
    image: bytes = b""
    fields: dict[str, Any] = field(default_factory=dict)
    """Task inputs the item gave (question, candidates)."""
    embedding: bool = False
    error: ItemError | None = None


@dataclass(frozen=True)
class ReadyItem:
    """A checked item: the version that will serve it and the example to predict for."""

    index: int
    deployed: Deployed
    example: Example
    embedding: bool
    source: bytes = b""
    """The image as sent (a shadow disagreement keeps its sha256, never the bytes)."""


def limits(settings: ServeSettings) -> images.ImageLimits:
    return images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels)


# ---------------------------------------------------------------------- reading the body
async def read_items(request: Request, settings: ServeSettings) -> list[RawItem]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return await _from_json(request, settings)
    if kind == "multipart/form-data":
        return await _from_form(request, settings)
    raise ApiError(
        415,
        f"content type {kind or '(none)'!r} is not accepted",
        fix="send multipart/form-data (curl -F domain=retail -F image=@photo.png ...) or "
        'application/json ({"items": [{"domain": "retail", "image": "<base64>"}]})',
    )


def _check_count(n: int, settings: ServeSettings, field_name: str) -> None:
    if n == 0:
        raise ApiError(
            422,
            "the batch is empty",
            field=field_name,
            fix="send at least one item (an image and its domain)",
        )
    if n > settings.max_items:
        raise ApiError(
            413,
            f"the batch has {n} items; the limit is {settings.max_items}",
            field=field_name,
            fix=f"split it into requests of at most {settings.max_items} items "
            "(the server's limit is MPT_SERVE_MAX_ITEMS)",
        )


async def _from_json(request: Request, settings: ServeSettings) -> list[RawItem]:
    try:
        data = loads_limited(await request.body(), settings.max_json_depth)
    except JsonRefused as exc:
        raise ApiError(
            400,
            f"the body is refused: {exc}",
            fix='send a JSON object: {"items": [{"domain": "retail", "image": "<base64>"}]} '
            "(the server's depth limit is MPT_SERVE_MAX_JSON_DEPTH)",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ApiError(
            422,
            'the JSON body needs "items": a list of items',
            field="items",
            fix='send {"items": [{"domain": "retail", "image": "<base64 of the file>"}]}',
        )
    extra = sorted(set(data) - {"items"})
    if extra:
        raise ApiError(
            422, f"unknown field {extra[0]!r} in the body", field=extra[0], fix="remove it"
        )
    _check_count(len(data["items"]), settings, "items")
    return [_json_item(i, obj, settings) for i, obj in enumerate(data["items"])]


def _json_item(index: int, obj: Any, settings: ServeSettings) -> RawItem:
    try:
        item = predict_item().model_validate(obj)
    except ValidationError as exc:
        return RawItem(index, error=_schema_error(index, exc))
    try:
        data = images.from_base64(item.image, limits(settings))
    except images.ImageRejected as exc:
        return RawItem(index, error=ItemError(index, "image", exc.problem, exc.fix, exc.status))
    return RawItem(index, item.domain, data, _task_fields(item), item.embedding)


def _task_fields(item: ItemBase) -> dict[str, Any]:
    """The task inputs an item gave (its fields besides domain, image and embedding)."""
    values = item.model_dump(exclude=set(ItemBase.model_fields))
    return {f: v for f, v in values.items() if v is not None}


def _schema_error(index: int, exc: ValidationError) -> ItemError:
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "item"
    kind = first["type"]
    if kind == "missing":
        what = {"domain": "the domain's name", "image": "the base64-encoded image file"}
        return ItemError(index, name, "is missing", f"add {name!r}: {what.get(name, 'a value')}")
    if kind == "extra_forbidden":
        item_fields = ", ".join(predict_item().model_fields)
        return ItemError(
            index, name, "is not a field of an item", f"remove it; an item has: {item_fields}"
        )
    if kind == "string_unicode":  # a key with a lone surrogate ("\udfff") cannot be a field
        return ItemError(
            index,
            name,
            f"holds {first['input']!r}, which is not valid Unicode text (half of a surrogate pair)",
            "send UTF-8 text; an escape from \\ud800 to \\udfff must be half of a pair",
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return ItemError(
            index,
            "item",
            "is not a JSON object",
            'send each item as {"domain": "...", "image": "<base64>"}',
        )
    return ItemError(
        index, name, f"is invalid: {first['msg']}", "see the item schema at /docs (PredictItem)"
    )


async def _from_form(request: Request, settings: ServeSettings) -> list[RawItem]:
    try:
        form = await request.form(
            max_files=settings.max_items + 1,
            max_fields=10 * settings.max_items,
            max_part_size=FORM_FIELD_BYTES,
        )
    except HTTPException as exc:  # the form parser's limits and syntax errors
        raise ApiError(
            400,
            f"the multipart form is refused: {exc.detail}",
            fix="send each image as a file part and text fields of at most "
            f"{FORM_FIELD_BYTES // 1024} KB (curl -F domain=retail -F image=@photo.png)",
        ) from None
    try:
        if "items" in form:
            return await _form_items(form, settings)
        return await _form_fields(form, settings)
    finally:
        await form.close()


async def _read_upload(index: int, part: Any, name: str, settings: ServeSettings) -> RawItem:
    if not isinstance(part, UploadFile):
        return RawItem(
            index,
            error=ItemError(
                index,
                name,
                "is a text field, not a file",
                f"send the file itself (curl -F {name}=@photo.png)",
            ),
        )
    try:
        if part.size is not None:
            images.check_size(part.size, limits(settings))
        return RawItem(index, image=await part.read())
    except images.ImageRejected as exc:
        return RawItem(index, error=ItemError(index, name, exc.problem, exc.fix, exc.status))


def _per_item(form: FormData, name: str, n: int) -> list[str | None]:
    """A form field given once (for every image) or once per image."""
    values = [v for v in form.getlist(name) if isinstance(v, str)]
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) == n:
        return values
    raise ApiError(
        422,
        f"{len(values)} {name!r} fields for {n} images",
        field=name,
        fix=f"give {name!r} once (for every image) or once per image, in the images' order",
    )


def form_fields() -> tuple[str, ...]:
    """The fields a multipart form may have: domain, images, every task input, options."""
    inputs = [f.form_field for f in input_fields()]
    return ("domain", "image", *inputs, "embedding", "items")


async def _form_fields(form: FormData, settings: ServeSettings) -> list[RawItem]:
    known = form_fields()
    unknown = sorted(set(form.keys()) - set(known))
    if unknown:
        raise ApiError(
            422,
            f"unknown form field {unknown[0]!r}",
            field=unknown[0],
            fix=f"remove it; the form takes {', '.join(known)}",
        )
    parts = form.getlist("image")
    if not parts:
        raise ApiError(
            422,
            "the batch is empty: the form has no image",
            field="image",
            fix="add the image file: curl -F domain=retail -F image=@photo.png ...",
        )
    _check_count(len(parts), settings, "image")
    domains = _per_item(form, "domain", len(parts))
    given: dict[str, list[Any]] = {}  # input field -> its value for each image (or None)
    for f in input_fields():
        if f.many:
            values = [v for v in form.getlist(f.form_field) if isinstance(v, str)]
            given[f.name] = [values or None] * len(parts)
        else:
            given[f.name] = _per_item(form, f.form_field, len(parts))
    embedding = str(form.get("embedding", "")).lower() in TRUE
    out = []
    for i, part in enumerate(parts):
        item = await _read_upload(i, part, "image", settings)
        if item.error is None and domains[i] is None:
            item.error = ItemError(
                i, "domain", "is missing", f"add the domain: -F domain=NAME ({DOMAINS_HINT})"
            )
        item.domain, item.embedding = domains[i] or "", embedding
        item.fields.update((name, values[i]) for name, values in given.items() if values[i])
        out.append(item)
    return out


async def _form_items(form: FormData, settings: ServeSettings) -> list[RawItem]:
    try:
        listed = loads_limited(str(form["items"]), settings.max_json_depth)
    except JsonRefused as exc:
        raise ApiError(
            422,
            f"the 'items' field is refused: {exc}",
            field="items",
            fix='send a JSON list: -F \'items=[{"domain": "retail", "image": "a"}]\' -F a=@a.png',
        ) from None
    if not isinstance(listed, list):
        raise ApiError(422, "the 'items' field must be a JSON list", field="items", fix="wrap it")
    _check_count(len(listed), settings, "items")
    out = []
    for i, obj in enumerate(listed):
        part_name = obj.get("image") if isinstance(obj, dict) else None
        try:
            item = predict_item().model_validate(obj)
        except ValidationError as exc:
            out.append(RawItem(i, error=_schema_error(i, exc)))
            continue
        if part_name not in form:
            out.append(
                RawItem(
                    i,
                    error=ItemError(
                        i,
                        "image",
                        f"names the file part {part_name!r}, which the form does not have",
                        f"add it: -F {part_name}=@photo.png",
                    ),
                )
            )
            continue
        raw = await _read_upload(i, form[part_name], "image", settings)
        raw.domain, raw.fields, raw.embedding = item.domain, _task_fields(item), item.embedding
        out.append(raw)
    return out


# ---------------------------------------------------------------------- checking items
def _deployed(item: RawItem, snapshot: Snapshot) -> Deployed | ItemError:
    domain, alias, i = item.domain, snapshot.alias, item.index
    if domain in snapshot.served:
        return snapshot.served[domain]
    if not snapshot.synced:
        return ItemError(
            i, "domain", "cannot be served yet: the server is still loading", "retry shortly", 503
        )
    if domain not in snapshot.targets:
        known = ", ".join(sorted(snapshot.served)) or "(none)"
        return ItemError(
            i, "domain", f"{domain!r} is not a registered domain", f"use one of: {known}", 404
        )
    target = snapshot.targets[domain]
    if target is None:
        return ItemError(
            i,
            "domain",
            f"{domain!r} has no version under the alias {alias!r}",
            f"promote a version (mpt promote request / approve) or serve another alias "
            f"(mpt serve --alias staging); {DOMAINS_HINT}",
            404,
        )
    failure = snapshot.failures.get(domain)
    if failure is not None:
        return ItemError(
            i,
            "domain",
            f"{domain} v{target} ({alias}) could not be loaded: {failure.error}",
            "see GET /readyz; the server retries it, or roll the alias back",
            503,
        )
    return ItemError(i, "domain", f"{domain} v{target} is still loading", "retry shortly", 503)


def _fields_error(item: RawItem, deployed: Deployed, settings: ServeSettings) -> ItemError | None:
    task, i, domain = deployed.model.task, item.index, deployed.domain
    takes = [*task.inputs, *task.optional_inputs]
    described = ", ".join(["image", *takes])
    for name in item.fields:
        if name not in takes:
            return ItemError(
                i,
                name,
                f"is not an input of the {task.name} domain {domain!r}",
                f"remove it; items of {domain!r} take: {described}",
            )
    for name in task.inputs:
        value = item.fields.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return ItemError(
                i,
                name,
                f"is missing: the {task.name} domain {domain!r} needs it",
                f"add {name!r} ({DOMAINS_HINT})",
            )
    for f in input_fields():
        values = item.fields.get(f.name) if f.many else None
        if values and len(values) > settings.max_candidates:
            return ItemError(
                i,
                f.name,
                f"has {len(values)} values; the limit is {settings.max_candidates}",
                f"send fewer {f.name} per item (the server's limit is MPT_SERVE_MAX_CANDIDATES)",
                413,
            )
    return None


_EXAMPLE_PREFIX = re.compile(r"^example \d+: ")


def check_item(item: RawItem, snapshot: Snapshot, settings: ServeSettings) -> ReadyItem | ItemError:
    """The item ready to predict, or the first thing wrong with it."""
    if item.error is not None:
        return item.error
    deployed = _deployed(item, snapshot)
    if isinstance(deployed, ItemError):
        return deployed
    problem = _fields_error(item, deployed, settings)
    if problem is not None:
        return problem
    try:
        image = images.decode(item.image, limits(settings))
    except images.ImageRejected as exc:
        return ItemError(item.index, "image", exc.problem, exc.fix, exc.status)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in item.fields.items()}
    example = Example(image, **values)
    try:
        deployed.model.task.check_inputs([example])
    except DataError as exc:
        return ItemError(
            item.index,
            exc.field or "item",
            _EXAMPLE_PREFIX.sub("", str(exc)),
            f"use a value the domain declares ({DOMAINS_HINT})",
        )
    return ReadyItem(item.index, deployed, example, item.embedding, item.image)


def check_items(
    raw: list[RawItem], snapshot: Snapshot, settings: ServeSettings
) -> list[ReadyItem | ItemError]:
    return [check_item(item, snapshot, settings) for item in raw]
