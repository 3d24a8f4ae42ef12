"""Identity-term knowledge in one place: the lexicon, surface forms, mentions and swaps.

Why one module: the group resolver (which groups a text names), the guard's training-time
counterfactual augmentation and logit pairing, and the live counterfactual probe must agree
on what a mention of a group is and on how another group's term is written in its place.
Two copies would drift, and a fairness number computed with one would stop meaning what the
other measures.

Two matchers read one :class:`Lexicon`:

* :class:`CompiledLexicon` answers "which groups does this text name?" for the resolver on
  every request: one word split and n-gram dict lookups; every term hit counts, on every
  axis ("a trans woman" is in the ``transgender`` and the ``female`` window).
* :class:`CounterfactualSwapper` answers "where, and as what?" (:class:`Mention`: span,
  group, axis, form) and "what would the text say about another group?"
  (:class:`Counterfactual`).

Mention rules, chosen so that a swap is well formed:

* Whole words only; the words of a phrase may be separated by spaces, a hyphen or a slash
  (never by punctuation: "he is black. People ..." is not "black people").
* Per axis, leftmost-longest: "trans woman" is one ``transgender`` mention, not also
  ``female``. Across axes mentions may overlap: "Black women" is an ``ethnicity`` mention of
  the whole phrase *and* a ``gender`` mention of "women", so the text can be swapped on
  either axis ("Asian women", "Black men").
* A term that is not a phrase of its own takes a following generic person noun ("Jewish
  people", "nonbinary person"); on an axis with word pairs (gender) also a paired noun
  ("transgender woman", "nonbinary parent"), so that the phrase is swapped as one.
* Form: a listed or extended phrase takes the number of its noun; a plural reading ("s",
  "es") or a listed plural ("women", "Blacks") is ``plural``; ``term_forms`` fixes others
  ("Islam" is a ``belief``, "Jew" a ``noun``; a fixed adjective after "the" at the end of
  a noun phrase is a collective ``plural``: "the elderly"). Any other term is a ``noun``
  when it ends a noun phrase: before a possessive, the end, punctuation, a function word or
  a word that looks like a verb ("a Muslim.", "a Muslim who ...", "as a proud Muslim,", "a
  Muslim walked", "a Muslim prays") unless a linking verb or an adverb precedes it ("she is
  Muslim.", "openly gay."); before "and"/"or" only after an article ("a Muslim and a Jew"
  but "Christian and Muslim leaders"). Otherwise, and before a hyphen ("Muslim-owned"), it
  is an ``adj``. A heuristic, not a parser: it is right on the sentence shapes above.

Swaps replace every mention of one axis, keep the kind (plural for plural, adjective for
adjective, a listed person phrase's noun is kept: "old man" -> "young man"), the case
(sentence start, ALL CAPS, lowercase chat, a proper adjective's capital), the possessive
("women's" -> "nonbinary people's", "girls'" -> "children's") and fix the article before a replaced word ("a Muslim" -> "an
atheist"). Nothing else in the text is touched. Pronouns are not identity terms and are left
as they are, so a swap can leave "she" next to "a man".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

import yaml

from fairgate.guardrails.policy import PolicyError

logger = logging.getLogger(__name__)

Form = Literal["adj", "noun", "plural", "belief"]
FORMS: tuple[Form, ...] = ("adj", "noun", "plural", "belief")
_CORE_FORMS: tuple[Form, ...] = ("adj", "noun", "plural")


class LexiconError(PolicyError):
    """The identity lexicon is malformed or cannot write a swap; the message names the fix."""


class UnknownGroupError(ValueError):
    """An axis or group name the lexicon does not have; the message lists the known ones."""


def bundled_lexicon_path() -> Path:
    """Path of the identity-term lexicon that ships with the package."""
    return Path(str(resources.files("fairgate.guardrails") / "data" / "identity_terms.yaml"))


_WORD = re.compile(r"\w+")
_SPLIT = re.compile(r"(\w+)")


def _normalise(phrase: str) -> str:
    """Lowercase words separated by single spaces: the form terms and n-grams share."""
    return " ".join(_WORD.findall(phrase.lower()))


def _plurals(term: str) -> tuple[str, ...]:
    """Regular plurals of a term (possessives need nothing: "'s" splits off as a word)."""
    return (term + "s", term + "es")


# --------------------------------------------------------------------------- the lexicon


@dataclass(frozen=True, slots=True)
class WordPairs:
    """Words naming one relation for each group of an axis ("mother", "father", "parent").

    ``groups`` are the columns; each row holds one word per column group and, last, a
    neutral noun ("" for none) that a swap to any other group of the axis writes after that
    group's adjective ("nonbinary parent").
    """

    groups: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Identity terms per axis and group, and how to write each group (``identity_terms.yaml``).

    Only ``terms`` is needed to find groups; ``forms``, ``term_forms`` and ``word_pairs``
    are what :class:`CounterfactualSwapper` needs to write a swap.
    """

    terms: Mapping[str, Mapping[str, tuple[str, ...]]]  # axis -> group -> normalised terms
    forms: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # group -> form -> words
    term_forms: Mapping[str, str] = field(default_factory=dict)  # normalised term -> fixed form
    word_pairs: Mapping[str, WordPairs] = field(default_factory=dict)  # axis -> pairs
    display: Mapping[str, str] = field(default_factory=dict)  # normalised term -> as written
    plurals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> plural phrases

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> Lexicon:
        file = Path(path) if path is not None else bundled_lexicon_path()
        try:
            # libyaml's loader when present: the pure-Python one takes ~100 ms for this file.
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except FileNotFoundError:
            raise LexiconError(
                f"groups.lexicon: file {str(file)!r} not found; fix the path or remove the key "
                "to use the bundled lexicon"
            ) from None
        except yaml.YAMLError as exc:
            raise LexiconError(f"groups.lexicon: {str(file)!r} is not valid YAML ({exc}); fix its syntax") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("axes"), Mapping):
            raise LexiconError(
                f"groups.lexicon: {str(file)!r} has no 'axes' mapping; "
                "write axes: {axis: {group: [term, ...]}}"
            )
        where = f"groups.lexicon: {str(file)!r}:"
        terms, display = _parse_axes(data["axes"], where)
        groups = {group for by_group in terms.values() for group in by_group}
        return cls(
            terms=terms,
            forms=_parse_forms(data.get("forms"), groups, where),
            term_forms=_parse_term_forms(data.get("term_forms"), display, where),
            word_pairs=_parse_word_pairs(data.get("word_pairs"), terms, where),
            display=display,
            plurals=_parse_plurals(data.get("plurals"), groups, where),
        )

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(group for groups in self.terms.values() for group in groups)

    def axis_of(self, group: str) -> str:
        """The axis a group is on."""
        for axis, groups in self.terms.items():
            if group in groups:
                return axis
        raise UnknownGroupError(f"unknown group {group!r}; use one of {list(self.groups)}")

    def compile(self) -> CompiledLexicon:
        return CompiledLexicon(self)


