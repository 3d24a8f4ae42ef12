"""Assemble the hand-written toxicity parts into ``toxicity.csv`` and check them.

Why a script: the rows are written by hand in one plain-text file per ``kind``
(``parts/<kind>.txt``), which is easy to review and to extend in a diff. This script turns
them into the one CSV the guard trains on, applies the few labelling rules that must hold
for every row (so they cannot drift by hand), removes duplicates, and refuses to write a
file that breaks the contract.

Part file format (UTF-8, one example per line):

* ``# labels: toxicity,insult`` -- the default labels of every row in the file
  (``# labels: none`` for non-toxic files). Other lines starting with ``# `` (a hash and a
  space) are comments; ``#TBT ...`` is a row.
* ``{threat,obscene} text`` -- a leading brace group *adds* labels to the defaults;
  ``{=threat} text`` *replaces* them (``toxicity`` is still implied).
* everything else on the line is the text, verbatim.

Rules applied:

* ``toxicity`` is 1 whenever any finer label is 1.
* a toxic row containing a common swear word gets ``obscene`` = 1 (Jigsaw's sense of the
  category: vulgar language), so multi-labels are consistent across kinds.
* an identity attack that calls the group names ("lazy", "parasites", "disgusting", ...)
  also gets ``insult`` = 1.
* a non-toxic row must not contain a swear word (the generator stops instead).

Usage (from the repository root)::

    .venv/bin/python models/data/toxicity/assemble.py          # write toxicity.csv + counts
    .venv/bin/python models/data/toxicity/assemble.py --check  # verify the committed CSV
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES, is_comment_line

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

LABELS: tuple[str, ...] = TOXICITY_CATEGORIES  # the guard's six categories, in its output order
COLUMNS: tuple[str, ...] = ("text", *LABELS, "kind")
HERE = Path(__file__).resolve().parent
PARTS = HERE / "parts"
CALIBRATION = HERE / "calibration" / "benign_calibration.txt"
OUT = HERE / "toxicity.csv"
README = HERE / "README.md"
_COUNTS_START = "<!-- counts:start (written by assemble.py, do not edit) -->"
_COUNTS_END = "<!-- counts:end -->"

# Common English swear words / vulgar terms. Word-start match so inflections count
# ("fucking", "shitty", "bitches"); anatomical and medical terms are deliberately absent.
_SWEAR = re.compile(
    r"\b(fuck\w*|f\*+k\w*|motherfuck\w*|shit\w*|bullshit\w*|bitch\w*|bastard\w*|"
    r"asshole\w*|arsehole\w*|ass|asses|dumbass\w*|jackass\w*|dick|dicks|dickhead\w*|"
    r"piss|pissed|pissing|cunt\w*|twat\w*|wanker\w*|prick|pricks|cock|cocks|cocksucker\w*|"
    r"crap|crappy|damn\w*|goddamn\w*|bollocks|slut\w*|whore\w*|douche\w*|tits)\b",
    re.IGNORECASE,
)
# Name-calling words. An identity attack that uses one of them also insults the group
# (Jigsaw's raters nearly always mark such rows insult + identity_hate); applied only to
# identity attacks, where the target is people, so "talk dirty" or "a sick song" are safe.
_GROUP_INSULT = re.compile(
    r"\b(idiots?|morons?|moronic|stupid|dumb|dumbest|losers?|pathetic|worthless|clowns?|trash|"
    r"scum|vermin|parasites?|freaks?|pigs?|savages?|filthy|dirty|disgusting|ugly|imbeciles?|"
    r"brainless|brain-dead|braindead|subhuman|animals|leech(es)?|degenerates?|perverts?|"
    r"inbred|dimwits?|fools?|lazy|primitive|backward|abominations?|garbage|rats|plague|"
    r"cancer|sick|thugs?|brutes?|creeps?|weirdos?|snakes?|liars?|zombies?|useless)\b",
    re.IGNORECASE,
)
MIN_GROUP_ROWS = 10  # per identity group, on each side
_PREFIX = re.compile(r"^\{(=?)([a-z_,\s]*)\}\s*")


class PartError(ValueError):
    """A part file line that cannot be turned into a row; the message names file and line."""


def has_swear(text: str) -> bool:
    """True when ``text`` contains a word from the swear list (used by the rules above)."""
    return _SWEAR.search(text) is not None


def _parse_labels(spec: str, where: str) -> set[str]:
    names = {s.strip() for s in spec.split(",") if s.strip()}
    if names == {"none"}:
        return set()
    unknown = names - set(LABELS)
    if unknown:
        raise PartError(f"{where}: unknown label(s) {sorted(unknown)}; use {list(LABELS)}")
    return names


def read_part(path: Path) -> list[dict[str, object]]:
    """Read one ``parts/<kind>.txt`` file into row dicts with the rules applied."""
    kind = path.stem
    defaults: set[str] | None = None
    rows: list[dict[str, object]] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path.name}:{lineno}"
        line = raw.strip()
        if not line:
            continue
        if is_comment_line(line):
            m = re.match(r"#\s*labels:\s*(.*)$", line)
            if m:
                defaults = _parse_labels(m.group(1), where)
            continue
        if defaults is None:
            raise PartError(f"{where}: no '# labels: ...' header before the first row")
        labels = set(defaults)
        m = _PREFIX.match(line)
        if m:
            extra = _parse_labels(m.group(2), where)
            labels = extra if m.group(1) == "=" else labels | extra
            line = line[m.end():]
        text = line.strip()
        if not text:
            raise PartError(f"{where}: empty text after the label prefix")
        toxic = bool(labels)
        if toxic and has_swear(text):
            labels.add("obscene")
        if "identity_attack" in labels and _GROUP_INSULT.search(text):
            labels.add("insult")
        if toxic:
            labels.add("toxicity")
        elif has_swear(text):
            raise PartError(
                f"{where}: non-toxic row contains a swear word ({_SWEAR.search(text).group(0)!r}); "
                "reword it or move it to a toxic kind"
            )
        row: dict[str, object] = {"text": text}
        row.update({lab: int(lab in labels) for lab in LABELS})
        row["kind"] = kind
        rows.append(row)
    return rows


def _norm(text: str) -> str:
    """Key for de-duplication: case, punctuation and spacing do not make a new example."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def assemble(parts_dir: Path = PARTS) -> tuple[list[dict[str, object]], list[str]]:
    """All rows of all part files, de-duplicated (first occurrence wins), and the dropped texts."""
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    dropped: list[str] = []
    for path in sorted(parts_dir.glob("*.txt")):
        for row in read_part(path):
            key = _norm(str(row["text"]))
            if key in seen:
                dropped.append(f"{path.name}: {row['text']}")
                continue
            seen.add(key)
            rows.append(row)
    return rows, dropped


