"""The events data contract, one place for what a day's events must be (docs/data-guard.md).

- `user_id`, `item_id`: strings in canonical form: no surrounding or non-standard spaces, no
  control or invisible characters, NFC-normal, no full-width or mathematical look-alikes of ASCII, one
  script per id (no Cyrillic letter inside a Latin title), and numeric ids spelled the one way
  (`50`, never `050`, `50.0`, `+50` or Arabic-Indic digits);
- `rating`: a number, never null, in `validate.rating_min`..`rating_max`;
- `event_ts`: timezone-aware; any zone is accepted and converted to UTC.

What is only *encoded* differently is accepted and conformed before the checks and wherever
events are read (`conform`): dictionary-encoded (categorical) columns, any Parquet codec, any time
zone. What is *different* is refused by the checks, with the cause in words (`CAUSES`).

The words exports write for a missing value (`MISSING_SPELLINGS`: `NULL`, `n/a`, `None`, `\\N`, an empty
string, ...; any case, surrounding spaces ignored) are missing values in every text column of the events
and of the catalogue: a day with them is a day with nulls, and the report counts each spelling.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ID_COLUMNS = ("user_id", "item_id")
_NUMERIC = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")
_CANONICAL_NUMBER = re.compile(r"0|[1-9][0-9]*")
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "HEBREW", "ARABIC")


# what exports write for "no value" (SQL NULL, pandas/R NA, Excel #N/A, MySQL's \N, JSON's null, JavaScript's
# undefined), compared case-blind after trimming. Not "unknown": ML-100K has a real title and genre by that name.
MISSING_SPELLINGS = frozenset(
    ("", "null", "none", "nil", "nan", "na", "n/a", "#n/a", "<na>", "undefined", "(null)", "<null>", "\\n", "missing")
)


_LONGEST = 32  # a spelling with spaces around it is still short
_SPELLINGS = pa.array(sorted(MISSING_SPELLINGS))


# what str.strip() removes: Python's whitespace, so Arrow's trim (below) strips exactly what Python's would
_PY_SPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())


def missing_spellings(col: pd.Series) -> dict[str, int]:
    """{spelling: rows} of the missing-value spellings in a text column (a pass over its distinct values)."""
    if col.dtype != object and not pd.api.types.is_string_dtype(col.dtype):
        return {}
    uniques = _uniques(col)
    text = _as_text(uniques)
    if text is None:  # mixed cells (bytes, numbers, nested): one by one, text only
        short = uniques[[isinstance(v, str) and len(v) <= _LONGEST for v in uniques]]
        hits = short[short.str.strip().str.lower().isin(MISSING_SPELLINGS)].tolist()
    else:  # vectorised: millions of distinct ids in a 10M-event day
        words = pc.utf8_lower(pc.utf8_trim(text, characters=_PY_SPACE))
        hit = pc.and_(pc.less_equal(pc.utf8_length(text), _LONGEST), pc.is_in(words, _SPELLINGS))
        hit = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)  # then exactly as Python spells it:
        hits = [v for v in uniques[hit] if isinstance(v, str) and v.strip().lower() in MISSING_SPELLINGS]
    return {str(k): int(n) for k, n in col[spelled_as(col, set(hits))].value_counts().items()} if hits else {}


def _as_text(values: pd.Series) -> pa.Array | None:
    """The values as an Arrow string array, or None when some are not text."""
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _uniques(col: pd.Series) -> pd.Series:
    try:
        return pd.Series(col.dropna().unique())  # Arrow-backed for a text column: no copy into Python objects
    except TypeError:  # nested cells (lists, maps) are not hashable: only the text cells can be spellings
        return pd.Series(list({v for v in col if isinstance(v, str)}), dtype=object)


def spelled_as(col: pd.Series, words: set[str]) -> pd.Series:
    """Per row: is the cell one of `words`."""
    try:
        return col.isin(list(words))
    except TypeError:
        return col.map(lambda v: isinstance(v, str) and v in words)


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """The same rows with encoding differences removed: categorical columns as their values, the
    missing-value spellings of text columns as nulls, timezone-aware `event_ts` in UTC. Naive timestamps
    stay naive (the contract check refuses them)."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(out[col].cat.categories.dtype)
        if spelled := missing_spellings(out[col]):
            out[col] = out[col].astype(object).where(~spelled_as(out[col], set(spelled)), None)
    if "event_ts" in out and isinstance(out["event_ts"].dtype, pd.DatetimeTZDtype):
        out["event_ts"] = out["event_ts"].dt.tz_convert("UTC")
    return out


def _spaces(s: str) -> str | None:
    return "leading or trailing spaces" if s != s.strip() else None


def _invisible(s: str) -> str | None:
    for ch in s:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Co", "Cs") or (cat.startswith("Z") and ch != " "):
            return f"invisible or control character U+{ord(ch):04X}"
    return None


def _normal_form(s: str) -> str | None:
    if unicodedata.normalize("NFC", s) != s:
        return "not NFC-normal (decomposed accents: the same id spelled with other code points)"
    for ch in s:  # compatibility look-alikes of ASCII letters and digits (real titles keep e.g. "Alien³")
        if 0xFF01 <= ord(ch) <= 0xFF5E or 0x1D400 <= ord(ch) <= 0x1D7FF:
            return f"full-width or mathematical look-alike character {ch!r} (U+{ord(ch):04X})"
    return None


