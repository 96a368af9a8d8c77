"""Facts of a parsed sentence as clauses, and the questions a clause answers, from spaCy's dependency parse and named
entities: who/what for the subject, what/who/when/where/how many/which for its objects and modifiers (fronted, with
do-support or the auxiliary inverted), and, for the held-out probes only, the same facts as cleft questions ("Which
year was it that ...?"), a phrasing family no training question uses.

A clause is the sentence's main verb with its subject, auxiliaries and the arguments that state the fact (objects,
complements, prepositional phrases); relative clauses, appositions, coordinated clauses and parentheses are cut, so a
question and its one-sentence answer stay short. A subject pronoun is resolved to the nearest earlier entity of the
paragraph it can refer to (he/she: a person; it: a non-person entity; they: a group or organisation), or the clause is
dropped. English closed-class words and spaCy's labels only: nothing here is fitted to one corpus."""

import re
from collections import Counter
from dataclasses import dataclass, field

# named-entity labels as a generic noun for "which ...", and whether "who" asks for them
LABEL_NOUN = {"PERSON": "person", "ORG": "organisation", "GPE": "place", "LOC": "place", "FAC": "place", "NORP": "group",
              "PRODUCT": "product", "EVENT": "event", "WORK_OF_ART": "work", "LAW": "law", "LANGUAGE": "language"}
NAMED = set(LABEL_NOUN) - {"NORP", "LANGUAGE"}  # what "What is known about X?" can ask of ("American" is no entity to summarise)
NUMBER_LABELS = {"CARDINAL", "QUANTITY", "MONEY", "PERCENT"}
CUT = {"relcl", "appos", "punct", "advcl", "parataxis", "acl", "meta", "dep", "mark"}
PLACES = {"GPE", "LOC", "FAC"}
PART_DEPS = {"dobj", "attr", "acomp", "oprd", "dative", "prep", "agent", "prt", "npadvmod", "xcomp"}
ASKABLE_OBJECT = {"dobj", "attr", "pobj", "dative", "oprd"}
DO_SUPPORT = {"VBD": "did", "VBZ": "does", "VBP": "do"}
MODIFIERS = {"prep", "npadvmod", "agent"}  # parts a fact can be asked without ("founded [in Texas] [in 1923]")
MAX_SUBJECT, MAX_PART, MAX_CLAUSE = 8, 10, 24
MONTH = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\b")


QUOTES = {'"', "``", "''", "\u201c", "\u201d"}


def text_of(tokens) -> str:
    """Tokens in sentence order as text, spaces as the document had them; double quotes left out (a title's quotes
    are typography, and a phrase cut from a sentence often keeps only one of the pair)."""
    tokens = sorted((t for t in tokens if t.text not in QUOTES), key=lambda t: t.i)
    out = ""
    for previous, token in zip([None, *tokens], tokens):
        if previous is not None:
            out += previous.whitespace_ if previous.i + 1 == token.i else " "
        out += token.text
    return out.strip()


def phrase(token, cut=CUT) -> list:
    """The token's subtree less the subtrees of its children that add another clause or an aside; punctuation between
    kept words stays ("Columbus, Ohio")."""
    keep = sorted(kept(token, cut), key=lambda t: t.i)
    indices = {t.i for t in keep}
    doc = token.doc
    for left, right in zip(keep, keep[1:]):
        between = [doc[i] for i in range(left.i + 1, right.i)]
        if between and all(t.is_punct for t in between):
            indices.update(t.i for t in between)
    return [doc[i] for i in sorted(indices)]


def kept(token, cut) -> list:
    keep = [token]
    for child in token.children:
        # an aside that continues a name ("Sunday, January 15"), a place's place ("Columbus, Ohio"), a hyphen stay
        if (child.dep_ not in cut or child.ent_iob_ == "I" or child.tag_ == "HYPH"
                or (child.dep_ == "appos" and child.ent_type_ in PLACES and token.ent_type_ in PLACES)):
            keep += kept(child, cut)
    return keep