def calibration_overlap(training_keys: set[str], path: Path | None = None) -> list[str]:
    """Calibration texts that are also training texts (after :func:`_norm`), in file order.

    The calibration set's guarantee (a bound on the false-block rate of text like it) holds
    only for text the guard never trained on.
    """
    path = CALIBRATION if path is None else path
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    texts = [line.strip() for line in lines if line.strip() and not is_comment_line(line.strip())]
    return [text for text in texts if _norm(text) in training_keys]


def write_csv(rows: list[dict[str, object]], out: Path = OUT) -> None:
    out.write_text(_csv_text(rows), encoding="utf-8")


def check(out: Path = OUT) -> str:
    """Validate the CSV with pandas and return a printable summary; raises on a violation."""
    import pandas as pd

    df = pd.read_csv(out)
    problems: list[str] = []
    if tuple(df.columns) != COLUMNS:
        problems.append(f"columns {list(df.columns)} != {list(COLUMNS)}")
    for lab in LABELS:
        bad = ~df[lab].isin([0, 1])
        if bad.any():
            problems.append(f"{lab}: {int(bad.sum())} values not 0/1")
    finer = df[list(LABELS[1:])].max(axis=1)
    if (finer > df["toxicity"]).any():
        problems.append(f"{int((finer > df['toxicity']).sum())} rows have a finer label without toxicity")
    if df["text"].isna().any() or (df["text"].str.strip() == "").any():
        problems.append("empty text")
    dup_exact = int(df["text"].duplicated().sum())
    dup_norm = int(df["text"].map(_norm).duplicated().sum())
    if dup_exact or dup_norm:
        problems.append(f"duplicates: {dup_exact} exact, {dup_norm} after normalisation")
    shared = calibration_overlap(set(df["text"].map(_norm)))
    if shared:
        problems.append(
            f"{len(shared)} calibration texts also appear in parts/ (after normalising), e.g. "
            f"{shared[0]!r}: the calibration set must stay apart from training; reword the calibration line"
        )
    clean = df[df["toxicity"] == 0]
    swear = clean["text"].map(has_swear)
    if swear.any():
        problems.append(f"{int(swear.sum())} non-toxic rows contain swear words")
    if problems:
        raise SystemExit("toxicity.csv check failed:\n  " + "\n  ".join(problems))

    words = df["text"].str.split().str.len()
    lines = [
        f"rows: {len(df)}  toxic: {int(df['toxicity'].sum())}  non-toxic: {int((df['toxicity'] == 0).sum())}",
        f"words per text: min {words.min()}  median {int(words.median())}  max {words.max()}",
        "",
        "per label (rows with label = 1):",
    ]
    lines += [f"  {lab:16s} {int(df[lab].sum())}" for lab in LABELS]
    lines += ["", "per kind (rows, and how many carry each label):"]
    by_kind = df.groupby("kind")[list(LABELS)].sum()
    by_kind.insert(0, "rows", df["kind"].value_counts())
    lines.append(by_kind.sort_values("rows", ascending=False).to_string())
    coverage = group_coverage(df)
    if coverage is not None:
        thin = coverage[(coverage["toxic"] < MIN_GROUP_ROWS) | (coverage["non_toxic"] < MIN_GROUP_ROWS)]
        if not thin.empty:
            raise SystemExit(
                f"toxicity.csv check failed: groups with fewer than {MIN_GROUP_ROWS} toxic or "
                f"non-toxic rows (write more rows naming them):\n{thin.to_string()}"
            )
        lines += ["", "identity groups (rows whose text the guardrails lexicon maps to the group):",
                  coverage.to_string()]
    lines += ["", "checks: parsed by pandas, labels 0/1, toxicity>=every finer label, "
              "no exact or normalised duplicates, no calibration text in training, "
              "no swear words in non-toxic rows, "
              f"every identity group in >= {MIN_GROUP_ROWS} toxic and non-toxic rows: OK"]
    return "\n".join(lines)


