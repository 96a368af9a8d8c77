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
MIN_WORDS = 20  # below this, too few words for the share rule: short texts go by the stricter rule of short_text_language
# short text: a quarter of its words are another language's function words that English does not have, at least twice
# its English function words (prose of any language is 35 % or more function words; an English sentence that quotes a
# foreign title or name stays under both)
MIN_SHORT_WORDS, MIN_FOREIGN_SHARE, FOREIGN_OVER_ENGLISH = 5, 0.25, 2.0


def words_of(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+", text.lower())[:2000]


def stop_words(code: str) -> frozenset:
    return importlib.import_module(f"spacy.lang.{code}.stop_words").STOP_WORDS


def function_word_shares(text: str) -> dict[str, float]:
    """Share of the first 2,000 words of text that are closed-class words (spaCy's stop words) of each language;
    empty for a text of fewer than 20 words, too short to tell."""
    words = words_of(text)
    if len(words) < MIN_WORDS:
        return {}
    return {code: sum(w in stop_words(code) for w in words) / len(words) for code in ("en", *OTHER_LANGUAGES)}


def short_text_language(text: str) -> tuple[str, float, float] | None:
    """(language, share of its function words that are not English ones, English function-word share) for a text of
    MIN_SHORT_WORDS to MIN_WORDS words that reads as another language, else None. Single letters are left out: most
    languages' lists hold some, and in English they are initials."""
    words = words_of(text)
    if not MIN_SHORT_WORDS <= len(words) < MIN_WORDS:
        return None
    english = stop_words("en")
    foreign = {code: sum(len(w) > 1 and w in stop_words(code) and w not in english for w in words) / len(words) for code in OTHER_LANGUAGES}
    best = max(foreign, key=foreign.get)
    english_share = sum(w in english for w in words) / len(words)
    if foreign[best] >= MIN_FOREIGN_SHARE and foreign[best] >= FOREIGN_OVER_ENGLISH * english_share:
        return best, foreign[best], english_share
    return None


def script_of(text: str) -> tuple[str, float]:
    """The script most letters of text are written in (LATIN, CYRILLIC, CJK, ...) and its share of the letters."""
    counts = Counter(unicodedata.name(c, "UNKNOWN").split()[0] for c in text[:5000] if c.isalpha())
    if not counts:
        return "LATIN", 1.0
    script, n = counts.most_common(1)[0]
    return script, n / sum(counts.values())


def language_problem(text: str) -> str | None:
    """Why a document cannot go to the English pipeline, or None. Not English: most letters in a non-Latin script, or
    prose whose function words are another language's, judged on short texts too (tables and name lists, which have few
    function words in any language, stay English); a text of fewer than MIN_SHORT_WORDS words gets no verdict."""
    script, share = script_of(text)
    if script != "LATIN" and share > 0.5:
        return f"not English: {share:.0%} of its letters are {script.lower()} script; the reflection generator has an English pipeline only"
    if short := short_text_language(text):
        code, share, english = short
        return (f"not English: {share:.0%} of its {len(words_of(text))} words are function words of language '{code}', {english:.0%} English ones; "
                "the reflection generator has an English pipeline only")
    shares = function_word_shares(text)
    if not shares:
        return None
    best = max(shares, key=shares.get)
    if best != "en" and shares[best] >= MIN_SHARE and shares[best] > 1.5 * shares["en"]:
        return (f"not English: {shares[best]:.0%} of its words are function words of language '{best}', {shares['en']:.0%} English ones; "
                "the reflection generator has an English pipeline only")
    return None
