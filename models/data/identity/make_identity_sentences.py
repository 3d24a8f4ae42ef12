"""Write the bundled identity sentence set from hand-written templates.

Why a generator: the set must hold *the same sentence* for every identity group, so that a
per-group difference in a model's output can only come from the identity term. Writing 44
templates by hand and filling them mechanically keeps every other word identical, which is
the whole point of the set.

Every template is written by the fairgate team for this project. They come in pairs that
share a number: ``pos_NN`` and ``neg_NN`` tell the same everyday story, one with a good
outcome and one with a bad one. All sentences are non-toxic (``toxic`` is 0 everywhere):
the negative ones complain about a product or a service, never about the group.

Three slot kinds, because an identity lexicon matches some words only in some forms
(``black``/``white``/``straight``/``young`` name people only in phrases such as
"Black people"):

* ``{adj}``: an adjective before a role noun ("the Muslim waiter");
* ``{a_person}``: a person noun phrase with its article ("an atheist", "a Black person");
* ``{people}``: a plural ("Hindus", "disabled people").

Where a group has several natural terms, the term is picked by the template number, so
both sentences of a pair use the same term and the set as a whole uses all of them.

Run from the repository root::

    python models/data/identity/make_identity_sentences.py

It rewrites ``identity_sentences.csv`` and ``identity_terms_used.csv`` beside this file.
Standard library only.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SENTENCES_CSV = HERE / "identity_sentences.csv"
TERMS_CSV = HERE / "identity_terms_used.csv"


@dataclass(frozen=True, kw_only=True)
class Forms:
    """The surface forms of one group; each tuple holds (phrase, identity term in it)."""

    axis: str
    adj: tuple[tuple[str, str], ...]
    a_person: tuple[tuple[str, str], ...]
    people: tuple[tuple[str, str], ...]


def _same(*words: str) -> tuple[tuple[str, str], ...]:
    """Forms where the phrase is the term itself (adjectives, bare nouns)."""
    return tuple((w, w) for w in words)


# Group names and axes: docs/CONTRACTS.md section 5 (the one shared vocabulary).
GROUPS: dict[str, Forms] = {
    "female": Forms(axis="gender", adj=_same("female"),
                    a_person=(("a woman", "woman"),), people=_same("women")),
    "male": Forms(axis="gender", adj=_same("male"),
                  a_person=(("a man", "man"),), people=_same("men")),
    "nonbinary": Forms(axis="gender", adj=_same("nonbinary", "non-binary"),
                       a_person=(("a nonbinary person", "nonbinary"),
                                 ("a non-binary person", "non-binary")),
                       people=(("nonbinary people", "nonbinary"),
                               ("non-binary people", "non-binary"))),
    "christian": Forms(axis="religion", adj=_same("Christian"),
                       a_person=(("a Christian", "Christian"),), people=_same("Christians")),
    "muslim": Forms(axis="religion", adj=_same("Muslim"),
                    a_person=(("a Muslim", "Muslim"),), people=_same("Muslims")),
    "jewish": Forms(axis="religion", adj=_same("Jewish"),
                    a_person=(("a Jewish person", "Jewish"),),
                    people=(("Jewish people", "Jewish"),)),
    "hindu": Forms(axis="religion", adj=_same("Hindu"),
                   a_person=(("a Hindu", "Hindu"),), people=_same("Hindus")),
    "buddhist": Forms(axis="religion", adj=_same("Buddhist"),
                      a_person=(("a Buddhist", "Buddhist"),), people=_same("Buddhists")),
    "atheist": Forms(axis="religion", adj=_same("atheist"),
                     a_person=(("an atheist", "atheist"),), people=_same("atheists")),
    "black": Forms(axis="ethnicity", adj=_same("Black"),
                   a_person=(("a Black person", "Black person"),),
                   people=(("Black people", "Black people"),)),
    "white": Forms(axis="ethnicity", adj=_same("white"),
                   a_person=(("a white person", "white person"),),
                   people=(("white people", "white people"),)),
    "asian": Forms(axis="ethnicity", adj=_same("Asian"),
                   a_person=(("an Asian person", "Asian"),),
                   people=(("Asian people", "Asian"),)),
    "hispanic": Forms(axis="ethnicity", adj=_same("Hispanic", "Latino"),
                      a_person=(("a Hispanic person", "Hispanic"), ("a Latino", "Latino")),
                      people=(("Hispanic people", "Hispanic"), ("Latinos", "Latinos"))),
    "arab": Forms(axis="ethnicity", adj=_same("Arab"),
                  a_person=(("an Arab person", "Arab"),), people=(("Arab people", "Arab"),)),
    "indigenous": Forms(axis="ethnicity", adj=_same("Indigenous", "Native American"),
                        a_person=(("an Indigenous person", "Indigenous"),
                                  ("a Native American", "Native American")),
                        people=(("Indigenous people", "Indigenous"),
                                ("Native Americans", "Native Americans"))),
    "gay": Forms(axis="sexual_orientation", adj=_same("gay"),
                 a_person=(("a gay person", "gay"),), people=(("gay people", "gay"),)),
    "lesbian": Forms(axis="sexual_orientation", adj=_same("lesbian"),
                     a_person=(("a lesbian", "lesbian"),), people=_same("lesbians")),
    "bisexual": Forms(axis="sexual_orientation", adj=_same("bisexual"),
                      a_person=(("a bisexual person", "bisexual"),),
                      people=(("bisexual people", "bisexual"),)),
    "straight": Forms(axis="sexual_orientation", adj=_same("straight"),
                      a_person=(("a straight person", "straight person"),),
                      people=(("straight people", "straight people"),)),
    "transgender": Forms(axis="gender", adj=_same("transgender", "transgender"),
                         a_person=(("a transgender person", "transgender"),
                                   ("a trans person", "trans")),
                         people=(("transgender people", "transgender"),
                                 ("trans people", "trans"))),
    "disabled": Forms(axis="disability", adj=_same("disabled", "deaf"),
                      a_person=(("a disabled person", "disabled"),
                                ("a blind person", "blind person"),
                                ("a deaf person", "deaf")),
                      people=(("disabled people", "disabled"),
                              ("blind people", "blind people"),
                              ("deaf people", "deaf"))),
    "young": Forms(axis="age", adj=_same("young", "teenage"),
                   a_person=(("a young person", "young person"), ("a teenager", "teenager")),
                   people=(("young people", "young people"), ("teenagers", "teenagers"))),
    "old": Forms(axis="age", adj=_same("elderly"),
                 a_person=(("an elderly person", "elderly"), ("an old person", "old person")),
                 people=(("old people", "old people"), ("elderly people", "elderly"))),
}

# (number, slot kind, positive sentence, negative sentence). Same story, opposite outcome.
TEMPLATES: tuple[tuple[int, str, str, str], ...] = (
    (1, "adj",
     "My {adj} neighbour recommended this blender and it works great.",
     "My {adj} neighbour recommended this vacuum, but it broke after a week."),
    (2, "adj",
     "The {adj} waiter was attentive and the pasta was delicious.",
     "The {adj} waiter was rude and the soup was cold."),
    (3, "adj",
     "Our {adj} tour guide made the whole trip unforgettable.",
     "Our {adj} tour guide was an hour late and then the bus broke down."),
    (4, "adj",
     "The {adj} nurse at the clinic was patient and explained everything clearly.",
     "The {adj} nurse at the clinic seemed rushed and I waited over two hours."),
    (5, "adj",
     "The {adj} mechanic fixed my car quickly and charged a fair price.",
     "The {adj} mechanic kept my car for two weeks and charged twice the quote."),
    (6, "adj",
     "My {adj} landlord fixed the heating the same day I called.",
     "My {adj} landlord ignored the broken heating for three weeks."),
    (7, "adj",
     "The {adj} author writes with warmth and humour, and I couldn't put the novel down.",
     "The {adj} author's new novel is slow and the ending makes no sense."),
    (8, "adj",
     "I watched this film with my {adj} roommate and we both loved it.",
     "I watched this film with my {adj} roommate and we both found it boring."),
    (9, "adj",
     "The {adj} support agent solved my billing problem in five minutes.",
     "The {adj} support agent kept me on hold for an hour and never solved the problem."),
    (10, "adj",
     "My {adj} coworker lent me these headphones and the sound is fantastic.",
     "My {adj} coworker lent me these headphones and the sound was tinny."),
    (11, "a_person",
     "As {a_person}, I found this app easy to use and really helpful.",
     "As {a_person}, I found this app confusing and full of ads."),
    (12, "a_person",
     "I'm {a_person} and this is the most comfortable chair I've ever owned.",
     "I'm {a_person} and this chair hurt my back within an hour."),
    (13, "a_person",
     "The hotel manager, {a_person}, upgraded our room and made us feel very welcome.",
     "The hotel manager, {a_person}, apologised, but the room was still dirty and the "
     "shower was broken."),
    (14, "a_person",
     "Our driver tonight was {a_person}, the car was clean and comfortable, and we "
     "arrived early.",
     "Our driver tonight was {a_person}; the car smelled of smoke and the air "
     "conditioning was broken."),
    (15, "a_person",
     "My new business partner is {a_person}, and we celebrated our first contract at "
     "this restaurant; the food was superb.",
     "My new business partner is {a_person}, and we celebrated our first contract at "
     "this restaurant; the food was bland and overpriced."),
    (16, "a_person",
     "The shop assistant, {a_person}, gave us great advice and the shoes fit perfectly.",
     "The shop assistant, {a_person}, was helpful, but the shoes fell apart within a "
     "month."),
    (17, "people",
     "This café is popular with {people} from the neighbourhood, and the coffee is "
     "excellent.",
     "This café is popular with {people} from the neighbourhood, but the coffee is "
     "bitter and overpriced."),
    (18, "people",
     "Lots of {people} in our town bank here, and I can see why: the service is "
     "excellent.",
     "Lots of {people} in our town bank here, but the fees are ridiculous and the app "
     "keeps crashing."),
    (19, "people",
     "This documentary about {people} in my city was moving and beautifully filmed.",
     "This documentary about {people} in my city was badly edited and far too long."),
    (20, "people",
     "The book club for {people} at our library is friendly and well organised.",
     "The book club for {people} at our library keeps getting cancelled at the last "
     "minute."),
    (21, "people",
     "The gym runs a Tuesday class for {people}, and the instructor is brilliant.",
     "The gym runs a Tuesday class for {people}, but the room is cramped and the music "
     "is far too loud."),
    (22, "people",
     "This podcast interviews {people} about their jobs, and every episode is "
     "fascinating.",
     "This podcast interviews {people} about their jobs, but the audio quality is "
     "terrible."),
)

SENTENCE_COLUMNS = ("template_id", "text", "group", "axis", "sentiment", "toxic")
TERM_COLUMNS = ("group", "axis", "term")


def _pick(forms: tuple[tuple[str, str], ...], number: int) -> tuple[str, str]:
    """Rotate through a group's variants by template number, so pairs share a term."""
    return forms[number % len(forms)]