def head_of(tokens, default=None):
    """The token of a phrase whose head is outside it (or is itself: the sentence's root)."""
    return next((t for t in tokens if t.head not in tokens or t.head.i == t.i), default)


def label_of(tokens) -> str | None:
    """The entity label of a phrase that is (mostly) one named entity."""
    indices = {t.i for t in tokens}
    for token in tokens:
        if token.ent_type_ and token.ent_iob_ == "B":
            ent = next(e for e in token.doc.ents if e.start == token.i)
            inside = set(range(ent.start, ent.end))
            content = {t.i for t in tokens if t.pos_ not in ("DET", "ADP", "PUNCT")}
            head = head_of(tokens)
            if inside <= indices and len(content - inside) <= 1 and (head is None or head.i in inside or head.pos_ == "PROPN"):
                return ent.label_  # "Petrel batteries" are batteries, not an organisation: the phrase's head is in the name
    return None


def drop_determiner(text: str) -> str:
    return re.sub(r"^(the|a|an) ", "", text, flags=re.IGNORECASE)


@dataclass
class Part:
    dep: str
    tokens: list
    preposition: str = ""  # the preposition of a prepositional part ("in"), or "" for an object
    obj: list = field(default_factory=list)  # the tokens of its object (pobj, dobj, attr)

    @property
    def text(self) -> str:
        text = text_of(self.tokens)
        if self.fronted and self.tokens[0].pos_ != "PROPN":
            text = text[0].lower() + text[1:]  # "In 2022 the cell won ..." -> "the cell won ... in 2022"
        return text

    @property
    def fronted(self) -> bool:
        """The part comes before its verb."""
        root = head_of(self.tokens, self.tokens[0])
        return root.i < root.head.i

    @property
    def obj_text(self) -> str:
        return text_of(self.obj)


@dataclass
class Clause:
    """One fact: subject (as resolved), auxiliaries, verb, parts; `subject_entity` is the entity label of the subject."""

    subject: str
    subject_label: str | None
    subject_proper: bool
    aux: list[str]
    verb: object  # the spaCy token of the main verb
    parts: list[Part]
    sentence: str
    entities: list[str]  # names of the clause (not dates or numbers), for grouping and summaries

    def predicate(self, skip: Part | None = None) -> str:
        """Verb and parts, as the sentence has them, without `skip`."""
        return " ".join([*self.aux, self.verb.text, *(p.text for p in self.parts if p is not skip)])

    def statement(self) -> str:
        """The fact as one short sentence: subject and predicate."""
        text = f"{self.subject} {self.predicate()}".strip()
        return text[0].upper() + text[1:] + "."

    def inverted(self, skip: Part | None, modifiers: bool = True) -> str | None:
        """Subject and predicate in question order, without `skip` (and without the modifiers, with modifiers=False):
        "was the game played ...", "did Rafael Ondo join ..."."""
        rest = " ".join(p.text for p in self.parts if p is not skip and (modifiers or p.dep not in MODIFIERS))
        subject = self.subject
        if self.aux:
            return " ".join([self.aux[0], subject, *self.aux[1:], self.verb.text, rest]).strip()
        if self.verb.lemma_ == "be":
            return " ".join([self.verb.text, subject, rest]).strip()
        if self.verb.tag_ not in DO_SUPPORT:
            return None
        return " ".join([DO_SUPPORT[self.verb.tag_], subject, self.verb.lemma_, rest]).strip()


# -- clauses from a parsed document -----------------------------------------------------------------------------------


