"""Metrics of generated text, in pure Python (no Java, no extra dependency).

- `bleu` and `cider_d` compute what coco-caption's (pycocoevalcap) `Bleu(4)` and `Cider`
  scorers compute on the same tokenised strings (tested against them): corpus BLEU-1..4
  with the "closest reference length" brevity penalty, and CIDEr-D (tf-idf n-gram
  vectors with document frequencies over the evaluated references, clipped, with the
  Gaussian length penalty, sigma 6, times 10).
- `caption_tokens` stands in for coco-caption's Stanford PTB tokeniser (which needs Java):
  lower case, clitics split off ("dog's" -> "dog 's", "isn't" -> "is n't"), punctuation
  dropped, hyphenated words and numbers kept whole.
- `normalize_answer` and `vqa_accuracy` follow the official VQAv2 evaluation: answer
  normalisation (punctuation, number words, articles, contractions) and the accuracy
  min(#humans that gave the answer / 3, 1), averaged over the leave-one-annotator-out
  subsets of the reference answers.
- `token_f1` compares two single texts (a server's shadow answer with production's): the
  F1 of their bag of caption tokens, SQuAD's answer overlap. BLEU and CIDEr-D are corpus
  measures (CIDEr-D's idf needs many references; sentence BLEU-4 is 0 for two short texts
  without a common 4-gram), so neither says how alike two answers are.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

NGRAMS = 4
CIDER_SIGMA = 6.0

# --- caption tokenisation ---------------------------------------------------------------
# coco-caption drops these PTB tokens (brackets become -LRB- etc. first, then are dropped)
_DROPPED = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_BRACKETS = set("()[]{}")
_CLITIC = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'m|'d)\b")  # split off, as PTB does
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|m|d)\b|\d+(?:[.,]\d+)*|\w+(?:[-'.]\w+)*|\.\.\.|--|\S")


def caption_tokens(text: str) -> list[str]:
    """A caption as coco-caption tokenises it before scoring (see the module docstring)."""
    text = _CLITIC.sub(r" \1", text.lower())
    return [t for t in _TOKEN.findall(text) if t not in _DROPPED and t not in _BRACKETS]


def _ngrams(words: Sequence[str], n: int = NGRAMS) -> Counter:
    return Counter(
        tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)
    )


# --- BLEU ---------------------------------------------------------------------------------
def bleu(
    hypotheses: Mapping[Hashable, Sequence[str]],
    references: Mapping[Hashable, Sequence[Sequence[str]]],
    n: int = NGRAMS,
) -> list[float]:
    """Corpus BLEU-1..n. hypotheses: key -> tokens; references: key -> [tokens, ...]."""
    _same_keys(hypotheses, references)
    tiny, small = 1e-15, 1e-9  # coco-caption's smoothing: a zero count gives ~0, not an error
    correct, guess = [0] * n, [0] * n
    hyp_len = ref_len = 0
    for key, hyp in hypotheses.items():
        refs = references[key]
        counts = _ngrams(hyp, n)
        max_ref: Counter = Counter()
        for ref in refs:
            max_ref |= _ngrams(ref, n)
        for gram, count in counts.items():
            correct[len(gram) - 1] += min(count, max_ref[gram])
        for k in range(n):
            guess[k] += max(0, len(hyp) - k)
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[
            1
        ]  # closest, shorter on ties
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1 / (k + 1)))
    ratio = (hyp_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


# --- CIDEr-D ------------------------------------------------------------------------------
def cider_d(
    hypotheses: Mapping[Hashable, Sequence[str]],
    references: Mapping[Hashable, Sequence[Sequence[str]]],
    n: int = NGRAMS,
    sigma: float = CIDER_SIGMA,
) -> tuple[float, dict[Hashable, float]]:
    """CIDEr-D of the corpus (mean) and of each key. Document frequencies and the idf
    normaliser come from the references given, so a corpus of one image scores 0."""
    _same_keys(hypotheses, references)
    ref_counts = {k: [_ngrams(r, n) for r in refs] for k, refs in references.items()}
    df: Counter = Counter()
    for counts in ref_counts.values():
        df.update({gram for c in counts for gram in c})
    log_docs = math.log(float(len(references)))

    def vector(counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        for gram, tf in counts.items():
            weight = tf * (log_docs - math.log(max(1.0, df[gram])))
            vec[len(gram) - 1][gram] = weight
            norm[len(gram) - 1] += weight * weight
        # coco-caption's length is the number of bigrams (its `n == 1`), kept for parity
        length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return vec, [math.sqrt(x) for x in norm], length

    per_key = {}
    for key, hyp in hypotheses.items():
        h_vec, h_norm, h_len = vector(_ngrams(hyp, n))
        total = [0.0] * n
        for counts in ref_counts[key]:
            r_vec, r_norm, r_len = vector(counts)
            penalty = math.exp(-((h_len - r_len) ** 2) / (2 * sigma**2))
            for k in range(n):
                dot = sum(
                    min(w, r_vec[k].get(g, 0.0)) * r_vec[k].get(g, 0.0) for g, w in h_vec[k].items()
                )
                if h_norm[k] and r_norm[k]:
                    dot /= h_norm[k] * r_norm[k]
                total[k] += dot * penalty
        per_key[key] = sum(total) / n / len(ref_counts[key]) * 10.0
    mean = sum(per_key.values()) / len(per_key) if per_key else 0.0
    return mean, per_key


def _same_keys(hypotheses: Mapping, references: Mapping) -> None:
    if set(hypotheses) != set(references):
        raise ValueError("hypotheses and references must have the same keys")
    empty = [k for k, refs in references.items() if not refs]
    if empty:
        raise ValueError(f"no reference for {empty[0]!r}")


# --- VQAv2 answers ------------------------------------------------------------------------
# The official evaluation's tables (VQA/PythonEvaluationTools/vqaEvaluation/vqaEval.py).
# Its capitalised keys ("Im", "Ive", "Id've", "I'dve") never match lower-cased answers and
# are left out.
# fmt: off
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't",
    "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow'sat", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = {"a", "an", "the"}
_PUNCT = [
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
]
# fmt: on
_PERIOD = re.compile(
    r"(?!<=\d)(\.)(?!\d)"
)  # sic: the official pattern (a period not before a digit)
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
HUMANS_FOR_FULL_CREDIT = 3


def _punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if f"{p} " in text or f" {p}" in text or _COMMA_NUMBER.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def normalize_answer(text: str) -> str:
    """An answer as the VQAv2 evaluation compares it: "Two dogs!" -> "2 dogs"."""
    text = _punctuation(text.replace("\n", " ").replace("\t", " ").strip().lower())
    words = [NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQAv2 accuracy of one answer: for each annotator left out, min(#other annotators
    who gave the (normalised) answer / 3, 1), averaged. One reference: exact match."""
    if not references:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    pred = normalize_answer(prediction)
    refs = [normalize_answer(r) for r in references]
    if len(refs) == 1:
        return float(pred == refs[0])
    matches = sum(r == pred for r in refs)
    # leaving out a matching annotator removes one match; leaving out another removes none
    scores = [min(1.0, (matches - (r == pred)) / HUMANS_FOR_FULL_CREDIT) for r in refs]
    return sum(scores) / len(scores)


def answer_type(references: Sequence[str]) -> str:
    """VQAv2's answer types from the most frequent normalised reference answer."""
    common = Counter(normalize_answer(r) for r in references).most_common(1)[0][0]
    if common in ("yes", "no"):
        return "yes/no"
    return "number" if common.isdigit() else "other"


def token_f1(a: str, b: str) -> float:
    """How alike two texts are, in [0, 1]: the F1 of their caption tokens as multisets
    (1.0 for the same words in any order; two empty texts are alike)."""
    ta, tb = Counter(caption_tokens(a)), Counter(caption_tokens(b))
    if not ta or not tb:
        return float(not ta and not tb)
    common = sum((ta & tb).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(ta.values()), common / sum(tb.values())
    return 2 * precision * recall / (precision + recall)