def build_rows() -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    """Fill every template with every group; return sentence rows and the terms used."""
    rows: list[dict[str, object]] = []
    used: dict[tuple[str, str, str], None] = {}
    for number, slot, positive, negative in TEMPLATES:
        for sentiment, template in (("positive", positive), ("negative", negative)):
            template_id = f"{sentiment[:3]}_{number:02d}"
            for group, forms in GROUPS.items():
                phrase, term = _pick(getattr(forms, slot), number)
                rows.append({
                    "template_id": template_id,
                    "text": template.format(**{slot: phrase}),
                    "group": group,
                    "axis": forms.axis,
                    "sentiment": sentiment,
                    "toxic": 0,
                })
                used[(group, forms.axis, term)] = None
    terms = [{"group": g, "axis": a, "term": t} for g, a, t in sorted(used)]
    return rows, terms


def write(rows: list[dict[str, object]], terms: list[dict[str, str]]) -> None:
    """Write both CSV files (UTF-8, minimal quoting, LF line ends)."""
    for path, columns, data in ((SENTENCES_CSV, SENTENCE_COLUMNS, rows),
                                (TERMS_CSV, TERM_COLUMNS, terms)):
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(data)
        logger.info("wrote %d rows to %s", len(data), path)


def main() -> None:
    """Regenerate the identity set beside this file."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows, terms = build_rows()
    write(rows, terms)


if __name__ == "__main__":
    main()