class Antecedents:
    """The entities a pronoun may point back to, nearest last; reset at each paragraph."""

    def __init__(self):
        self.subjects: list[tuple[str, str | None]] = []  # earlier clause subjects: preferred, NER mislabels names
        self.described: dict[str, tuple[str, str | None]] = {}  # "magazine" -> the name "X is a magazine" said it of
        self.people: list[str] = []
        self.things: list[str] = []
        self.groups: list[str] = []

    def see(self, ents) -> None:
        for ent in ents:
            name = ent.text
            if ent.label_ == "PERSON":
                self.people.append(name)
            elif ent.label_ in LABEL_NOUN and ent.label_ not in ("NORP", "LANGUAGE"):  # "German" is said of things, not one
                self.things.append(name)
                if ent.label_ in ("ORG", "NORP"):
                    self.groups.append(name)

    def describe(self, noun, name: tuple[str, str | None]) -> None:
        if noun is not None and noun.pos_ in ("NOUN", "PROPN"):
            self.described[noun.lemma_.lower()] = name

    def definite(self, tokens) -> tuple[str, str | None] | None:
        """"The magazine" after "X was a woman's magazine", "the airport" after "Y Airport is ...": the name a definite
        description points back to, by its head noun (the nearest name it was said of)."""
        if len(tokens) < 2 or tokens[0].lower_ != "the" or any(t.pos_ == "PROPN" for t in tokens):
            return None
        if not all(t.pos_ in ("ADJ", "NOUN") for t in tokens[1:-1]) or tokens[-1].pos_ != "NOUN":
            return None
        return self.described.get(tokens[-1].lemma_.lower())

    def resolve(self, pronoun: str) -> tuple[str, str | None] | None:
        word = pronoun.lower()
        if self.subjects:
            # the last subject, unless its label rules it out: the small model often leaves a rare name unlabelled
            subject, label = self.subjects[-1]
            if (word in ("he", "she") and label in ("PERSON", None)) or (word == "it" and label != "PERSON"):
                return subject, label
        if word in ("he", "she") and self.people:
            return self.people[-1], "PERSON"
        if word == "it" and self.things:
            return self.things[-1], None
        if word == "they" and self.groups:
            return self.groups[-1], None
        return None


def part_of(child) -> Part | None:
    dep = child.dep_
    if dep in ASKABLE_OBJECT:
        # "opened its second factory, the Lorne plant, in 2025": the name in apposition stands for the description
        named = [c for c in child.children if c.dep_ == "appos" and any(t.pos_ == "PROPN" for t in phrase(c))]
        if named and not any(t.pos_ == "PRON" for t in phrase(named[0])):
            child = named[0]
    tokens = phrase(child)
    if len(tokens) > MAX_PART and dep in ("attr", "dobj", "oprd") and child.pos_ == "NOUN":
        # "a town in Brunswick County, North Carolina, United States": the noun with its own words ("a town"); where it
        # is and what it is of are asked from the noun's children (located, relation_of)
        core = ("det", "amod", "compound", "nummod", "nmod", "poss")
        tokens = sorted([t for left in child.lefts if left.dep_ in core for t in left.subtree] + [child], key=lambda t: t.i)
    if len(tokens) > MAX_PART or any(t.pos_ == "PRON" and t.lower_ not in ("which", "who") and t.tag_ != "PRP$" for t in tokens):
        return None  # a long part is not one fact; a pronoun inside a part is not resolved ("her debut" reads with its subject)
    if dep in ("prep", "agent") or (dep == "dative" and child.pos_ == "ADP"):
        objects = [c for c in child.children if c.dep_ == "pobj"]
        return Part(dep, tokens, child.lower_, phrase(objects[0]) if objects else [])
    return Part(dep, tokens, "", tokens if dep in ASKABLE_OBJECT else [])


