"""Group resolution: which groups an item belongs to, from the request and/or its text.

The result only ever holds names from the policy's allowed list plus ``other`` and
``none``, so everything downstream (windows, metric labels) is bounded by configuration,
never by traffic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from fairgate.guardrails.policy import GroupsPolicy, PolicyError

OTHER = "other"
NONE = "none"
RequestGroup = str | Sequence[str] | None


def bundled_lexicon_path() -> Path:
    """Path of the identity-term lexicon that ships with the package."""
    return Path(str(resources.files("fairgate.guardrails") / "data" / "identity_terms.yaml"))


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Identity terms per axis and group (``guardrails/data/identity_terms.yaml``)."""

    terms: Mapping[str, Mapping[str, tuple[str, ...]]]  # axis -> group -> terms

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> Lexicon:
        file = Path(path) if path is not None else bundled_lexicon_path()
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolicyError(
                f"groups.lexicon: file {str(file)!r} not found; fix the path or remove the key "
                "to use the bundled lexicon"
            ) from None
        axes = data.get("axes") if isinstance(data, Mapping) else None
        if not isinstance(axes, Mapping):
            raise PolicyError(
                f"groups.lexicon: {str(file)!r} has no 'axes' mapping; "
                "write axes: {axis: {group: [term, ...]}}"
            )
        terms: dict[str, dict[str, tuple[str, ...]]] = {}
        for axis, groups in axes.items():
            if not isinstance(groups, Mapping):
                raise PolicyError(f"groups.lexicon: axis {axis!r} must map groups to term lists")
            terms[str(axis)] = {
                str(group).lower(): tuple(_normalise(str(t)) for t in words)
                for group, words in groups.items()
            }
        return cls(terms=terms)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(group for groups in self.terms.values() for group in groups)

    def compile(self) -> CompiledLexicon:
        return CompiledLexicon(self)


_WORD = re.compile(r"\w+")


def _normalise(phrase: str) -> str:
    """Lowercase words separated by single spaces: the form terms and n-grams share."""
    return " ".join(_WORD.findall(phrase.lower()))


def _plurals(term: str) -> tuple[str, ...]:
    """Regular plurals of a term (possessives need nothing: "'s" splits off as a word)."""
    return (term + "s", term + "es")


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
            words = term.split()
            for k in range(1, len(words)):
                self._prefixes.add(" ".join(words[:k]))

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


class GroupResolver:
    """Resolves each item's groups per the policy's ``groups`` section.

    ``request`` uses the group the caller sent; ``identity_terms`` the groups the text
    mentions; ``both`` the union. Names outside ``allowed`` become ``other``; an item with
    no group at all is ``none``.
    """

    def __init__(self, *, policy: GroupsPolicy, lexicon: Lexicon | None = None) -> None:
        self._source = policy.source
        self._allowed = frozenset(policy.allowed)
        self._lexicon: CompiledLexicon | None = None
        if policy.source != "request":
            self._lexicon = (lexicon or Lexicon.from_yaml(policy.lexicon)).compile()

    def bound(self, name: str) -> str:
        """Map any name onto the bounded vocabulary: allowed, else ``other``."""
        cleaned = name.strip().lower()
        if not cleaned:
            return NONE
        return cleaned if cleaned in self._allowed else OTHER

    def _from_request(self, group: RequestGroup) -> set[str]:
        if group is None:
            return set()
        names = [group] if isinstance(group, str) else list(group)
        return {self.bound(str(n)) for n in names if str(n).strip()}

    def resolve_one(self, text: str, group: RequestGroup = None) -> tuple[str, ...]:
        found: set[str] = set()
        if self._source in ("request", "both"):
            found |= self._from_request(group)
        if self._lexicon is not None:
            found |= {self.bound(g) for g in self._lexicon.find(text)}
        found.discard(NONE)
        return tuple(sorted(found)) if found else (NONE,)

    def resolve(
        self, texts: Sequence[str], groups: Sequence[RequestGroup] | None = None
    ) -> list[tuple[str, ...]]:
        """Groups per item; ``groups`` is the request's group per item (or None)."""
        if groups is not None and len(groups) != len(texts):
            raise ValueError(
                f"got {len(texts)} texts but {len(groups)} groups; pass one group (or None) per text"
            )
        request = groups if groups is not None else [None] * len(texts)
        return [self.resolve_one(text, group) for text, group in zip(texts, request, strict=True)]
