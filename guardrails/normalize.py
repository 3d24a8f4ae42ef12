"""One input normalisation for training, evaluation and serving, recorded with the model.

Why: the bundled guard learned from clean, well-formed sentences, so the surface forms of
social media (``RT @user:``, ``&amp;``, links, ``#StayHome``, ``soooooo``, emoji) are text
it has never seen, and it scores them as toxic (42% of Davidson's *neither* tweets scored
toxicity >= 0.8). The cure is to map those forms to text the encoder knows, and to do it
*identically* wherever a model reads text: the build applies the spec before fine-tuning
and evaluation, ``models.export`` records it in the model directory's ``fairgate.json``,
and :class:`~fairgate.guardrails.onnx_model.OnnxTextModel` applies what its manifest says
inside ``encode``, so serving cannot forget it or apply another one.

The rules of :meth:`TextNormalization.social` (version 1), in the order they run (the
order makes ``apply`` idempotent: no later rule can create what an earlier one removes):

1. **Unicode clean-up**, repeated until nothing changes (at most 4 rounds; ``&amp;amp;``
   needs two): invisible characters are removed (zero-width space/joiners, soft hyphen,
   word joiner, BOM, bidi controls, variation selectors, the keycap mark, tag characters)
   because they split words the model knows (``id\u200biot``) and exist to evade
   filters, and so are private-use code points (no agreed meaning; Davidson's old iOS
   emoji arrive as ``&#1041204;``); NFKC folds look-alike forms (fullwidth ``ｆｕｌｌ``,
   mathematical bold letters, ligatures) onto the letters the vocabulary has; HTML
   entities *with* a semicolon (``&amp;``, ``&#8220;``, ``&#x1F602;``) are unescaped.
   Entities without one are left alone, so ``AT&T`` or ``this&not`` never change.
2. **Emoji** -> a short description from the Unicode character names (stdlib
   ``unicodedata``): ``😂`` -> ``face with tears of joy``, ``🖕`` -> ``reversed hand with
   middle finger extended``. MiniLM's vocabulary lacks almost every emoji, so kept they
   become ``[UNK]`` (no signal, and a token the clean training data never had); some
   carry real signal (a middle finger, a pistol, a monkey aimed at a person) that the
   guard can only learn from words. A run of the same emoji is described once (``😂😂😂``
   is one laugh, not 15 tokens); skin-tone modifiers are dropped (they show no intent
   and would name a skin colour); a flag (regional-indicator pair) -> ``flag``; the
   words ``black``/``white`` are dropped from names, where they mean *filled* and
   *outlined* (``heavy black heart``), never a people. An emoji newer than Python's
   Unicode table is kept as it is.
3. **URLs** (``http://``, ``https://``, ``www.``, stretched ones like ``htttp://`` too)
   -> ``http``. It is one word piece in the MiniLM/BERT vocabulary and is what
   pre-training text showed where links were; ``URL`` splits into ``ur ##l`` and
   ``[URL]``/``<url>`` into four pieces of noise. A link's words (``/killer-deals``) say
   nothing about the author's intent.
4. **Repeated characters**: a run of 3 or more of the same letter or symbol -> 2
   (``soooooo`` -> ``soo``, ``!!!!!`` -> ``!!``): no English word has a triple letter, so
   nothing is lost, while squeezing to 1 would turn ``kill`` into ``kil``. Digits are
   exempt (``1000000``); dots keep an ellipsis (4+ dots -> ``...``).
5. **Hashtags** -> their words: ``#StayHome2020`` -> ``Stay Home 2020``, ``#blessed`` ->
   ``blessed``, ``#MAGA`` -> ``MAGA`` (CamelCase, letter/digit and ``_`` boundaries
   split; an all-lower tag cannot be split without a dictionary and stays one word).
   The word is content; the ``#`` is a form clean text lacks. A tag needs a letter
   (``#1`` and ``C#`` are not tags).
6. **Retweet markers** ``RT @name:`` are removed anywhere (Davidson has ``!!! RT @a: ...``
   and quote chains ``RT @a: ... RT @b: ...``): they say "this is a repost", nothing more.
7. **@mentions** -> ``@user``, and a run of them -> one ``@user`` (the TweetEval/BERTweet
   convention). Handles split into odd word pieces (``@M_A_Larson`` -> ``m _ a _ lar
   ##son``) and often contain identity or violent words (``@GayTimes``,
   ``@KillerQueen``) that a guard would score as if the author had written them.
   E-mail addresses (a word character before ``@``) are not mentions.
8. **Whitespace** runs (newlines, tabs, NBSP after NFKC) -> one space, ends stripped.

Not normalised, on purpose: **casing** (the tokenizer's own normaliser lowercases an
uncased model; a cased model keeps ALL CAPS as signal); **typos, letter games**
(``S St Sta Stay``) and missing punctuation: they cannot be undone reliably, so training
augmentation (``fairgate.models.augment``) teaches the model to read them instead.

Guarantees: ``apply`` is idempotent (applying it twice equals once), and never returns an
empty string for a non-empty input (a text that normalises to nothing, e.g. ``RT @a:``
alone, is returned unchanged). Cost on the shared 2-core machine: 16-35 us per Davidson
tweet, 7-19 us per SST-2 sentence (docs/guard.md), against ~16 ms per text for the guard.
"""