def clause_of(verb, subject_token, antecedents: Antecedents, sentence_text: str, shared_aux: list[str] = ()) -> Clause | None:
    if verb.pos_ not in ("VERB", "AUX") or subject_token is None or subject_token.dep_ == "expl":
        return None
    if any(c.dep_ in ("ccomp", "csubj") for c in verb.children):
        return None  # a reported or clausal content is not one fact
    named = [c for c in subject_token.children if c.dep_ == "appos" and any(t.pos_ == "PROPN" for t in phrase(c))]
    described = not any(t.pos_ == "PROPN" for t in phrase(subject_token)) or any(t.tag_ == "PRP$" for t in phrase(subject_token))
    if named and described and not any(t.pos_ == "PRON" and t.tag_ != "PRP$" for t in phrase(named[0])):
        subject_token = named[0]  # "Her first novel, The Orange Eats Creeps, was published ...": the name stands for it
    definite = antecedents.definite(phrase(subject_token)) if subject_token.pos_ == "NOUN" else None
    if subject_token.pos_ == "PRON":
        resolved = antecedents.resolve(subject_token.text)
        if resolved is None:
            return None
        subject, label, proper = resolved[0], resolved[1], True
    elif definite is not None:
        subject, label, proper = definite[0], definite[1], True
    else:
        tokens = phrase(subject_token)
        if (tokens[-1].i - tokens[0].i + 1 != len(tokens) or len(tokens) > MAX_SUBJECT or any(t.pos_ == "PRON" for t in tokens)
                or subject_token.pos_ not in ("NOUN", "PROPN") or tokens[0].lower_ in ("this", "that", "these", "those")):
            return None  # cut in the middle, long, a pronoun inside, or "this event": what it refers to is not in the clause
        subject, label = text_of(tokens), label_of(tokens)
        proper = any(t.pos_ == "PROPN" for t in tokens)
        if tokens[0].pos_ == "DET" or not proper:
            subject = subject[0].lower() + subject[1:]  # "Thirty people", "The game": not a name, lower inside a question
    aux = [c.text for c in verb.children if c.dep_ in ("aux", "auxpass", "neg") and c.i < verb.i]
    if not aux and verb.tag_ == "VBN":
        aux = list(shared_aux)  # "was recorded in 1996 and released in 1997": the second verb shares the first's auxiliary
    parts = []
    children = list(verb.children)
    if not any(c.dep_ in PART_DEPS for c in children):
        # "written and directed by Stephen King": the first participle shares the agent of the one coordinated with it
        children += [c for conj in children if conj.dep_ == "conj" and conj.tag_ == verb.tag_ for c in conj.children if c.dep_ == "agent"]
    for child in children:
        if child.dep_ in PART_DEPS and (child.i > verb.i or dated_opening(child)) and not (child.dep_ == "npadvmod" and child.doc[child.i - 1].is_punct):
            part = part_of(child)
            if part is None and child.dep_ not in ("prep", "agent"):
                return None  # an object that is not one phrase: the clause is not one fact
            if part is not None:  # a long or pronoun-bearing modifier is left out; the rest still states a fact
                parts.append(part)
    if not parts or sum(len(p.tokens) for p in parts) + len(subject.split()) > MAX_CLAUSE:
        return None
    parts = sorted(parts, key=lambda p: (p.fronted, p.tokens[0].i))  # an opening "In 2012," is said after the verb
    said = " ".join([subject, *(p.text for p in parts)])
    names = [e.text for e in verb.sent.ents if e.label_ in NAMED and e.text in said]
    if proper and subject not in names:
        names.insert(0, subject)  # a resolved pronoun or description names the entity the clause is about
    return Clause(subject, label, proper, aux, verb, parts, sentence_text, list(dict.fromkeys(names)))


SUBJECT_DEPS = ("nsubj", "nsubjpass")


def dated_opening(child) -> bool:
    """"In 2012, he directed X": a date opening the sentence is a modifier of its verb like one after it."""
    return child.dep_ == "prep" and any(c.dep_ == "pobj" and c.ent_type_ == "DATE" and has_date(c.text) for c in child.children)
ASKABLE_OBJECT_DEPS = tuple(sorted(ASKABLE_OBJECT))


