"""Request pages show the evidence the task's contract makes meaningful, stored with the
predictions (`TaskEvidence`), never chosen by a task's name: generated text side by side
with the references and each example's score, the examples the candidate lost most on
first, no confusion matrix of strings, and a policy line stating the real rule. A task
no one has written yet gets the same page from the same facts. Superseded requests say
what replaced them. (SQLite and PostgreSQL.)"""

from __future__ import annotations

from registry import Policy, TaskEvidence

from .builders import BACKBONE, artifact
from .test_pages import section, text

MD5 = "f" * 32
CAPTIONS = {  # image -> its reference captions
    "images/0.png": ["a red square", "a square in red"],
    "images/1.png": ["a blue circle", "one blue circle"],
    "images/2.png": ["a green line", "a line in green"],
}
PRODUCTION = {"images/0.png": ("a red square", 3.1), "images/1.png": ("a blue circle", 2.2),
              "images/2.png": ("a line", 0.4)}  # fmt: skip
CANDIDATE = {"images/0.png": ("a red thing", 1.0), "images/1.png": ("a blue circle", 2.2),
             "images/2.png": ("a green line", 2.9)}  # fmt: skip


def caption_rows(texts: dict[str, tuple[str, float]]) -> list[dict]:
    return [
        {"image": image, "target": ref, "prediction": texts[image][0], "quality": texts[image][1]}
        for image, refs in CAPTIONS.items()
        for ref in refs
    ]


def generated_domain(reg, tmp_path, task: TaskEvidence, policy: Policy, domain="captions"):
    """Production v1 and a pending candidate v2 whose predictions are generated text."""
    reg.record_data_version(domain, MD5, rows=6, row_counts={"test": 6}, validation_passed=True)
    for number, texts, cider in ((1, PRODUCTION, 1.9), (2, CANDIDATE, 2.03)):
        reg.register_version(
            domain,
            artifact(tmp_path / f"{domain}-{number}", f"{domain}-{number}"),
            method="mpt",
            config={"preset": "mpt"},
            data_version=MD5,
            backbone=BACKBONE,
            metrics={"test": {"cider": cider, "bleu4": 0.2 * number, "bleu1": 0.5}},
            created_by="ana",
            primary_metric="cider",
        )
        reg.record_predictions(
            domain, number, MD5, "test", caption_rows(texts), target_field="caption", task=task
        )
        if number == 1:
            first = reg.request_promotion(domain, 1, requested_by="ana", policy=policy)
            reg.approve(first.id, reviewer="ben")
    return reg.request_promotion(domain, 2, requested_by="ana", policy=policy).id


CAPTIONING = TaskEvidence("captioning", closed=False, generates_text=True, example_metric="cider")


def test_a_captioning_request_shows_the_texts_side_by_side_not_a_confusion_matrix(
    as_user, reg, tokens, tmp_path
):
    request = generated_domain(reg, tmp_path, CAPTIONING, Policy("cider"))
    page = as_user("ben").get(f"/requests/{request}")
    assert page.status_code == 200
    assert 'id="confusions"' not in page.text and "Confusion matrices" not in text(page)
    texts = section(page, "texts")
    assert "Where v2 lost most against v1" in text(page)
    assert "by cider of each example; 1 of 3 lower than v1" in text(page)
    # one row per image, the biggest loss first: its references, both captions, the delta
    rows = texts.split("images/")[1:]
    assert rows[0].startswith("0.png a red square a square in red a red square 3.100")
    assert "a red thing 1.000 -2.100" in rows[0]
    assert rows[-1].startswith("2.png") and "+2.500" in rows[-1]
    metrics = section(page, "metrics")
    assert "cider (policy) 1.9000 2.0300 +0.1300" in metrics and "bleu4 0.2000 0.4000" in metrics
    policy = section(page, "policy")
    assert "metric cider at least +0.000 better" in policy
    assert "no per-group check: this task reports no per-group metric" in policy
    assert "class" not in policy


def test_an_open_vqa_request_names_its_real_group_rule(as_user, reg, tokens, tmp_path):
    vqa = TaskEvidence("vqa-open", closed=False, generates_text=True, example_metric="accuracy")
    policy = Policy("cider", max_class_regression=0.1, group_metric="per_question_type_accuracy")
    request = generated_domain(reg, tmp_path, vqa, policy)
    page = as_user("ben").get(f"/requests/{request}")
    assert "no question type losing more than 0.100 in per_question_type_accuracy" in section(
        page, "policy"
    )
    assert "by accuracy of each example" in text(page)


def test_a_task_nobody_has_written_yet_gets_its_page_from_the_same_facts(
    as_user, reg, tokens, tmp_path
):
    future = TaskEvidence("scene-story", closed=False, generates_text=True, example_metric="meteor")
    request = generated_domain(reg, tmp_path, future, Policy("cider"), domain="stories")
    page = as_user("ben").get(f"/requests/{request}")
    assert page.status_code == 200 and "by meteor of each example" in text(page)
    assert "Confusion matrices" not in text(page) and "a red thing" in section(page, "texts")


def test_a_closed_set_gets_its_matrix_however_many_labels_it_has():
    from review.views import confusions

    rows = [{"image": str(i), "target": f"label {i}", "prediction": "label 0"} for i in range(60)]
    closed = TaskEvidence("classification", closed=True, generates_text=False)
    ranked = TaskEvidence("retrieval", closed=False, generates_text=False)
    assert len(confusions(rows, "v2", closed)) == 1  # declared labels: a matrix (capped)
    assert confusions(rows, "v2", ranked) == []  # 60 distinct captions ranked: none
    assert confusions(rows, "v2", CAPTIONING) == []


def test_a_superseded_request_names_its_successor(as_user, reg, tokens, scene, tmp_path):
    from .builders import regressing_request

    stale = regressing_request(reg, tmp_path, scene)  # v3 -> production, opened at v1
    reg.approve(scene.request_id, reviewer="ben")  # production moves to v2
    page = as_user("ben").get(f"/requests/{stale}")
    assert "mpt promote request retail 3" in section(page, "superseded")
    fresh = reg.request_promotion("retail", 3, requested_by="ana", policy=Policy("accuracy"))
    page = as_user("ben").get(f"/requests/{stale}")
    assert f"Superseded by #{fresh.id}" in text(page) and 'id="superseded"' not in page.text
    assert 'id="decide"' not in page.text  # final, like a decision
    listed = as_user("vic").get("/requests?status=superseded")
    assert f"#{stale}" in section(listed, "requests") and f"#{fresh.id}" not in section(
        listed, "requests"
    )
