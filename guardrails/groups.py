"""Group resolution: which groups an item belongs to, from the request and/or its text.

The result only ever holds names from the policy's allowed list plus ``other`` and
``none``, so everything downstream (windows, metric labels) is bounded by configuration,
never by traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

# Lexicon and bundled_lexicon_path moved to identity.py (the one home of identity-term
# knowledge); they stay importable from here for existing callers.
from fairgate.guardrails.identity import CompiledLexicon, Lexicon, bundled_lexicon_path
from fairgate.guardrails.policy import GroupsPolicy

__all__ = [
    "NONE",
    "OTHER",
    "CompiledLexicon",
    "GroupResolver",
    "Lexicon",
    "RequestGroup",
    "bundled_lexicon_path",
]

OTHER = "other"
NONE = "none"
RequestGroup = str | Sequence[str] | None


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