def group_coverage(df: pd.DataFrame) -> pd.DataFrame | None:
    """Toxic and non-toxic rows per identity group, matched by the runtime lexicon.

    Why the runtime lexicon (guardrails/data/identity_terms.yaml) and not a list of our own:
    the per-group windows and fairness figures see a text as "about" a group exactly when
    that lexicon says so, so coverage must be counted the same way. Returns None when
    guardrails is not importable (the data itself does not depend on it).
    """
    import pandas as pd

    try:
        from fairgate.guardrails.groups import Lexicon
    except ImportError:
        return None
    lexicon = Lexicon.from_yaml()
    found = df["text"].map(lexicon.compile().find)
    toxic = df["toxicity"] == 1
    rows = []
    for group in lexicon.groups:
        hit = found.map(lambda groups, g=group: g in groups)
        rows.append({"group": group, "toxic": int((hit & toxic).sum()),
                     "non_toxic": int((hit & ~toxic).sum())})
    return pd.DataFrame(rows).set_index("group")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only validate the existing CSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.check:
        try:
            rows, dropped = assemble()
        except PartError as exc:
            logger.error("error: %s", exc)
            return 2
        write_csv(rows)
        logger.info("wrote %s: %d rows (%d duplicates dropped)", OUT.relative_to(HERE.parents[2]), len(rows), len(dropped))
        for d in dropped:
            logger.info("  duplicate dropped: %s", d)
    summary = check()
    logger.info("%s", summary)
    if not args.check:
        if README.exists():
            update_readme(summary)
        return 0
    stale = _stale_outputs(summary)
    if stale:
        logger.error("error: %s -- run models/data/toxicity/assemble.py", "; ".join(stale))
        return 1
    logger.info("toxicity.csv and README.md counts match parts/: OK")
    return 0


def _csv_text(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _stale_outputs(summary: str) -> list[str]:
    """What no longer matches parts/: the CSV (hand-edited or not rebuilt) or the README counts."""
    stale: list[str] = []
    rows, _ = assemble()
    if OUT.read_text(encoding="utf-8") != _csv_text(rows):
        stale.append("toxicity.csv differs from what parts/ produce")
    if README.exists() and ("```text\n" + summary + "\n```") not in README.read_text(encoding="utf-8"):
        stale.append("README.md counts block is out of date")
    return stale


def update_readme(summary: str, readme: Path = README) -> bool:
    """Replace the counts block of README.md with ``summary``; True when the file changed.

    Why: the README's counts must be the computed ones, so they are written here rather
    than by hand, and re-running the script after editing a part keeps them in step.
    """
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(_COUNTS_START), text.find(_COUNTS_END)
    if start < 0 or end < start:
        return False
    new = text[: start + len(_COUNTS_START)] + "\n```text\n" + summary + "\n```\n" + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    raise SystemExit(main())