def _parse_axes(axes: Mapping[Any, Any], where: str) -> tuple[dict[str, dict[str, tuple[str, ...]]], dict[str, str]]:
    terms: dict[str, dict[str, tuple[str, ...]]] = {}
    display: dict[str, str] = {}
    for axis, groups in axes.items():
        if not isinstance(groups, Mapping):
            raise LexiconError(f"groups.lexicon: axis {axis!r} must map groups to term lists")
        terms[str(axis)] = {}
        for group, words in groups.items():
            if not isinstance(words, list):
                raise LexiconError(f"{where} axes.{axis}.{group} must be a list of terms, got {words!r}")
            terms[str(axis)][str(group).lower()] = tuple(_normalise(str(t)) for t in words)
            for word in words:
                display.setdefault(_normalise(str(word)), " ".join(_WORD.findall(str(word))))
    return terms, display


def _parse_forms(raw: object, groups: set[str], where: str) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise LexiconError(f"{where} forms must map groups to {{adj: ..., noun: ..., plural: ...}}")
    forms: dict[str, dict[str, str]] = {}
    for group, by_form in raw.items():
        name = str(group).lower()
        if name not in groups:
            raise LexiconError(f"{where} forms.{group}: no such group in axes; use one of {sorted(groups)}")
        if not isinstance(by_form, Mapping) or not all(isinstance(v, str) and v.strip() for v in by_form.values()):
            raise LexiconError(f"{where} forms.{group} must map forms to words, e.g. {{adj: Muslim, noun: Muslim}}")
        unknown = set(map(str, by_form)) - set(FORMS)
        if unknown:
            raise LexiconError(f"{where} forms.{group}: unknown form(s) {sorted(unknown)}; use {list(FORMS)}")
        forms[name] = {str(form): " ".join(str(words).split()) for form, words in by_form.items()}
    return forms