from __future__ import annotations

import html
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from html.entities import html5
from typing import Any, Literal

__all__ = [
    "NORMALIZATION_VERSION",
    "NormalizationError",
    "TextNormalization",
]

logger = logging.getLogger(__name__)

# The version of the rules implemented here. A model directory records the version it was
# trained with; code that implements another version refuses it instead of serving with
# rules the model never saw.
NORMALIZATION_VERSION = 1
SUPPORTED_VERSIONS = (1,)

HashtagMode = Literal["keep", "word", "split"]
EmojiMode = Literal["keep", "describe", "remove"]
_HASHTAG_MODES = ("keep", "word", "split")
_EMOJI_MODES = ("keep", "describe", "remove")
_MAX_DECODE_ROUNDS = 4

# Invisible: soft hyphen, Mongolian vowel separator, zero-width space/joiners, LRM/RLM,
# bidi embeddings and isolates, word joiner, BOM, variation selectors, keycap mark, tag
# characters, and private-use code points (no agreed meaning; old iOS emoji arrive so).
_INVISIBLE = (
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\ufe00-\ufe0f\u20e3\ue000-\uf8ff\U000e0000-\U000e007f\U000f0000-\U0010ffff]"
)
_ENTITY = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
# Runs allowed (``htttp://``, ``wwww.``): squeezing them later must not create a URL.
_URL = r"(?i)\b(?:h+t+p+s*:/+|w{3,}\.)\S+"
# Word characters plus combining marks (not \w to ``re``): ``@j\u0301`` is one handle.
_W = "[\\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
_TAG = rf"{_W}*[^\W\d_]{_W}*"
# The patterns start with their literal (``#``, ``@``, ``RT``) and look behind it, so the
# regex engine skips to candidates instead of testing a lookbehind at every character
# (5x faster on tweets).
# A tag is not after & or # (entities, ``##``); after a letter it is a tag too, so that
# removing what precedes it (an RT marker, a mention) cannot make a tag on a second pass.
_HASHTAG = rf"#(?<![&#]#)({_TAG}(?:#{_TAG})*)"
_CAMEL = r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])|_+"
_RETWEET = rf"(?:RT|rt)(?<!\wRT)(?<!\wrt)(?:\s*(?:RT|rt))*\s*@{_W}+\s*:?"  # "RT RT @a:" is one marker
_MENTION = rf"@(?<![\w@]@){_W}+"
_EMOJI_CHARS = "\U0001f000-\U0001f1e5\U0001f200-\U0001f3fa\U0001f400-\U0001faff\u2600-\u27bf\u2b00-\u2bff"
_SKIN_TONE = "[\U0001f3fb-\U0001f3ff]"
_FLAG = "[\U0001f1e6-\U0001f1ff]+"
_NAME_FILLERS = frozenset({"black", "white"})