def describes_complement(verb, root) -> bool:
    """A participle describing a copula's complement: "directed" in "X is a film directed by Y"."""
    return verb.dep_ == "acl" and verb.tag_ == "VBN" and verb.head.dep_ == "attr" and verb.head.head.i == root.i and root.lemma_ == "be"


def subject_of(verb):
    return next((c for c in verb.children if c.dep_ in SUBJECT_DEPS), None)


def verb_clauses(sentence, antecedents: Antecedents, text: str) -> list[Clause]:
    """The clause of every verb of a sentence whose subject can be told: the main verb; a verb coordinated with it (its
    own subject, or the one it shares: "was born in 1950 and died in 2010"); a relative clause about its noun ("X, who
    joined Y in 2018, ..."); a participle describing a copula's complement ("X is a film directed by Y")."""
    root, out = sentence.root, []
    first = clause_of(root, subject_of(root), antecedents, text)
    if first is None:
        return []
    out.append(first)
    for verb in sentence:
        if verb.i == root.i or verb.pos_ not in ("VERB", "AUX"):
            continue
        own = subject_of(verb)
        if verb.dep_ == "conj" and verb.head.i == root.i:
            found = clause_of(verb, own or subject_of(root), antecedents, text, () if own else first.aux)
        elif (verb.dep_ == "relcl" and own is not None and own.lower_ in ("who", "which") and verb.head.pos_ == "PROPN"
              and verb.head.dep_ in SUBJECT_DEPS + ASKABLE_OBJECT_DEPS):
            # "X, who joined Y in 2018, ...": "that" is restrictive and a misparse when it follows a name ("Vienna, Austria that ...")
            found = clause_of(verb, verb.head, antecedents, text)
        elif describes_complement(verb, root) or (verb.dep_ == "conj" and verb.tag_ == "VBN" and describes_complement(verb.head, root)):
            # "X is a film written and directed by Y", "X is a game developed by Y and published by Z"
            found = clause_of(verb, subject_of(root), antecedents, text, [root.text])
        else:
            continue
        if found:
            out.append(found)
    return out


def clauses(doc) -> list[Clause]:
    """The clauses of every sentence of a parsed document (verb_clauses), subject pronouns resolved by paragraph."""
    out, antecedents, paragraph_end = [], Antecedents(), -1
    for sentence in doc.sents:
        if "\n\n" in doc.text[doc[paragraph_end].idx if paragraph_end >= 0 else 0 : sentence.start_char]:
            antecedents = Antecedents()
        paragraph_end = sentence.end - 1
        found = verb_clauses(sentence, antecedents, sentence.text.strip()) if len(sentence) >= 4 else []
        out += found
        topic = topic_of(sentence, found)
        if topic is not None:
            antecedents.subjects.append(topic)
            root = sentence.root
            if root.lemma_ == "be":  # "X is a magazine": "the magazine" is X from here on
                for attr in (c for c in root.children if c.dep_ == "attr"):
                    antecedents.describe(attr, topic)
            subject = subject_of(root)
            if subject is not None and subject.pos_ == "PROPN":
                antecedents.describe(subject, topic)  # "Watertown International Airport": "the airport"
        antecedents.see(sentence.ents)
    return out


def topic_of(sentence, found: list[Clause]) -> tuple[str, str | None] | None:
    """What a later pronoun most likely refers to after this sentence (the centering rule: the subject): the first
    clause's named subject, else the sentence's own proper-noun subject even where it gave no clause, else a heading (a
    short verbless line of names)."""
    if found and found[0].subject_proper:
        return found[0].subject, found[0].subject_label
    if found:
        return None
    root, subject = sentence.root, subject_of(sentence.root)
    if subject is not None and subject.pos_ == "PROPN":
        tokens = phrase(subject)
        if tokens[-1].i - tokens[0].i + 1 == len(tokens) and len(tokens) <= MAX_SUBJECT:
            return drop_determiner(text_of(tokens)), label_of(tokens)
    words = [t for t in sentence if not t.is_punct]
    if (words and len(words) <= MAX_SUBJECT and not any(t.pos_ in ("VERB", "AUX") for t in words)
            and any(t.pos_ == "PROPN" for t in words) and root.pos_ == "PROPN"):
        return text_of(words), label_of(words)
    return None


