"""A deterministic synthetic corpus of N documents for scale runs: invented organisations, places and people (names
built from syllables, so no document states a fact a model could know), each document a short report in varied
sentence forms, with links between documents (a supplier, a partner) so cross-document steps have work to do.

    .venv/bin/python benchmarks/synthetic_corpus.py --documents 1000 --out /tmp/corpus     # writes N .md files
"""

import argparse
import random
from pathlib import Path

ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "w", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
CODAS = ["", "n", "r", "l", "s", "th", "m", "x", "nd", "rk"]
KINDS = ["cooperative", "foundry", "laboratory", "brewery", "shipyard", "publishing house", "textile mill", "observatory"]
PRODUCTS = ["copper wire", "ceramic tiles", "glass lenses", "river barges", "field radios", "wool blankets", "bicycle frames", "seed drills"]
ROLES = ["director", "chief engineer", "head of research", "treasurer"]


def word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)).capitalize()


def person(rng: random.Random) -> str:
    return f"{word(rng, 2)} {word(rng, rng.choice([2, 3]))}"


def document(index: int, rng: random.Random, names: list[str], towns: list[str]) -> tuple[str, str]:
    """(file name, Markdown text) of document `index`."""
    name, town = names[index], towns[index]
    kind, product = rng.choice(KINDS), rng.choice(PRODUCTS)
    founder, head, role = person(rng), person(rng), rng.choice(ROLES)
    founded, staff = rng.randint(1820, 2015), rng.randint(12, 4800)
    partner = names[rng.randrange(len(names))]
    region = word(rng, 3)
    sentences = [
        f"{name} is a {kind} in {town}, a town in the {region} valley.",
        rng.choice([f"It was founded in {founded} by {founder}.", f"{founder} founded {name} in {founded}.",
                    f"{name} was established by {founder} in {founded}."]),
        rng.choice([f"The {kind} employs {staff} people.", f"{name} has {staff} employees.", f"About {staff} people work at {name}."]),
        rng.choice([f"Its main product is {product}.", f"{name} is best known for its {product}.", f"{name} makes {product}."]),
        f"Since {rng.randint(founded + 1, 2025)}, its {role} has been {head}.",
        rng.choice([f"{name} buys most of its raw materials from {partner}.", f"{name} works closely with {partner}.",
                    f"In {rng.randint(founded, 2025)}, {name} signed a supply agreement with {partner}."]),
        rng.choice([f"{head} previously worked in {towns[rng.randrange(len(towns))]}.", f"{founder} was born in {word(rng, 2)}.",
                    f"The first building of {name} stood on {word(rng, 2)} Street."]),
    ]
    if rng.random() < 0.5:
        sentences.append(f"In {rng.randint(founded, 2025)}, a fire destroyed part of the {kind}, which reopened {rng.randint(1, 4)} years later.")
    rng.shuffle(sentences[2:])  # the first two sentences introduce the subject; the rest in any order
    slug = name.lower().replace(" ", "-")
    return f"{index:05d}-{slug}.md", f"# {name}\n\n" + " ".join(sentences) + "\n"


def synthetic_corpus(documents: int, seed: int = 0) -> dict[str, str]:
    """{file name: text}, the same for the same (documents, seed)."""
    rng = random.Random(seed)
    names, towns = [], []
    for _ in range(documents):
        names.append(f"{word(rng, 2)} {rng.choice(['Works', 'Company', 'Holdings', 'Guild', 'Institute'])}")
        towns.append(word(rng, rng.choice([2, 3])))
    return dict(document(i, random.Random(f"{seed}-{i}"), names, towns) for i in range(documents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in synthetic_corpus(args.documents, args.seed).items():
        (args.out / name).write_text(text)
    print(f"{args.documents} documents in {args.out}")


if __name__ == "__main__":
    main()
