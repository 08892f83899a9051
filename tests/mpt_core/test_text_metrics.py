"""Metrics of generated text: BLEU and CIDEr-D against coco-caption's own scorers
(pycocoevalcap, a dev dependency), caption tokenisation, VQAv2 answer accuracy."""

from __future__ import annotations

import contextlib
import io

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from mpt_core.tasks.text_metrics import (
    answer_type,
    bleu,
    caption_tokens,
    cider_d,
    normalize_answer,
    vqa_accuracy,
)

# A fixed example set: 1 to 5 references per image, hypotheses shorter and longer than
# their references, exact, partial and no overlap, and one empty generation.
REFERENCES = {
    "beach": [
        "A man is riding a horse on the beach.",
        "A person rides a brown horse near the ocean",
        "man on horseback at the shore",
    ],
    "dogs": [
        "Two dogs play with a red ball in the grass.",
        "two dogs playing",
        "A pair of dogs chase a ball on a lawn.",
        "dogs in a park with a ball",
        "the dogs are playing fetch",
    ],
    "xray": ["An x-ray of a chest, showing the ribs.", "chest radiograph"],
    "plate": [
        "A plate of food with broccoli and rice",
        "a plate of rice, chicken and broccoli",
        "food on a white plate",
    ],
    "bed": ["A dog isn't sleeping on the man's bed", "a dog on a bed"],
    "square": ["a red square", "the square is red"],
    "empty": ["a cat on a mat"],
}
HYPOTHESES = {
    "beach": "a man riding a horse on a beach",
    "dogs": "two dogs play with a ball",
    "xray": "a chest x-ray",
    "plate": "a plate of food with rice and broccoli and rice",
    "bed": "a dog on the bed",
    "square": "blue",
    "empty": "",
}


def _coco_inputs():
    refs = {k: [" ".join(caption_tokens(r)) for r in v] for k, v in REFERENCES.items()}
    hyps = {k: [" ".join(caption_tokens(h))] for k, h in HYPOTHESES.items()}
    return refs, hyps


def _ours():
    return (
        {k: caption_tokens(h) for k, h in HYPOTHESES.items()},
        {k: [caption_tokens(r) for r in v] for k, v in REFERENCES.items()},
    )


def test_bleu_equals_coco_captions_scorer():
    refs, hyps = _coco_inputs()
    with contextlib.redirect_stdout(io.StringIO()):  # the scorer prints its counts
        expected, _ = Bleu(4).compute_score(refs, hyps)
    assert bleu(*_ours()) == pytest.approx(expected, rel=1e-12)
    assert 0 < bleu(*_ours())[3] < bleu(*_ours())[0] < 1


def test_cider_d_equals_coco_captions_scorer_per_image_and_overall():
    refs, hyps = _coco_inputs()
    expected, per_image = Cider().compute_score(refs, hyps)
    mean, ours = cider_d(*_ours())
    assert mean == pytest.approx(expected, rel=1e-12)
    assert list(ours.values()) == pytest.approx(list(per_image), rel=1e-12)
    assert ours["square"] == 0.0 and ours["empty"] == 0.0 and ours["plate"] > 1.0


def test_exact_caption_scores_highest_and_one_image_corpus_scores_zero():
    hyps, refs = _ours()
    hyps["dogs"] = caption_tokens(REFERENCES["dogs"][0])
    assert cider_d(hyps, refs)[1]["dogs"] > cider_d(*_ours())[1]["dogs"]
    # idf over a single image is log(1) - log(1) = 0 everywhere, as in coco-caption
    assert cider_d({"a": ["a", "dog"]}, {"a": [["a", "dog"]]})[0] == 0.0


def test_mismatched_keys_or_missing_references_are_errors():
    with pytest.raises(ValueError, match="same keys"):
        bleu({"a": ["x"]}, {"b": [["x"]]})
    with pytest.raises(ValueError, match="no reference for 'a'"):
        cider_d({"a": ["x"]}, {"a": []})


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man's dog, isn't it?", ["a", "man", "'s", "dog", "is", "n't", "it"]),
        ("Two dogs (brown) play...", ["two", "dogs", "brown", "play"]),
        ("An X-ray: 3.5 cm; 1,000 px!", ["an", "x-ray", "3.5", "cm", "1,000", "px"]),
        ("  don't  STOP  ", ["do", "n't", "stop"]),
    ],
)
def test_caption_tokens_follow_ptb_tokenisation_without_punctuation(text, tokens):
    assert caption_tokens(text) == tokens


@pytest.mark.parametrize(
    ("answer", "normalised"),
    [
        ("Two", "2"),
        ("the dog.", "dog"),
        ("An apple", "apple"),
        ("dont", "don't"),
        ("Yes!", "yes"),
        ("1,000", "1000"),
        ("red, white", "red white"),
        ("left/right", "left right"),
        ("3.5", "3.5"),
        ("  none\n", "0"),
    ],
)
def test_answer_normalisation_is_the_vqav2_one(answer, normalised):
    assert normalize_answer(answer) == normalised


@pytest.mark.parametrize(
    ("matches", "accuracy"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0)]
)
def test_vqa_accuracy_over_ten_annotators(matches, accuracy):
    references = ["yes"] * matches + ["no"] * (10 - matches)
    assert vqa_accuracy("Yes", references) == pytest.approx(accuracy)


def test_vqa_accuracy_normalises_both_sides_and_takes_one_reference_as_exact():
    assert vqa_accuracy("two", ["2", "2", "2", "two"]) == 1.0
    assert vqa_accuracy("A hole.", ["hole"]) == 1.0
    assert vqa_accuracy("a tear", ["hole"]) == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        vqa_accuracy("yes", [])


def test_answer_type_from_the_most_common_reference():
    assert answer_type(["Yes", "yes", "no"]) == "yes/no"
    assert answer_type(["three", "3", "4"]) == "number"
    assert answer_type(["a hole", "hole", "tear"]) == "other"
