"""The example fields the built-in tasks read, declared once and shared by the tasks that
read the same field (a caption means the same to retrieval and captioning)."""

from __future__ import annotations

from ..data import ExampleField

LABEL = ExampleField("label", "the image's class: one of the domain's declared labels")
CAPTION = ExampleField("caption", "a text describing the image")
QUESTION = ExampleField("question", "a question about the image")
ANSWER = ExampleField("answer", "the answer to the row's question")
QUESTION_TYPE = ExampleField(
    "question_type", "a group of questions (e.g. 'what color'); per-type accuracy is reported"
)
CANDIDATES = ExampleField(
    "candidates", "the captions to rank for this image", many=True, form_name="candidate"
)