def _number(s: str) -> str | None:
    numeric = _NUMERIC.fullmatch(s) or all(c.isdigit() for c in s)  # the latter: digits of any script
    if numeric and not _CANONICAL_NUMBER.fullmatch(s):
        return "a number spelled non-canonically (leading zeros, sign, decimals or non-ASCII digits)"
    return None


def _one_script(s: str) -> str | None:
    scripts = {
        next((sc for sc in _SCRIPTS if unicodedata.name(ch, "").startswith(sc)), None) for ch in s if ch.isalpha()
    }
    scripts.discard(None)
    return f"mixes scripts ({', '.join(sorted(scripts))}): a look-alike character" if len(scripts) > 1 else None


_RULES = (_spaces, _invisible, _normal_form, _number, _one_script)
_ASCII_RULES = (_spaces, _number)  # printable ASCII has no invisible character, no other form, one script


def id_problem(value) -> str | None:
    """Why an id is not in canonical form, or None if it is (nulls have their own check)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    s = str(value)
    rules = _ASCII_RULES if s.isascii() and s.isprintable() else _RULES
    return next((problem for rule in rules if (problem := rule(s)) is not None), None)


def plainly_canonical(values: pd.Series) -> np.ndarray:
    """Per value, vectorised: printable ASCII, no surrounding space, and not a number spelled another way:
    canonical for certain (the ASCII rules, `_spaces` and `_number`, pass). False means "ask `id_problem`"."""
    text = _as_text(values)
    if text is None:
        return np.zeros(len(values), dtype=bool)
    numeric = pc.match_substring_regex(text, r"^[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?$")  # _NUMERIC on ASCII
    ok = pc.and_kleene(pc.string_is_ascii(text), pc.ascii_is_printable(text))
    ok = pc.and_kleene(ok, pc.greater(pc.binary_length(text), 0))
    ok = pc.and_kleene(ok, pc.equal(pc.utf8_trim(text, characters=" "), text))  # printable ASCII: only " " is space
    ok = pc.and_kleene(ok, pc.or_kleene(pc.invert(numeric), pc.match_substring_regex(text, r"^(0|[1-9][0-9]*)$")))
    return pc.fill_null(ok, False).to_numpy(zero_copy_only=False)


def id_problems(col: pd.Series) -> pd.Series:
    """Per row: the offending id with its problem (`'050': leading zeros…`), None where canonical."""
    uniques = pd.Series(col.dropna().unique())  # Arrow-backed for a text column: no copy into Python objects
    unsure = uniques[~plainly_canonical(uniques)]  # the rest are canonical: the rules run on these only
    bad = {v: f"{v!r}: {p}" for v in unsure if (p := id_problem(v)) is not None}
    out = pd.Series(None, index=col.index, dtype=object)
    if bad:
        hit = col.isin(list(bad))
        out[hit] = col[hit].map(bad)
    return out


def canonical_key(value: str) -> str:
    """The id `value` stands for once its spelling is canonical (compatibility forms folded, spaces and
    invisible characters dropped, numbers as integers): `050`, ` 50`, full-width digits and `50.0` are all `50`."""
    folded = unicodedata.normalize("NFKC", value)
    s = "".join(
        " " if unicodedata.category(ch)[0] == "Z" else ch for ch in folded if unicodedata.category(ch)[0] != "C"
    )
    s = s.strip()
    try:
        number = float(s) if _NUMERIC.fullmatch(s) else int(s)  # int() reads digits of any script
    except (ValueError, OverflowError):
        return s
    return str(int(number)) if float(number).is_integer() else s


def same_ids(col: pd.Series) -> pd.Series:
    """Per row: `'050' is the same id as '50'` where another distinct value of the column has the same
    canonical key (two catalogue rows for one item), None elsewhere."""
    values = [v for v in col.dropna().unique() if isinstance(v, str)]
    groups: dict[str, list[str]] = {}
    for v in values:
        groups.setdefault(canonical_key(v), []).append(v)
    clash = {v: [w for w in group if w != v] for group in groups.values() if len(group) > 1 for v in group}
    return col.map(lambda v: f"{v!r} is the same id as {clash[v][0]!r}" if v in clash else None).astype(object)


# the cause of each contract check's failure in words, for the report, the run log and the evidence
CAUSES = {
    "canonical_user_id": "user ids must be in canonical form (trimmed, NFC, one script, numbers as 50)",
    "canonical_item_id": "item ids must be in canonical form (trimmed, NFC, one script, numbers as 50)",
    "not_null_rating": "every event needs a rating; nulls are missing data, not a rating",
    "ts_timezone": "event_ts has no time zone: the contract is tz-aware timestamps (any zone, converted to UTC)",
    "ts_distinct": "every event of the day has the same timestamp: a placeholder, not event times",
    "type_event_ts": "event_ts must be a time-zone-aware timestamp column",
    "ts_in_day": "every event time must fall inside the day, in UTC",
    "unknown_items_share": "too many events are on items the catalogue lacks (`validate.max_unknown_item_share`)",
    "items_keep_in_use": "the catalogue must keep every item that had events in the trailing window",
    "items_canonical_item_id": "catalogue item ids must be in canonical form, like the events' (trimmed, NFC, one "
    "script, numbers as 50)",
    "items_unique_canonical_id": "two catalogue rows are one item once their ids are spelled canonically",
    "items_title": "every catalogue item needs a title (empty and missing-value spellings are missing)",
    "items_genres": 'genres are genre names joined by "|" (tasks/sources.py): no other separator, no empty or '
    "space-padded names",
}