# -- questions ----------------------------------------------------------------------------------------------------------


def has_date(text: str) -> bool:
    return bool(re.search(r"\d", text) or MONTH.search(text))


def count_of(part: Part) -> tuple[str, str] | None:
    """("340", "people") for an object counted by a number."""
    head = next((t for t in part.obj if t.dep_ in ASKABLE_OBJECT or t.head not in part.obj), None)
    number = next((c for c in head.children if c.dep_ == "nummod" and c.like_num), None) if head is not None else None
    if number is None or number.ent_type_ in ("DATE", "TIME", "ORDINAL"):
        return None
    # the counted noun with its words after the number ("watt-hours", "Filmfare Awards"), not its last token only
    return number.text, text_of([t for t in part.obj if number.i < t.i <= head.i])


def measure_of(part: Part) -> tuple[str, str] | None:
    """("6,960", "population") for "a population of 6,960": a quantity named by its noun and given by a number."""
    head = head_of(part.obj)
    if head is None or head.pos_ != "NOUN":
        return None
    for prep in (c for c in head.children if c.dep_ == "prep" and c.lower_ == "of"):
        amount = next((c for c in prep.children if c.dep_ == "pobj"), None)
        if amount is not None and (amount.like_num or amount.ent_type_ in NUMBER_LABELS):
            tokens = phrase(amount)
            if tokens[-1].i - tokens[0].i + 1 == len(tokens) and len(tokens) <= 4:
                return text_of(tokens), head.lemma_.lower()
    return None


def asked(clause: Clause, part: Part) -> dict | None:
    """What a part answers and how it is asked for: {key, wh (fronted), kind, noun} or None for a part that is not one
    entity, date, count or short noun phrase."""
    if not part.obj or part.dep in ("acomp", "prt", "xcomp") or any(t.tag_ == "PRP$" for t in part.obj):
        return None  # "its home games" answers nothing on its own
    if part.obj[-1].i - part.obj[0].i + 1 != len(part.obj):
        return None  # an aside was cut from inside the object: it is no span of the text
    label = label_of(part.obj)
    key = drop_determiner(part.obj_text)
    prep = part.preposition
    if label in ("DATE", "TIME"):
        if not has_date(key):
            return None
        return {"key": key, "wh": "When", "kind": "date", "cleft": "In which year" if re.fullmatch(r"\d{4}", key) else "On what date"}
    if part.dep == "agent" and label not in NUMBER_LABELS:
        return {"key": key, "wh": None, "kind": "agent", "person": label == "PERSON"}  # "by Studio 33": a name with a number
    counted = count_of(part)
    if counted and not prep:
        return {"key": counted[0], "wh": f"How many {counted[1]}", "kind": "count", "noun": counted[1]}
    measured = measure_of(part)
    if measured and not prep:
        return {"key": measured[0], "wh": f"What {measured[1]}", "kind": "measure", "noun": measured[1]}
    if label in NUMBER_LABELS or part.obj[-1].like_num:
        return None
    head = head_of(part.obj, part.obj[-1])
    if head.tag_ == "POS" or part.obj[-1].tag_ == "POS" or (prep and head.tag_ == "NN" and label is None
                                                             and not any(c.dep_ == "det" for c in head.children)):
        return None  # a possessive cut from its noun; a bare noun in a fixed phrase ("in front of")
    noun = LABEL_NOUN.get(label or "", head.lemma_.lower() if head.pos_ == "NOUN" else "")
    if label is None and not any(t.pos_ == "PROPN" for t in part.obj) and (head.pos_ != "NOUN" or len(part.obj) > 6):
        return None  # neither a name nor a short noun phrase
    if prep:
        # "in Tenby", "in Cardiff": after a locative preposition a name the small model leaves unlabelled, or takes for a
        # person, is a place far more often than not
        if prep in ("in", "at") and (label in PLACES or (label in (None, "PERSON") and head.pos_ == "PROPN")):
            return {"key": key, "wh": "Where", "kind": "place", "noun": "place", "prep": prep}
        if not noun:
            return None
        who = "whom" if label == "PERSON" else f"which {noun}"
        return {"key": key, "wh": f"{prep.capitalize()} {who}", "kind": "prep", "noun": noun, "prep": prep, "person": label == "PERSON"}
    return {"key": key, "wh": "Who" if label == "PERSON" else "What", "kind": "object", "noun": noun or "thing", "person": label == "PERSON"}


