"""Is a document English? The reflection generator's pipeline is English only, so a document in another language is
quarantined with the reason instead of being turned into garbage pairs. Told by script and by closed-class words (the
stop-word lists spaCy ships for each language), no model and no corpus-fitted list."""

import importlib
import re
import unicodedata
from collections import Counter

# languages whose closed-class words spaCy ships: a text scoring higher on one of them than on English is not English
OTHER_LANGUAGES = ("de", "fr", "es", "it", "nl", "pt", "sv", "da", "nb", "fi", "pl", "cs", "ro", "hu", "tr", "id", "ca", "hr")
MIN_SHARE = 0.15  # function-word share at which a text is prose of that language (English prose: 0.35 to 0.55)


def function_word_shares(text: str) -> dict[str, float]:
    """Share of the first 2,000 words of text that are closed-class words (spaCy's stop words) of each language;
    empty for a text of fewer than 20 words, too short to tell."""
    words = re.findall(r"[^\W\d_]+", text.lower())[:2000]
    if len(words) < 20:
        return {}
    shares = {}
    for code in ("en", *OTHER_LANGUAGES):
        stop_words = importlib.import_module(f"spacy.lang.{code}.stop_words").STOP_WORDS
        shares[code] = sum(w in stop_words for w in words) / len(words)
    return shares


def script_of(text: str) -> tuple[str, float]:
    """The script most letters of text are written in (LATIN, CYRILLIC, CJK, ...) and its share of the letters."""
    counts = Counter(unicodedata.name(c, "UNKNOWN").split()[0] for c in text[:5000] if c.isalpha())
    if not counts:
        return "LATIN", 1.0
    script, n = counts.most_common(1)[0]
    return script, n / sum(counts.values())


def language_problem(text: str) -> str | None:
    """Why a document cannot go to the English pipeline, or None. Not English: most letters in a non-Latin script, or
    prose whose function words are another language's (tables and name lists, which have few function words in any
    language, stay English)."""
    script, share = script_of(text)
    if script != "LATIN" and share > 0.5:
        return f"not English: {share:.0%} of its letters are {script.lower()} script; the reflection generator has an English pipeline only"
    shares = function_word_shares(text)
    if not shares:
        return None
    best = max(shares, key=shares.get)
    if best != "en" and shares[best] >= MIN_SHARE and shares[best] > 1.5 * shares["en"]:
        return (f"not English: {shares[best]:.0%} of its words are function words of language '{best}', {shares['en']:.0%} English ones; "
                "the reflection generator has an English pipeline only")
    return None