class NormalizationError(ValueError):
    """A model directory records a text normalisation this fairgate cannot apply."""


@dataclass(frozen=True)
class _Rules:
    """The compiled regexes of one spec; built per instance, never at import time."""

    invisible: re.Pattern[str]
    entity: re.Pattern[str]
    url: re.Pattern[str]
    hashtag: re.Pattern[str]
    camel: re.Pattern[str]
    retweet: re.Pattern[str]
    mention: re.Pattern[str]
    mention_run: re.Pattern[str] | None
    skin_tone: re.Pattern[str]
    flag: re.Pattern[str]
    emoji_run: re.Pattern[str]
    triple: re.Pattern[str]
    repeat: re.Pattern[str] | None
    dots: re.Pattern[str]


def _compile(spec: TextNormalization) -> _Rules:
    mention_run = None
    if spec.mentions is not None:
        placeholder = re.escape(spec.mentions)
        mention_run = re.compile(rf"{placeholder}(?:\s*{placeholder})+")
    repeat = None
    if spec.max_repeat is not None:
        repeat = re.compile(rf"([^\d\s.])\1{{{spec.max_repeat},}}")
    return _Rules(
        # Skin-tone modifiers go with the invisible characters, before NFKC: removed later,
        # they could leave a combining mark that NFKC would fold on a second pass.
        invisible=re.compile(_INVISIBLE if spec.emoji == "keep" else f"{_INVISIBLE}|{_SKIN_TONE}"),
        entity=re.compile(_ENTITY),
        url=re.compile(_URL),
        hashtag=re.compile(_HASHTAG),
        camel=re.compile(_CAMEL),
        retweet=re.compile(_RETWEET),
        mention=re.compile(_MENTION),
        mention_run=mention_run,
        skin_tone=re.compile(_SKIN_TONE),
        flag=re.compile(_FLAG),
        emoji_run=re.compile(rf"([{_EMOJI_CHARS}])(?:\s*\1)*"),
        # A run one longer than kept (capped at 4, the dots rule): cheap to search for.
        triple=re.compile(rf"(.)\1{{{min(spec.max_repeat or 2, 3)}}}"),  # no DOTALL: 2x faster
        repeat=repeat,
        dots=re.compile(r"\.{4,}"),
    )


def _unescape(match: re.Match[str]) -> str:
    """One entity with its semicolon. A name must be a whole HTML5 entity: ``html.unescape``
    alone would also decode legacy prefixes (``&ampersand;`` -> ``&ersand;``)."""
    entity = match.group()
    if entity[1] == "#":
        return html.unescape(entity)
    return html5.get(entity[1:], entity)


def _describe_emoji(char: str) -> str | None:
    """``face with tears of joy`` for 😂; None when Python's Unicode table has no name."""
    name = unicodedata.name(char, "")
    if not name:
        return None
    words = [word for word in name.lower().split() if word not in _NAME_FILLERS]
    return " ".join(words) or None


