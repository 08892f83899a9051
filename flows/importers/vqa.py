"""`vqa`: VQAv2-style question and annotation files and their images.

    SOURCE/v2_OpenEnded_mscoco_train2014_questions.json
        {"data_subtype": "train2014", "questions": [{"image_id", "question", "question_id"}]}
    SOURCE/v2_mscoco_train2014_annotations.json
        {"data_subtype": "train2014", "annotations": [{"question_id", "multiple_choice_answer",
         "answers": [{"answer"}, ...], "question_type", "answer_type"}]}
    SOURCE/train2014/COCO_train2014_000000000009.jpg

Question files (JSON with `question` in the name) pair with annotation files (`annotation`
in the name) by `data_subtype`, else by the split in their names, else when there is one
of each. A pair's split comes from its `data_subtype` or names. An image id becomes a file
by `--image-pattern` (fields `{image_id}` and `{data_subtype}`, e.g.
`images/{image_id}.png`), else by an `images` list in either file (COCO's `id`,
`file_name`), else by VQAv2's own naming (`{data_subtype}/COCO_{data_subtype}_{image_id:012d}.jpg`).

Each question gives its consensus answer (`multiple_choice_answer`) first, then the other
annotators' answers: a task whose rows are keyed by image and question keeps the
consensus; one that keeps every annotator's answer (open VQA) gets them all.
"""

from __future__ import annotations

import posixpath
import string
from collections.abc import Iterator
from typing import Any

from .base import FormatOptions, ImportFormat, Record, split_of
from .jsonfiles import entries, json_files, load_json, scalars
from .source import ImportFailed, Source, safe_join

VQA_V2_PATTERN = "{data_subtype}/COCO_{data_subtype}_{image_id:012d}.jpg"
PATTERN_FIELDS = ("image_id", "data_subtype")


def read(source: Source, options: FormatOptions) -> Iterator[Record]:
    if options.image_pattern is not None:
        _check_pattern(options.image_pattern)
    for questions, answers in _pairs(source):
        yield from _records(source, questions, answers, options)


def _pairs(source: Source) -> list[tuple[str, str]]:
    questions = json_files(source, "question")
    annotations = [a for a in json_files(source, "annotation") if a not in questions]
    if not questions or not annotations:
        raise ImportFailed(
            f"{source.text}: needs VQA question files (JSON, 'question' in the name) and "
            "annotation files ('annotation' in the name); found "
            f"{questions + annotations or 'none'}"
        )
    documents = {rel: load_json(source, rel) for rel in questions + annotations}

    def key(rel: str) -> str | None:
        return documents[rel].get("data_subtype") or split_of(posixpath.basename(rel))

    if len(questions) == len(annotations) == 1:
        return [(questions[0], annotations[0])]
    pairs, unpaired = [], []
    by_key = {key(a): a for a in annotations}
    for q in questions:
        if key(q) is not None and key(q) in by_key:
            pairs.append((q, by_key[key(q)]))
        else:
            unpaired.append(q)
    if unpaired or len(pairs) != len(annotations):
        raise ImportFailed(
            f"{source.text}: cannot pair question files {questions} with annotation files "
            f"{annotations} (by data_subtype or the split in their names: {unpaired} has no "
            "partner); questions without answers (test-dev) cannot be imported: remove them"
        )
    return pairs


def _records(
    source: Source, questions_rel: str, annotations_rel: str, options: FormatOptions
) -> Iterator[Record]:
    where_q, where_a = source.describe(questions_rel), source.describe(annotations_rel)
    questions_doc = load_json(source, questions_rel)
    annotations_doc = load_json(source, annotations_rel)
    subtype = questions_doc.get("data_subtype") or annotations_doc.get("data_subtype")
    split = split_of(str(subtype or "")) or split_of(posixpath.basename(questions_rel))
    questions = entries(
        questions_doc, "questions", ("image_id", "question", "question_id"), where_q
    )
    answers = {
        a["question_id"]: a
        for a in entries(
            annotations_doc, "annotations", ("question_id", "multiple_choice_answer"), where_a
        )
    }
    files = _image_files(questions_doc, annotations_doc)
    for number, question in enumerate(questions):
        here = f"{where_q}: questions[{number}] (question_id {question['question_id']})"
        annotation = answers.get(question["question_id"])
        if annotation is None:
            raise ImportFailed(
                f"{here}: no annotation in {where_a} answers it; add its annotation or drop "
                "the question"
            )
        image = _image_path(question["image_id"], subtype, files, options, here)
        fields = {"question": str(question["question"]).strip()}
        if annotation.get("question_type"):
            fields["question_type"] = str(annotation["question_type"])
        attributes = {**scalars(annotation), **scalars(question)}
        for answer in _answers(annotation):
            yield Record(
                image=image,
                fields={**fields, "answer": answer},
                where=f"{here}, image_id {question['image_id']}",
                split=split,
                attributes=attributes,
            )


def _answers(annotation: dict[str, Any]) -> list[str]:
    """The consensus answer, then every other annotator answer (one occurrence of the
    consensus among them is the consensus itself)."""
    consensus = str(annotation["multiple_choice_answer"]).strip()
    others = [
        str(a["answer"]).strip()
        for a in annotation.get("answers") or []
        if isinstance(a, dict) and str(a.get("answer", "")).strip()
    ]
    if consensus in others:
        others.remove(consensus)
    return [consensus, *others]


def _image_files(*documents: dict[str, Any]) -> dict[Any, str]:
    """image id -> file name, from an `images` list in either file (COCO style)."""
    files: dict[Any, str] = {}
    for document in documents:
        for image in document.get("images") or []:
            if isinstance(image, dict) and image.get("id") is not None and image.get("file_name"):
                files[image["id"]] = str(image["file_name"])
    return files


def _image_path(
    image_id: Any, subtype: str | None, files: dict[Any, str], options: FormatOptions, here: str
) -> str:
    where = f"{here}: image_id {image_id!r}"
    if options.image_pattern is not None:
        name = _format(options.image_pattern, image_id, subtype, where)
        return safe_join(options.images or "", name, where)
    if image_id in files:
        return safe_join(options.images or "", files[image_id], where)
    if subtype is None:
        raise ImportFailed(
            f"{where}: no file name for the image (no `images` list, no data_subtype for "
            "VQAv2's naming); give one with --image-pattern, e.g. 'images/{image_id}.jpg'"
        )
    return safe_join(options.images or "", _format(VQA_V2_PATTERN, image_id, subtype, where), where)


def _check_pattern(pattern: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise ImportFailed(f"--image-pattern {pattern!r}: {exc}") from None
    bad = [n for n in names if n not in PATTERN_FIELDS]
    if bad or "image_id" not in names:
        raise ImportFailed(
            f"--image-pattern {pattern!r} may use only {{image_id}} (required) and "
            f"{{data_subtype}}; found {names}"
        )


def _format(pattern: str, image_id: Any, subtype: str | None, where: str) -> str:
    try:
        return pattern.format(image_id=image_id, data_subtype=subtype)
    except (ValueError, TypeError) as exc:
        raise ImportFailed(
            f"{where}: the image pattern {pattern!r} does not apply: {exc}"
        ) from None


FORMAT = ImportFormat(
    "vqa",
    "VQAv2-style questions + annotations JSON (v2_*_questions.json, v2_*_annotations.json)",
    ("images", "image_pattern"),
    read,
)