def _parse_plurals(raw: object, groups: set[str], where: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise LexiconError(f"{where} plurals must map groups to lists of plural phrases, e.g. {{old: [pensioners]}}")
    plurals: dict[str, tuple[str, ...]] = {}
    for group, phrases in raw.items():
        name = str(group).lower()
        if name not in groups:
            raise LexiconError(f"{where} plurals.{group}: no such group in axes; use one of {sorted(groups)}")
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise LexiconError(f"{where} plurals.{group} must be a non-empty list of phrases, e.g. [deaf people]")
        plurals[name] = tuple(" ".join(p.split()) for p in phrases)
    return plurals


def _parse_term_forms(raw: object, display: Mapping[str, str], where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise LexiconError(f"{where} term_forms must map a form to a list of terms")
    fixed: dict[str, str] = {}
    for form, words in raw.items():
        if form not in FORMS or not isinstance(words, list):
            raise LexiconError(f"{where} term_forms.{form}: use one of {list(FORMS)} with a list of terms")
        for word in words:
            term = _normalise(str(word))
            if term not in display:
                raise LexiconError(f"{where} term_forms.{form}: {word!r} is not a term in axes; add it there or drop it")
            fixed[term] = str(form)
    return fixed


def _parse_word_pairs(
    raw: object, terms: Mapping[str, Mapping[str, tuple[str, ...]]], where: str
) -> dict[str, WordPairs]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise LexiconError(f"{where} word_pairs must map an axis to {{groups: [...], rows: [[...], ...]}}")
    pairs: dict[str, WordPairs] = {}
    for axis, spec in raw.items():
        if axis not in terms:
            raise LexiconError(f"{where} word_pairs.{axis}: no such axis; use one of {list(terms)}")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("groups"), list):
            raise LexiconError(f"{where} word_pairs.{axis} needs groups: [group, ...] and rows: [[word, ...], ...]")
        groups = tuple(str(g).lower() for g in spec["groups"])
        if not set(groups) <= set(terms[axis]):
            raise LexiconError(f"{where} word_pairs.{axis}.groups {list(groups)}: use groups of axis {axis!r}")
        rows: list[tuple[str, ...]] = []
        for row in spec.get("rows") or ():
            if not isinstance(row, list) or len(row) != len(groups) + 1:
                raise LexiconError(
                    f"{where} word_pairs.{axis}.rows: {row!r} needs one word per group {list(groups)} "
                    "and a neutral noun (~ for none)"
                )
            rows.append(tuple(_normalise(str(w)) if w is not None else "" for w in row))
        pairs[str(axis)] = WordPairs(groups=groups, rows=tuple(rows))
    return pairs


class CompiledLexicon:
    """The lexicon as one dict of n-grams; ``find(text)`` returns the groups the text mentions.

    The text is split into words once and every n-gram (up to the longest term) is looked up,
    which is whole-word by construction ("Christmas" is never "christian"), lets phrases on
    different axes overlap ("old man": old and male), and costs a few microseconds per text
    instead of a regex alternation per axis.
    """

    def __init__(self, lexicon: Lexicon) -> None:
        exact: dict[str, set[str]] = {}
        plural: dict[str, set[str]] = {}
        for groups in lexicon.terms.values():
            for group, words in groups.items():
                for term in words:
                    exact.setdefault(term, set()).add(group)
                    for variant in _plurals(term):
                        plural.setdefault(variant, set()).add(group)
        # An exact term wins over a plural reading of another ("whites" is a term itself).
        self._lookup: dict[str, set[str]] = {**plural, **exact}
        # Word sequences that start a longer term: only these are extended to n-grams.
        self._prefixes: set[str] = set()
        for term in self._lookup:
            parts = term.split()
            for k in range(1, len(parts)):
                self._prefixes.add(" ".join(parts[:k]))

    def find(self, text: str) -> set[str]:
        words = _WORD.findall(text.lower())
        found: set[str] = set()
        lookup, prefixes = self._lookup, self._prefixes
        count = len(words)
        for start in range(count):
            phrase = words[start]
            hit = lookup.get(phrase)
            if hit:
                found |= hit
            end = start + 1
            while phrase in prefixes and end < count:
                phrase = f"{phrase} {words[end]}"
                hit = lookup.get(phrase)
                if hit:
                    found |= hit
                end += 1
        return found


# --------------------------------------------------------------------------- mentions


@dataclass(frozen=True, slots=True, kw_only=True)
class Mention:
    """One mention of a group: ``text[start:end] == surface`` in the text it was found in."""

    start: int
    end: int
    surface: str
    group: str
    axis: str
    form: Form


@dataclass(frozen=True, slots=True, kw_only=True)
class Counterfactual:
    """The text with every mention on ``axis`` (of ``source_groups``) written as ``target_group``."""

    text: str
    target_group: str
    source_groups: tuple[str, ...]
    axis: str


# Nouns that make an adjective a person phrase on every axis ("Jewish people").
_PERSON_NOUNS = frozenset({"person", "people", "persons", "folks", "community"})
_IRREGULAR_PLURALS = frozenset({"people", "folks", "children"})
# A term right after one of these starts a noun phrase ("a Muslim").
_DETERMINERS = frozenset(
    {"a", "an", "the", "one", "this", "that", "every", "each", "another", "any", "no", "my", "your", "his", "her",
     "our", "their", "its"}
)
# A term right after one of these is a predicate adjective, even at the end ("is Muslim.").
_PREDICATE_CUES = frozenset(
    {"am", "is", "are", "was", "were", "be", "been", "being", "m", "re", "s", "become", "becomes", "became",
     "becoming", "feel", "feels", "felt", "seem", "seems", "seemed", "look", "looks", "looked", "very", "so", "too",
     "quite", "really", "not", "also", "openly", "proudly", "fully", "both", "more", "most", "less", "extremely",
     "entirely", "partly", "half", "culturally", "ethnically", "religiously", "devoutly", "either", "neither"}
)
_SINGULAR_DETERMINERS = frozenset({"a", "an", "one", "every", "each", "another", "this", "that"})
_COORDINATORS = frozenset({"and", "or", "nor", "but"})
_HYPHENS = frozenset("-\u2010\u2011")
# A term right before one of these ends its noun phrase ("a Muslim who ...").
_AFTER_NOUN = _COORDINATORS | frozenset(
    {"is", "was", "are", "were", "has", "had", "have", "will", "would", "can", "could", "should", "may", "might",
     "must", "does", "did", "do", "who", "whom", "whose", "which", "that", "in", "on", "at", "of", "for", "with",
     "from", "to", "by", "as", "about", "like", "than", "here", "there", "says", "said", "i", "you", "he", "she",
     "we", "they", "it", "me", "him", "us", "them", "myself", "yourself", "himself", "herself", "ourselves",
     "themselves", "named", "called", "living", "today", "now", "again", "when", "while", "because", "if",
     "since", "too"}
)
_JOIN = re.compile(r"[ \t\-\u00a0\u2010\u2011/]+")  # what may separate the words of one phrase
_APOSTROPHES = frozenset("'\u2019")
_OPENERS = frozenset("\"'\u201c\u2018([\u00ab")
_SENTENCE_ENDS = frozenset(".!?\u2026\n")
_ARTICLE = re.compile(r"(?<!\w)(an?)\s+\Z", re.IGNORECASE)


def _is_plural(phrase: str) -> bool:
    last = phrase.rsplit(" ", 1)[-1]
    return last in _IRREGULAR_PLURALS or last.endswith("men") or (last.endswith("s") and not last.endswith(("ss", "us")))


def _is_caps(surface: str) -> bool:
    return surface.isupper() and sum(c.isalpha() for c in surface) >= 2


def _wants_an(words: str) -> bool:
    match = _WORD.search(words)
    word = match.group().lower() if match else ""
    if word.startswith(("uni", "use", "usu", "uti", "eu", "one", "once")):
        return False
    if word.startswith(("hour", "honest", "honor", "honour", "heir")):
        return True
    return word[:1] in ("a", "e", "i", "o", "u")


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a lexicon key (a term or its plural reading) means."""

    group: str
    axis: str
    fixed: Form | None  # the form whatever the context, or None: read from the context
    headed: bool  # a listed phrase ending in a person noun ("black women")
    row: int | None  # word-pair row of the key's (last) word
    extendable: bool  # may take a following person noun ("jewish" + "people")
    cap: bool  # written with a capital in ordinary text ("Muslim", "Black people")


@dataclass(slots=True)
class _Hit:
    """A mention with what a swap needs to rewrite it."""

    start: int
    end: int
    group: str
    axis: str
    form: Form
    cap: bool
    row: int | None
    modifier: str | None  # normalised words before the person noun, for person phrases
    mod_end: int | None  # where the modifier ends in the text, for person phrases
    head: str | None  # the person noun, lowercase, for person phrases
    head_start: int | None
    next_word: str | None  # the word right after, lowercase, for adjectives
    poss: int  # length of a possessive suffix right after: 2 for "'s", 1 for a bare "'"


@dataclass(frozen=True, slots=True)
class _Pairs:
    cols: Mapping[str, int]
    rows: tuple[tuple[str, ...], ...]
    row_of: Mapping[str, int]


@dataclass(slots=True)
class _Edit:
    start: int
    end: int
    text: str


class _Context:
    """One text being swapped: its case style and where its sentences start."""

    __slots__ = ("_articles", "_starts", "lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower() == text  # no capital anywhere: chat written in lowercase
        # Per position, shared by all the variants of the text.
        self._articles: dict[int, tuple[int, int, str] | None] = {}
        self._starts: dict[int, bool] = {}

    def article(self, pos: int) -> tuple[int, int, str] | None:
        """The "a"/"an" right before ``pos``, as (start, end, word), if there is one."""
        if pos not in self._articles:
            match = _ARTICLE.search(self.text, max(0, pos - 8), pos)
            self._articles[pos] = (match.start(1), match.end(1), match.group(1)) if match else None
        return self._articles[pos]

    def sentence_start(self, pos: int) -> bool:
        if pos not in self._starts:
            self._starts[pos] = self._sentence_start(pos)
        return self._starts[pos]

    def _sentence_start(self, pos: int) -> bool:
        text = self.text
        while pos > 0 and (text[pos - 1].isspace() or text[pos - 1] in _OPENERS):
            if text[pos - 1] == "\n":
                return True
            pos -= 1
        return pos == 0 or text[pos - 1] in _SENTENCE_ENDS

    def recase(self, replacement: str, *, pos: int, surface: str, cap: bool) -> str:
        """Write ``replacement`` in the case the writer used for ``surface`` at ``pos``.

        ``cap`` says whether the replaced words carry a capital of their own ("Muslim"), so a
        capital that only marks a sentence start is not copied into the middle of one.
        """
        if _is_caps(surface):
            return replacement.upper()
        if self.lower:
            return replacement.lower()
        if surface[:1].islower():
            return replacement.lower() if cap else replacement
        if cap and not self.sentence_start(pos):
            return replacement
        return replacement[:1].upper() + replacement[1:]


class CounterfactualSwapper:
    """Finds identity mentions and writes the same text about another group of the same axis.

    Everything that does not depend on the text (the key table, person nouns, word pairs,
    each group's forms and person phrases) is computed here once, so a call costs a word
    split, dict lookups and one string join per variant. Built from the bundled lexicon by
    default; the constructor checks that every form it may write is a mention of its own
    group, so a swapped text always resolves to the group it was swapped to.
    """

    def __init__(self, *, lexicon: Lexicon | None = None) -> None:
        lex = lexicon if lexicon is not None else Lexicon.from_yaml()
        self._lexicon = lex
        self._axis_groups = {axis: tuple(groups) for axis, groups in lex.terms.items()}
        self._axis_index = {axis: k for k, axis in enumerate(lex.terms)}
        self._group_index = {group: k for k, group in enumerate(lex.groups)}
        self._axis_of = {group: axis for axis, groups in lex.terms.items() for group in groups}
        self._forms = {group: dict(lex.forms.get(group, {})) for group in lex.groups}
        self._pairs = {
            axis: _Pairs(
                cols={group: k for k, group in enumerate(pairs.groups)},
                rows=pairs.rows,
                row_of=_first_rows(pairs.rows),
            )
            for axis, pairs in lex.word_pairs.items()
        }
        adjectives = {lex.forms.get(g, {}).get("adj", "").lower() for p in lex.word_pairs.values() for g in p.groups}
        adjectives |= {term for term, form in lex.term_forms.items() if form == "adj"}
        paired_nouns = frozenset(w for p in self._pairs.values() for w in p.row_of if w not in adjectives)
        self._heads = _PERSON_NOUNS | paired_nouns
        # A term takes a following person noun on every axis, and a paired noun on a paired axis.
        self._extensions = {
            axis: (_PERSON_NOUNS | paired_nouns) if axis in self._pairs else _PERSON_NOUNS for axis in lex.terms
        }
        self._lookup, self._prefixes = self._build_lookup(adjectives)
        self._firsts = frozenset(key.split(" ", 1)[0] for key in self._lookup)
        self._headed = self._build_headed()
        self._check()

    @property
    def lexicon(self) -> Lexicon:
        return self._lexicon

    # ----------------------------------------------------------------- building

    def _build_lookup(self, adjectives: set[str]) -> tuple[dict[str, tuple[_Entry, ...]], frozenset[str]]:
        lex = self._lexicon
        exact: dict[str, list[_Entry]] = {}
        plural: dict[str, list[_Entry]] = {}
        for axis, groups in lex.terms.items():
            pairs = self._pairs.get(axis)
            for group, terms in groups.items():
                for term in terms:
                    words = term.split()
                    headed = len(words) > 1 and words[-1] in self._heads
                    is_pair_word = pairs is not None and len(words) == 1 and term in pairs.row_of
                    row = pairs.row_of.get(words[-1]) if pairs is not None and (headed or is_pair_word) else None
                    fixed: Form | None = _as_form(lex.term_forms.get(term))
                    if fixed is None and (headed or _is_plural(term) or (is_pair_word and term not in adjectives)):
                        fixed = "plural" if _is_plural(term) else "noun"
                    display = lex.display.get(term, term)
                    entry = _Entry(
                        group=group,
                        axis=axis,
                        fixed=fixed,
                        headed=headed,
                        row=row,
                        extendable=not headed and not is_pair_word and fixed in (None, "adj"),
                        cap=display[:1].isupper(),
                    )
                    exact.setdefault(term, []).append(entry)
                    if fixed in ("adj", "belief"):
                        continue
                    for variant in _plurals(term):
                        vwords = variant.split()
                        vrow = pairs.row_of.get(vwords[-1]) if pairs is not None and (headed or is_pair_word) else None
                        plural.setdefault(variant, []).append(
                            _Entry(group=group, axis=axis, fixed="plural", headed=headed, row=vrow,
                                   extendable=False, cap=entry.cap)
                        )
        # An exact term wins over a plural reading of another ("whites" is a term itself).
        lookup = {key: tuple(entries) for key, entries in {**plural, **exact}.items()}
        prefixes = frozenset(" ".join(key.split()[:k]) for key in lookup for k in range(1, len(key.split())))
        return lookup, prefixes

    def _build_headed(self) -> dict[str, dict[str, str]]:
        """group -> person noun -> the modifier of the group's listed phrase with that noun."""
        headed: dict[str, dict[str, str]] = {group: {} for group in self._lexicon.groups}
        for group, forms in self._forms.items():  # the group's own forms first: "Arab people"
            for phrase in (forms.get("noun", ""), forms.get("plural", "")):
                modifier, _, head = phrase.rpartition(" ")
                if modifier and head.lower() in self._heads:
                    headed[group].setdefault(head.lower(), modifier)
        for groups in self._lexicon.terms.values():
            for group, terms in groups.items():
                for term in terms:
                    words = term.split()
                    if len(words) > 1 and words[-1] in self._heads:
                        shown = self._lexicon.display.get(term, term).split()
                        headed[group].setdefault(words[-1], " ".join(shown[:-1]))
        return headed

    def _check(self) -> None:
        """Fail at build time, naming the YAML entry, if a swap could write a non-mention."""
        self._check_plurals()
        for axis, groups in self._axis_groups.items():
            if len(groups) < 2:
                continue  # nothing to swap to
            needed = set(_CORE_FORMS) | {
                e.fixed for entries in self._lookup.values() for e in entries if e.axis == axis and e.fixed
            }
            for group in groups:
                for form in sorted(needed):
                    words = self._forms[group].get(form)
                    if words is None:
                        raise LexiconError(
                            f"identity lexicon: group {group!r} (axis {axis!r}) has no {form!r} form, which a "
                            f"swap to it writes; add it under forms: {group}: {{{form}: ...}}"
                        )
                    self._check_names(words, group, f"forms.{group}.{form}")
            pairs = self._pairs.get(axis)
            if pairs is None:
                continue
            for row in pairs.rows:
                for group, col in pairs.cols.items():
                    self._check_names(row[col], group, f"word_pairs.{axis} row {list(row)}")
                for group in groups:
                    if group not in pairs.cols and row[-1]:
                        self._check_names(f"{self._forms[group]['adj']} {row[-1]}", group,
                                          f"word_pairs.{axis} row {list(row)} (neutral noun)")

    def _check_names(self, words: str, group: str, where: str) -> None:
        if not any(hit.group == group for hit in self._scan(words)):
            raise LexiconError(
                f"identity lexicon: {where}: {words!r} is not a mention of {group!r}, so a swap to "
                f"{group!r} would not resolve to it; use words listed under axes.{self._axis_of[group]}.{group} "
                "(or add them there)"
            )

    def _check_plurals(self) -> None:
        for group, phrases in self._lexicon.plurals.items():
            for phrase in phrases:
                hits = [h for h in self._scan(phrase) if h.group == group]
                if not any(h.start == 0 and h.end == len(phrase) and h.form == "plural" for h in hits):
                    raise LexiconError(
                        f"identity lexicon: plurals.{group}: {phrase!r} is not a plural mention of "
                        f"{group!r} as a whole; use a plural of words listed under "
                        f"axes.{self._axis_of[group]}.{group} (or add them there)"
                    )

    # ----------------------------------------------------------------- public API

    def plural_phrases(self, group: str) -> tuple[str, ...]:
        """Ways of naming ``group``'s people in the plural (the lexicon's ``plurals``, else its plural form)."""
        if group not in self._axis_of:
            raise UnknownGroupError(f"unknown group {group!r}; use one of {list(self._axis_of)}")
        listed = self._lexicon.plurals.get(group)
        if listed:
            return listed
        plural = self._forms[group].get("plural")
        return (plural,) if plural else ()

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group of the lexicon, in lexicon order."""
        return self._lexicon.groups

    def find_mentions(self, text: str) -> list[Mention]:
        """Every mention in ``text``, by position; mentions on different axes may overlap."""
        return [
            Mention(start=h.start, end=h.end, surface=text[h.start : h.end], group=h.group, axis=h.axis, form=h.form)
            for h in self._scan(text)
        ]

    def counterfactuals(
        self, text: str, *, axes: Iterable[str] | None = None, max_variants: int | None = None
    ) -> list[Counterfactual]:
        """One variant per other group of each axis the text mentions, in lexicon order.

        Every mention of the axis is written as the target group, so a text naming Muslims and
        Christians gets variants about Jews only, Hindus only, and so on. ``axes`` limits the
        axes; ``max_variants`` stops after that many variants.
        """
        if max_variants is not None and max_variants < 0:
            raise ValueError(f"max_variants must be None or >= 0, got {max_variants}; pass None for all variants")
        wanted = self._axes(axes)
        hits = self._scan(text)
        out: list[Counterfactual] = []
        if max_variants == 0 or not hits:
            return out
        ctx = _Context(text)
        for axis in wanted:
            on_axis = [h for h in hits if h.axis == axis]
            if not on_axis:
                continue
            sources = tuple(sorted({h.group for h in on_axis}, key=self._group_index.__getitem__))
            for target in self._axis_groups[axis]:
                if target in sources:
                    continue
                variant = self._render(ctx, hits, on_axis, target)
                out.append(Counterfactual(text=variant, target_group=target, source_groups=sources, axis=axis))
                if max_variants is not None and len(out) >= max_variants:
                    return out
        return out

    def swap(self, text: str, *, target_group: str) -> str | None:
        """``text`` with every mention of another group of ``target_group``'s axis written as it.

        None when the text mentions no other group of that axis (nothing to swap).
        """
        axis = self._axis_of.get(target_group)
        if axis is None:
            raise UnknownGroupError(f"unknown group {target_group!r}; use one of {list(self._axis_of)}")
        hits = self._scan(text)
        on_axis = [h for h in hits if h.axis == axis and h.group != target_group]
        if not on_axis:
            return None
        return self._render(_Context(text), hits, on_axis, target_group)

    def _axes(self, axes: Iterable[str] | None) -> tuple[str, ...]:
        if axes is None:
            return tuple(self._axis_groups)
        chosen = set(axes)
        unknown = chosen - set(self._axis_groups)
        if unknown:
            raise UnknownGroupError(f"unknown axis {sorted(unknown)}; use some of {list(self._axis_groups)}")
        return tuple(axis for axis in self._axis_groups if axis in chosen)

    # ----------------------------------------------------------------- matching

    def _scan(self, text: str) -> list[_Hit]:
        lowered = text.lower()
        parts = _SPLIT.split(lowered)
        words = parts[1::2]
        firsts = self._firsts
        if firsts.isdisjoint(words):
            return []  # most texts: one split and a set test, both in C
        if len(lowered) != len(text):  # a letter whose lowercase is longer ("İ"): index the original
            parts = _SPLIT.split(text)
            words = [word.lower() for word in parts[1::2]]
        tokens = _Words(parts, words)
        starts = [k for k, word in enumerate(words) if word in firsts]
        count = len(words)
        lookup, prefixes = self._lookup, self._prefixes
        # (first word, last word, entry, extended over a person noun)
        found: list[tuple[int, int, _Entry, bool]] = []
        for i in starts:
            j, phrase = i, words[i]
            while True:
                for entry in lookup.get(phrase, ()):
                    found.append((i, j, entry, False))
                    if (
                        entry.extendable
                        and j + 1 < count
                        and words[j + 1] in self._extensions[entry.axis]
                        and tokens.joined(j)
                    ):
                        found.append((i, j + 1, entry, True))
                if j + 1 >= count or phrase not in prefixes or not tokens.joined(j):
                    break
                j += 1
                phrase = f"{phrase} {words[j]}"
        if not found:
            return []
        axis_index = self._axis_index
        found.sort(key=lambda f: (axis_index[f[2].axis], f[0], -f[1]))
        hits: list[_Hit] = []
        axis, last, kept = "", -1, (-1, -1, "")
        for i, j, entry, extended in found:
            if entry.axis != axis:
                axis, last = entry.axis, -1
            if i > last:
                last, kept = j, (i, j, entry.group)
            elif (i, j) != kept[:2] or entry.group == kept[2]:
                continue  # inside a longer mention on this axis (or a duplicate)
            hits.append(self._hit(text, tokens, i, j, entry, extended))
        hits.sort(key=lambda h: (h.start, -h.end, axis_index[h.axis]))
        return hits

    def _hit(self, text: str, tokens: _Words, i: int, j: int, entry: _Entry, extended: bool) -> _Hit:
        words = tokens.words
        start, end = tokens.start(i), tokens.end(j)
        headed = entry.headed or extended
        row = entry.row
        if extended:
            pairs = self._pairs.get(entry.axis)
            row = pairs.row_of.get(words[j]) if pairs is not None else None
        poss = _possessive(text, end)
        form: Form
        if headed:
            form = "plural" if _is_plural(words[j]) else "noun"
        elif entry.fixed is not None:
            form = entry.fixed
            if form == "adj" and i > 0 and words[i - 1] == "the" and (
                _form_from_context(tokens, i, j, poss) == "noun"
            ):
                form = "plural"  # an adjective used as a collective noun: "the elderly"
        else:
            form = _form_from_context(tokens, i, j, poss)
        if poss == 1 and form != "plural":
            poss = 0  # a closing quote, not a possessive
        next_word = words[j + 1] if not poss and j + 1 < len(words) and tokens.joined(j) else None
        return _Hit(
            start=start,
            end=end,
            group=entry.group,
            axis=entry.axis,
            form=form,
            cap=entry.cap,
            row=row,
            modifier=" ".join(words[i:j]) if headed else None,
            mod_end=tokens.end(j - 1) if headed else None,
            head=words[j] if headed else None,
            head_start=tokens.start(j) if headed else None,
            next_word=next_word,
            poss=poss,
        )

    # ----------------------------------------------------------------- writing

    def _render(self, ctx: _Context, hits: Sequence[_Hit], on_axis: Sequence[_Hit], target: str) -> str:
        edits: list[_Edit] = []
        for hit in on_axis:
            edits.extend(self._edits(ctx, hit, target, hits))
        for k in range(len(edits)):
            article = _article_edit(ctx, edits[k])
            if article is not None:
                edits.append(article)
        if len(edits) > 1:
            edits.sort(key=lambda e: e.start)
        text = ctx.text
        pieces: list[str] = []
        pos = 0
        for edit in edits:
            if edit.start < pos:
                logger.debug("skipped an overlapping swap edit at %d", edit.start)
                continue
            pieces.append(text[pos : edit.start])
            pieces.append(edit.text)
            pos = edit.end
        pieces.append(text[pos:])
        return "".join(pieces)

    def _edits(self, ctx: _Context, hit: _Hit, target: str, hits: Sequence[_Hit]) -> list[_Edit]:
        forms = self._forms[target]
        pairs = self._pairs.get(hit.axis)
        if pairs is not None and hit.row is not None:
            # A paired word ("mother") or a phrase ending in one ("trans woman"): write the
            # target's word of the row, or its adjective and the neutral noun.
            row = pairs.rows[hit.row]
            col = pairs.cols.get(target)
            adj: str | None = None
            if col is not None:
                noun = row[col]
            elif row[-1]:
                adj, noun = forms["adj"], row[-1]
            else:
                noun = forms[hit.form]
            if hit.head is None:
                enclosing = self._enclosing(hit, hits)
                if enclosing is not None:
                    inside = self._edits_inside(ctx, hit, enclosing, adj, noun, forms)
                    if inside is not None:
                        return inside
            return [self._whole(ctx, hit, noun if adj is None else f"{adj} {noun}")]
        if hit.mod_end is not None and hit.head is not None:
            # A person phrase ("Black women", "Jewish people"): keep the noun, swap the modifier.
            modifier = self._headed[target].get(hit.head) or forms["adj"]
            surface = ctx.text[hit.start : hit.mod_end]
            return [_Edit(hit.start, hit.mod_end, ctx.recase(modifier, pos=hit.start, surface=surface, cap=hit.cap))]
        if hit.form == "adj":
            modifier = self._headed[target].get(hit.next_word or "") or forms["adj"]
            return [self._whole(ctx, hit, modifier)]
        return [self._whole(ctx, hit, forms[hit.form])]

    def _enclosing(self, hit: _Hit, hits: Sequence[_Hit]) -> _Hit | None:
        """A person phrase on another axis whose noun is this mention ("Black *women*")."""
        for other in hits:
            if other.axis != hit.axis and other.head_start == hit.start and other.end == hit.end:
                return other
        return None

    def _edits_inside(
        self, ctx: _Context, hit: _Hit, enclosing: _Hit, adj: str | None, noun: str, forms: Mapping[str, str]
    ) -> list[_Edit] | None:
        """Swap the noun of another axis's person phrase so that the phrase still names its group.

        "Black women" -> "Black men"; to a group without a paired word the adjective goes in
        front of the whole phrase: "nonbinary Black people", not "Black nonbinary people"
        (which would no longer name Black people). None: no choice keeps the phrase.
        """
        assert enclosing.modifier is not None and enclosing.mod_end is not None
        if adj is None:
            for word in (noun, forms[hit.form]):
                if self._names(f"{enclosing.modifier} {_normalise(word)}", enclosing.group):
                    return [self._whole(ctx, hit, word)]
            return None
        for word in (noun, "people" if hit.form == "plural" else "person"):
            if self._names(f"{enclosing.modifier} {word}", enclosing.group):
                surface = ctx.text[enclosing.start : enclosing.mod_end]
                front = ctx.recase(adj, pos=enclosing.start, surface=surface, cap=enclosing.cap)
                kept = surface
                if (
                    kept[:1].isupper()
                    and not enclosing.cap
                    and not _is_caps(kept)
                    and ctx.sentence_start(enclosing.start)
                ):
                    kept = kept[:1].lower() + kept[1:]  # "Old men" -> "Nonbinary old people"
                return [_Edit(enclosing.start, enclosing.mod_end, f"{front} {kept}"), self._whole(ctx, hit, word)]
        return None

    def _names(self, key: str, group: str) -> bool:
        return any(entry.group == group for entry in self._lookup.get(key, ()))

    def _whole(self, ctx: _Context, hit: _Hit, replacement: str) -> _Edit:
        """Replace the whole mention, keeping a plural possessive well formed."""
        surface = ctx.text[hit.start : hit.end]
        new = ctx.recase(replacement, pos=hit.start, surface=surface, cap=hit.cap)
        end = hit.end
        if hit.poss and hit.form == "plural":
            apostrophe = ctx.text[hit.end]
            ends_in_s = new[-1:] in ("s", "S")
            if hit.poss == 2 and ends_in_s:  # "women's" -> "Muslims'"
                new, end = new + apostrophe, end + 2
            elif hit.poss == 1 and not ends_in_s:  # "Muslims'" -> "women's"
                new, end = new + apostrophe + ("S" if _is_caps(new) else "s"), end + 1
        return _Edit(hit.start, end, new)


def _first_rows(rows: Sequence[tuple[str, ...]]) -> dict[str, int]:
    row_of: dict[str, int] = {}
    for k, row in enumerate(rows):
        for word in row:
            if word:
                row_of.setdefault(word, k)
    return row_of


def _as_form(value: str | None) -> Form | None:
    for form in FORMS:
        if value == form:
            return form
    return None


class _Words:
    """A text split into words and the gaps around them, with character offsets.

    One ``re.split`` and an ``accumulate`` (both in C) instead of a match object per word.
    """

    __slots__ = ("ends", "gaps", "words")

    def __init__(self, parts: list[str], words: list[str]) -> None:
        self.words = words
        self.gaps = parts[0::2]  # gaps[k] comes before word k, gaps[k + 1] after it
        self.ends = list(accumulate(map(len, parts)))  # word k spans ends[2k]..ends[2k + 1]

    def start(self, k: int) -> int:
        return self.ends[2 * k]

    def end(self, k: int) -> int:
        return self.ends[2 * k + 1]

    def joined(self, k: int) -> bool:
        """Whether word ``k`` and the next are one phrase: only spaces, hyphens or "/" between."""
        return _JOIN.fullmatch(self.gaps[k + 1]) is not None


def _possessive(text: str, end: int) -> int:
    """Length of a possessive suffix at ``end``: 2 for "'s", 1 for a bare apostrophe, else 0."""
    if end >= len(text) or text[end] not in _APOSTROPHES:
        return 0
    after = end + 2
    if text[end + 1 : after] in ("s", "S") and (after >= len(text) or not text[after].isalnum()):
        return 2
    # "Muslims' rights": a bare apostrophe after a plural, then a word (else it closes a quote).
    if text[end - 1] in ("s", "S") and text[end + 1 : after] == " " and text[after : after + 1].isalpha():
        return 1
    return 0


def _form_from_context(tokens: _Words, i: int, j: int, poss: int) -> Form:
    """Noun or adjective, for a term that can be either ("a Muslim." vs "a Muslim woman")."""
    if poss == 2:
        return "noun"
    words = tokens.words
    prev = words[i - 1] if i > 0 and tokens.gaps[i].isspace() else None
    if prev in _PREDICATE_CUES:
        return "adj"
    if j + 1 < len(words):
        gap = tokens.gaps[j + 1]
        following = words[j + 1]
        if gap.isspace():
            if following in _COORDINATORS:
                return "noun" if prev in _DETERMINERS else "adj"
            if following in _AFTER_NOUN or _looks_like_verb(following, after_singular=prev in _SINGULAR_DETERMINERS):
                return "noun"
            return "adj"
        if any(c in _HYPHENS for c in gap):
            return "adj"  # a compound modifier: "Muslim-owned"
    return "noun"  # end of text or punctuation


def _looks_like_verb(word: str, *, after_singular: bool) -> bool:
    """A past tense ("a Muslim walked"), or an "-s" form after "a"/"every" ("a Muslim prays").

    After a singular determiner a word ending in "s" cannot be the plural noun an adjective
    would modify ("a Muslim students" is not English), so it is a verb.
    """
    if len(word) > 4 and word.endswith("ed"):
        return True
    return after_singular and word.endswith("s") and not word.endswith(("ss", "us"))


def _article_edit(ctx: _Context, edit: _Edit) -> _Edit | None:
    """Fix "a"/"an" right before an edit ("a Muslim" -> "an atheist")."""
    article = ctx.article(edit.start)
    if article is None:
        return None
    start, end, old = article
    an = _wants_an(edit.text)
    if (old.lower() == "an") == an:
        return None
    new = "an" if an else "a"
    if old.isupper() and (len(old) == 2 or _is_caps(edit.text)):
        new = new.upper()
    elif old[:1].isupper():
        new = new.capitalize()
    return _Edit(start, end, new)