def question(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(".,;:")
    return text[0].upper() + text[1:] + "?"


def fronted_questions(clause: Clause) -> list[tuple[str, str, str]]:
    """(question, key answer, answer sentence) for each askable part: the wh-phrase first, do-support or the auxiliary
    inverted; the answer is the clause's statement, or the sentence that states a copula complement's place or relation."""
    out = []
    asks = [(part, asked(clause, part)) for part in clause.parts]
    kinds = Counter(ask["kind"] for _, ask in asks if ask)
    for part, ask in asks:
        if ask is None:
            continue
        if part.dep == "attr" and len(ask["key"].split()) == 1 and ask["kind"] == "object" and part.obj[-1].pos_ == "NOUN":
            ask = None  # "What is Leland?" -> "town" says little; where it is and what it is of are asked below
        elif ask["kind"] == "agent":
            others = " ".join(p.text for p in clause.parts if p is not part)
            who = "Who" if ask["person"] else "What"
            if clause.verb.text.endswith("ed"):  # a regular verb: its participle is its past tense
                out.append((question(f"{who} {clause.verb.text} {clause.subject} {others}"), ask["key"], clause.statement()))
            elif clause.aux:
                out.append((question(f"By {'whom' if ask['person'] else 'what'} {clause.inverted(part)}"), ask["key"], clause.statement()))
            continue
        body = clause.inverted(part) if ask else None
        if body:
            out.append((question(f"{ask['wh']} {body}"), ask["key"], clause.statement()))
        # (only where no other part is asked the same way: "When did X span?" has two answers in "from 1150 into 1300")
        short = (clause.inverted(part, modifiers=False) if ask and clause.verb.lemma_ != "be" and ask["kind"] in ("date", "place", "object")
                 and kinds[ask["kind"]] == 1 else None)
        if body and short and short != body:
            # the same fact asked as a person would ("When was the Woman's Viewpoint founded?"), other modifiers left out
            out.append((question(f"{ask['wh']} {short}"), ask["key"], clause.statement()))
        if part.dep == "attr" and clause.verb.lemma_ == "be":
            out += located(clause, part) + relation_of(clause, part)
    return out


def stating(clause: Clause, rest: str) -> str:
    return f"{clause.subject[0].upper()}{clause.subject[1:]} {clause.verb.text} {rest}."


def relation_of(clause: Clause, part: Part) -> list[tuple[str, str]]:
    """"Jagdish Mali was the father of Antara Mali." -> ("Who was Jagdish Mali the father of?", "Antara Mali"): a copula's
    complement that relates the subject to a named entity, asked for the entity with the preposition stranded."""
    head = head_of(part.obj)
    if head is None or head.pos_ != "NOUN" or clause.aux or len(clause.parts) != 1:
        return []
    for prep in (c for c in head.children if c.dep_ == "prep" and c.lower_ == "of"):
        objects = [c for c in prep.children if c.dep_ == "pobj"]
        if not objects:
            continue
        target = phrase(objects[0])
        label = label_of(target)
        if target[-1].i - target[0].i + 1 != len(target) or not (label in NAMED or any(t.pos_ == "PROPN" for t in target)):
            continue
        relation = [t for t in part.obj if t.i < prep.i]
        if not relation or relation[0].pos_ != "DET" or len(relation) > 4:
            continue  # "the father", "a member": a determined relation noun, not "father of" cut from a longer phrase
        who = "Who" if label == "PERSON" or target[-1].ent_type_ == "PERSON" else "What"  # "actress Antara Mali" is a person
        return [(question(f"{who} {clause.verb.text} {clause.subject} {text_of(relation)} of"), drop_determiner(text_of(target)),
                 stating(clause, f"{text_of(relation)} of {text_of(target)}"))]
    return []


def located(clause: Clause, part: Part) -> list[tuple[str, str]]:
    """"Johnnycake is a community in McDowell County, West Virginia." -> ("Where is Johnnycake?", "McDowell County, West
    Virginia"): a copula's complement placed somewhere."""
    head = head_of(part.obj)
    for prep in (c for c in head.children if c.dep_ == "prep" and c.lower_ in ("in", "at", "on")) if head is not None else []:
        place = [c for c in prep.children if c.dep_ == "pobj" and (c.ent_type_ in PLACES or c.pos_ == "PROPN")]
        if place:
            tokens = phrase(place[0])
            if tokens[-1].i - tokens[0].i + 1 == len(tokens):
                return [(question(f"Where {clause.verb.text} {clause.subject}"), drop_determiner(text_of(tokens)),
                         stating(clause, f"{text_of(part.obj)} {prep.lower_} {text_of(tokens)}"))]
    return []


def subject_question(clause: Clause) -> tuple[str, str] | None:
    """(question, key) asking for the subject by what the rest of the clause says: the reverse lookup."""
    if not clause.subject_proper:
        return None
    if clause.verb.lemma_ == "be" and not any(t.pos_ == "PROPN" or t.like_num for p in clause.parts for t in p.tokens):
        return None  # "What is a peer-reviewed academic journal?" has many answers
    who = "Who" if clause.subject_label == "PERSON" else "What"
    return question(f"{who} {clause.predicate()}"), drop_determiner(clause.subject)


def cleft_questions(clause: Clause) -> list[tuple[str, str]]:
    """The held-out phrasing family: the same facts as clefts ("Which organisation was it that Rafael Ondo joined in
    2018?", "Who is the person that joined Quillfeather Labs in 2018?"), the verb as the sentence has it."""
    out = []
    if clause.subject_proper and clause.verb.lemma_ != "be":
        noun = "person" if clause.subject_label == "PERSON" else LABEL_NOUN.get(clause.subject_label or "", "")
        if noun:
            wh = "Who is the person" if noun == "person" else f"What is the {noun}"
            out.append((question(f"{wh} that {clause.predicate()}"), drop_determiner(clause.subject)))
    if clause.verb.lemma_ == "be" and not clause.aux:
        return out  # a copula's complement asked as a cleft reads as a riddle
    for part in clause.parts:
        ask = asked(clause, part)
        if ask is None or ask["kind"] == "agent":
            continue
        rest = " ".join([clause.subject, clause.predicate(part)])
        if ask["kind"] == "date":
            text = f"{ask['cleft']} was it that {rest}"
        elif ask["kind"] == "count":
            text = f"What is the number of {ask['noun']} that {rest}"
        elif ask["kind"] in ("place", "prep"):
            target = "whom" if ask.get("person") else f"which {ask['noun']}"
            text = f"{ask['prep'].capitalize()} {target} was it that {rest}"
        else:
            same = ask["noun"] in (ask["key"].lower().split() or [""])[-1]  # "which chemistry was it": the noun is the answer
            text = f"{'Who' if ask.get('person') else 'What' if same else 'Which ' + ask['noun']} was it that {rest}"
        out.append((question(text), ask["key"]))
    return out