@dataclass(frozen=True, kw_only=True)
class TextNormalization:
    """A named, versioned text normalisation; :meth:`apply` maps raw texts to model input.

    Build the two standard specs with :meth:`none` (identity: models built before
    normalisation existed) and :meth:`social` (the rules of the module docstring).
    Options, each off when ``None``/``False``/``"keep"``: ``unicode`` (invisible
    characters, NFKC, HTML entities), ``urls`` (placeholder word), ``hashtags``
    (``keep``/``word``/``split``), ``retweets`` (drop ``RT @name:``), ``mentions``
    (placeholder), ``emoji`` (``keep``/``describe``/``remove``), ``max_repeat`` (longest
    run of one character kept), ``whitespace`` (collapse and strip).
    """

    name: str = "none"
    version: int = NORMALIZATION_VERSION
    unicode: bool = False
    urls: str | None = None
    hashtags: HashtagMode = "keep"
    retweets: bool = False
    mentions: str | None = None
    emoji: EmojiMode = "keep"
    max_repeat: int | None = None
    whitespace: bool = False
    _rules: _Rules | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise NormalizationError(f"normalization name {self.name!r} must be a non-empty string")
        if self.version not in SUPPORTED_VERSIONS:
            raise NormalizationError(
                f"text normalization {self.name!r} is version {self.version!r}, but this fairgate "
                f"implements version {', '.join(map(str, SUPPORTED_VERSIONS))}; install the fairgate "
                "version that built the model (pip install -U fairgate), or rebuild the model with this one"
            )
        if self.hashtags not in _HASHTAG_MODES:
            raise NormalizationError(f"hashtags={self.hashtags!r}; use one of {', '.join(_HASHTAG_MODES)}")
        if self.emoji not in _EMOJI_MODES:
            raise NormalizationError(f"emoji={self.emoji!r}; use one of {', '.join(_EMOJI_MODES)}")
        if self.max_repeat is not None and (isinstance(self.max_repeat, bool) or self.max_repeat < 1):
            raise NormalizationError(f"max_repeat={self.max_repeat!r}; use an integer >= 1, or None to keep runs")
        for option in ("urls", "mentions"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise NormalizationError(f"{option}={value!r}; use a non-empty placeholder word, or None to keep them")
        if not self.is_identity:
            object.__setattr__(self, "_rules", _compile(self))

    @classmethod
    def none(cls) -> TextNormalization:
        """The identity: texts reach the tokenizer as sent (models built before normalisation)."""
        return cls(name="none")

    @classmethod
    def social(cls) -> TextNormalization:
        """The rules of the module docstring, for social-media text (the guard's default)."""
        return cls(
            name="social",
            unicode=True,
            urls="http",
            hashtags="split",
            retweets=True,
            mentions="@user",
            emoji="describe",
            max_repeat=2,
            whitespace=True,
        )

    @property
    def is_identity(self) -> bool:
        """True when :meth:`apply` returns its input unchanged."""
        return not (
            self.unicode
            or self.urls is not None
            or self.hashtags != "keep"
            or self.retweets
            or self.mentions is not None
            or self.emoji != "keep"
            or self.max_repeat is not None
            or self.whitespace
        )

    def apply(self, texts: Sequence[str]) -> list[str]:
        """The normalised texts, in order (a new list; the input is not modified)."""
        if self.is_identity:
            return list(texts)
        return [self.apply_one(text) for text in texts]

    def apply_one(self, text: str) -> str:
        """One text through the rules; an input that normalises to nothing is returned as is."""
        rules = self._rules
        if rules is None:
            return text
        out = self._once(text, rules)
        # Squeezing can complete an entity (``&lll;`` -> ``&ll;``, which is "≪"); only a text
        # still holding ``&...;`` can change again, so only it pays for a second pass.
        for _ in range(_MAX_DECODE_ROUNDS):
            if not (self.unicode and "&" in out and rules.entity.search(out)):
                break
            again = self._once(out, rules)
            if again == out:
                break
            out = again
        return out if out or not text else text

    def _once(self, text: str, rules: _Rules) -> str:
        # Each rule first checks, with a cheap ``in``, whether it can apply at all: most
        # texts have no emoji, URL or tag, and a regex scan costs ~0.1 us per character.
        out = text
        ascii_only = out.isascii()
        if self.unicode:
            out = self._decode(out, rules, ascii_only=ascii_only)
            ascii_only = out.isascii()
        if self.emoji != "keep" and not ascii_only:
            # Before the word rules: some emoji count as word characters (``❷``), so a
            # description appearing later would change what the URL, tag and mention
            # rules see on a second pass.
            out = self._emoji(out, rules)
        if self.urls is not None and (":/" in out or "ww." in out.lower()):
            out = rules.url.sub(f" {self.urls} ", out)
        if rules.repeat is not None and rules.triple.search(out):
            out = rules.repeat.sub(self._squeeze, out)
            out = rules.dots.sub("...", out)
        if self.hashtags != "keep" and "#" in out:
            out = rules.hashtag.sub(self._hashtag_words, out)
        if "@" in out:
            if self.retweets:
                out = rules.retweet.sub(" ", out)
            if self.mentions is not None and rules.mention_run is not None:
                out = rules.mention.sub(self.mentions, out)
                out = rules.mention_run.sub(self.mentions, out)
        if self.whitespace:
            out = " ".join(out.split())
        return out

    def _squeeze(self, match: re.Match[str]) -> str:
        return match.group(1) * (self.max_repeat or 1)

    @staticmethod
    def _decode(text: str, rules: _Rules, *, ascii_only: bool) -> str:
        """Invisible characters, NFKC and HTML entities, until nothing changes."""
        if ascii_only and "&" not in text:
            return text  # nothing invisible, NFKC-foldable or escaped in plain ASCII
        for _ in range(_MAX_DECODE_ROUNDS):
            before = text
            if not text.isascii():
                text = rules.invisible.sub("", text)
                if not unicodedata.is_normalized("NFKC", text):
                    text = unicodedata.normalize("NFKC", text)
            if "&" in text:
                text = rules.entity.sub(_unescape, text)
            if text == before:
                break
        return text

    def _hashtag_words(self, match: re.Match[str]) -> str:
        tag = match.group(1).replace("#", " ")
        if self.hashtags == "split" and self._rules is not None:
            tag = self._rules.camel.sub(" ", tag)
        return f" {tag.strip()} "

    def _emoji(self, text: str, rules: _Rules) -> str:
        text = rules.skin_tone.sub("", text)
        if self.emoji == "remove":
            return rules.emoji_run.sub(" ", rules.flag.sub(" ", text))
        text = rules.flag.sub(" flag ", text)

        def describe(match: re.Match[str]) -> str:
            words = _describe_emoji(match.group(1))
            return match.group() if words is None else f" {words} "

        return rules.emoji_run.sub(describe, text)

    def to_manifest(self) -> dict[str, Any]:
        """The ``normalization`` entry of ``fairgate.json``: name, version and every option.

        ``unidata_version`` records the Unicode table the build used (NFKC and emoji names
        come from it); a serving Python with another table logs a warning on load.
        """
        entry: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "unicode": self.unicode,
            "urls": self.urls,
            "hashtags": self.hashtags,
            "retweets": self.retweets,
            "mentions": self.mentions,
            "emoji": self.emoji,
            "max_repeat": self.max_repeat,
            "whitespace": self.whitespace,
        }
        if self.unicode or self.emoji == "describe":
            entry["unidata_version"] = unicodedata.unidata_version
        return entry

    @classmethod
    def from_manifest(cls, obj: Mapping[str, Any] | None) -> TextNormalization:
        """The spec a manifest entry records; ``None`` (no entry) is the identity.

        Models exported before normalisation existed have no entry and keep serving
        exactly as before. An unknown version or option is refused, never guessed at.
        """
        if obj is None:
            return cls.none()
        if not isinstance(obj, Mapping):
            raise NormalizationError(
                f"normalization entry is {type(obj).__name__}, expected an object with name and version; "
                "rebuild the model"
            )
        entry = dict(obj)
        for key in ("name", "version"):
            if key not in entry:
                raise NormalizationError(f"normalization entry lacks {key!r} ({json.dumps(obj)}); rebuild the model")
        recorded_unicode = entry.pop("unidata_version", None)
        known = {option.name for option in fields(cls) if option.init}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise NormalizationError(
                f"normalization entry has unknown options {unknown}: the model was built by a newer "
                "fairgate; install that version (pip install -U fairgate) or rebuild the model with this one"
            )
        spec = cls(**entry)
        if recorded_unicode is not None and recorded_unicode != unicodedata.unidata_version:
            logger.warning(
                "model was normalised with Unicode %s, this Python has %s: NFKC and emoji names may "
                "differ for characters new in either version",
                recorded_unicode,
                unicodedata.unidata_version,
            )
        return spec
