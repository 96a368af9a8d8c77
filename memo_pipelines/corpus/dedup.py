"""Near-duplicate detection in pure Python: shingle sets, Jaccard similarity, and a MinHash index with LSH banding.

Used twice: documents at snapshot time (a corpus flooded with lightly edited copies keeps one of each) and reflections
(two phrasings of one question with the same key answer keep one row, with both rows' sources).
"""

import hashlib
import re

PRIME = (1 << 31) - 1  # a * h + b stays below 2**63 for 31-bit hashes, so numpy uint64 never overflows


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def shingles(text: str, size: int = 3, unit: str = "words") -> set[str]:
    """Word n-grams (documents) or character n-grams of the normalised text (short texts such as questions)."""
    tokens = words(text)
    if unit == "chars":
        joined = " ".join(tokens)
        return {joined[i : i + size] for i in range(max(1, len(joined) - size + 1))} if joined else set()
    if len(tokens) <= size:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def stable_hash(value: str) -> int:
    # Python's hash() is salted per process; signatures must agree across runs and machines
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=4).digest(), "big") % PRIME


class MinHashIndex:
    """Finds an earlier text whose estimated shingle Jaccard similarity is at least `threshold`.

    Signatures of `permutations` hash functions, split into `bands`; texts sharing a band are candidates, and a
    candidate counts when the share of equal signature slots (the Jaccard estimate) reaches the threshold.
    """

    def __init__(self, threshold: float = 0.8, permutations: int = 128, bands: int = 32, shingle_size: int = 3, seed: int = 1):
        if permutations % bands:
            raise ValueError("permutations must be a multiple of bands")
        self.threshold, self.bands, self.rows, self.shingle_size = threshold, bands, permutations // bands, shingle_size
        import numpy as np

        coefficients = np.array([stable_hash(f"{seed}-{i}") for i in range(2 * permutations)], dtype=np.uint64)
        self.a, self.b = coefficients[:permutations, None] % np.uint64(PRIME - 1) + np.uint64(1), coefficients[permutations:, None]
        self.signatures: dict[str, list[int]] = {}
        self.buckets: dict[tuple, list[str]] = {}

    def signature(self, text: str) -> list[int]:
        import numpy as np

        hashes = np.array([stable_hash(s) for s in shingles(text, self.shingle_size)] or [0], dtype=np.uint64)
        return ((self.a * hashes[None, :] + self.b) % np.uint64(PRIME)).min(axis=1).tolist()

    def _bands(self, signature: list[int]):
        for band in range(self.bands):
            yield (band, *signature[band * self.rows : (band + 1) * self.rows])

    def find(self, text: str) -> tuple[str, float] | None:
        """The most similar indexed key at or above the threshold, with its estimated similarity, or None."""
        signature = self.signature(text)
        best = None
        for key in {k for band in self._bands(signature) for k in self.buckets.get(band, [])}:
            similarity = sum(x == y for x, y in zip(signature, self.signatures[key])) / len(signature)
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (key, round(similarity, 3))
        return best

    def add(self, key: str, text: str) -> None:
        signature = self.signature(text)
        self.signatures[key] = signature
        for band in self._bands(signature):
            self.buckets.setdefault(band, []).append(key)
