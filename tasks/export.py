"""Export: the challenger as ONNX (fp32 and dynamic int8), scoring and top-K inside the graph.

Graph: item_ids int64 (batch, max_len), left-padded -> scores float32 (batch, K),
items int64 (batch, K) (internal indices; `items.json` maps index i to item id i-1).
With `export.exclude_seen` (params.yaml) the graph never recommends an item of its input window;
a row with fewer than K other items ends in -inf scores, which the caller drops.
Parity against torch on the day's holdout histories: mean top-K overlap and max
|score difference|; fp32 must pass or the export fails; int8 that falls short is
recorded as not servable rather than failing the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.seqrec import SeqRecModel, TopKScorer
from tasks.common import GateFailed, Layout, atomic_dir, write_json
from tasks.history import left_pad
from tasks.params import step_cli

LOG = logging.getLogger(__name__)
# the dynamo exporter warns once per torchvision op it could register; the model has none
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_FILE = "export.json"


@dataclass(frozen=True)
class Parity:
    variant: str
    overlap: float  # mean |top-K(torch) ∩ top-K(onnx)| / K
    max_abs_diff: float  # over matching positions' scores
    passed: bool


def export_onnx(model: SeqRecModel, out: Path, top_k: int, opset: int, exclude_seen: bool = False) -> None:
    scorer = TopKScorer(model.eval(), top_k, exclude_seen).eval()
    example = torch.ones(2, model.config.max_len, dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        scorer,
        (example,),
        str(out),
        input_names=["item_ids"],
        output_names=["scores", "items"],
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        dynamo=True,
        verbose=False,
        external_data=False,  # one self-contained file: the registry checksums files, not folders
    )


def quantize_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepped = out.with_name("prepped.onnx")
    quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)  # symbolic inference fails on this graph
    quantize_dynamic(str(prepped), str(out), weight_type=QuantType.QInt8)  # (its INFO chatter: common.ROOT_CHATTY)
    prepped.unlink()


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), opts, providers=providers)


def encode_histories(histories: list[list[str]], item_ids: list[str], max_len: int) -> np.ndarray:
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    return np.stack([left_pad(np.array([index[i] for i in h if i in index], np.int64), max_len) for h in histories])


def torch_top_k(model: SeqRecModel, inputs: np.ndarray, top_k: int, exclude_seen: bool) -> tuple[np.ndarray, ...]:
    """(scores, items) as torch serves them: what each graph's parity is checked against."""
    scorer = TopKScorer(model.eval(), top_k, exclude_seen).eval()
    with torch.inference_mode():
        return tuple(t.numpy() for t in scorer(torch.from_numpy(inputs)))


def parity(
    reference: tuple[np.ndarray, np.ndarray],
    onnx_path: Path,
    inputs: np.ndarray,
    variant: str,
    min_overlap: float,
    max_abs_diff: float | None,
) -> Parity:
    """Top-K agreement of the ONNX graph with torch's (scores, items) on `inputs` (`torch_top_k`). Only
    recommendable entries count: with exclude_seen a user who has seen nearly everything gets fewer than K
    (the rest score -inf, in any order), and a differing count of them is a mismatch."""
    t_scores, t_items = reference
    o_scores, o_items = session(onnx_path).run(None, {"item_ids": inputs})
    t_ok, o_ok = np.isfinite(t_scores), np.isfinite(o_scores)
    overlap = float(np.mean([len(set(a[fa]) & set(b[fb])) / max(fa.sum(), fb.sum(), 1)
                             for a, b, fa, fb in zip(t_items, o_items, t_ok, o_ok, strict=True)]))  # fmt: skip
    same = t_ok.sum(1) == o_ok.sum(1)  # rows with as many recommendable entries; the others already cost overlap
    gaps = np.abs(np.where(t_ok, t_scores, 0) - np.where(o_ok, o_scores, 0))[same]  # sorted descending: aligned
    diff = float(gaps.max()) if gaps.size else 0.0
    ok = overlap >= min_overlap and (max_abs_diff is None or diff <= max_abs_diff)
    return Parity(variant, round(overlap, 5), diff, ok)


def spread(n: int, k: int) -> np.ndarray:
    """`k` row indices evenly spread over `n` rows (every row if there are no more than `k`): a fixed sample,
    so a re-run checks the same rows."""
    return np.arange(n) if n <= k else np.unique(np.linspace(0, n - 1, k).round().astype(int))


def export(model_dir: Path, out_dir: Path, inputs: np.ndarray, params: dict) -> dict:
    """Write model.onnx + model.int8.onnx into out_dir (atomically) and return the parity report."""
    model = SeqRecModel.load(model_dir)
    k, exclude_seen = params["top_k"], params["exclude_seen"]
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        export_onnx(model, tmp / FP32_FILE, k, params["opset"], exclude_seen)
        quantize_int8(tmp / FP32_FILE, tmp / INT8_FILE)
        seconds = time.perf_counter() - t0
        reference = torch_top_k(model, inputs, k, exclude_seen)
        fp32 = parity(
            reference, tmp / FP32_FILE, inputs, "fp32", params["fp32_min_overlap"], params["fp32_max_abs_diff"]
        )
        int8 = parity(reference, tmp / INT8_FILE, inputs, "int8", params["int8_min_overlap"], None)
        report = {
            "seconds": round(seconds, 3),
            "inputs": len(inputs),
            "top_k": k,
            "exclude_seen": exclude_seen,  # what the graph serves; tasks/benchmark.py times the same
            "fp32": asdict(fp32),
            "int8": asdict(int8),
            "size_bytes": {"fp32": (tmp / FP32_FILE).stat().st_size, "int8": (tmp / INT8_FILE).stat().st_size},
        }
        write_json(tmp / EXPORT_FILE, report)
        LOG.info("export: ONNX fp32 %d bytes (parity overlap %s, max |diff| %.2e), int8 %d bytes (overlap %s), %.1f s",
                 report["size_bytes"]["fp32"], fp32.overlap, fp32.max_abs_diff, report["size_bytes"]["int8"],
                 int8.overlap, seconds)  # fmt: skip
        if not fp32.passed:
            raise GateFailed(
                f"ONNX fp32 export does not match torch: overlap {fp32.overlap} (min {params['fp32_min_overlap']}),"
                f" max |diff| {fp32.max_abs_diff:.2e} (max {params['fp32_max_abs_diff']}); not promoting"
            )
    return report


def parity_inputs(
    events, day, params: dict, item_ids: list[str], max_len: int, rows: int | None = None, fallback: int = 64
) -> np.ndarray:
    """`rows` of the day's holdout histories (export.parity_rows by default; evenly spread, all if fewer),
    encoded; falls back to recent user sequences if the day is empty."""
    from tasks.evaluate import build_holdout

    hold = build_holdout(events, day, params["evaluate"]["holdout_fraction"], max_len)
    histories = hold.histories or [g.tolist() for _, g in events.groupby("user_id")["item_id"]][-fallback:]
    picked = spread(len(histories), rows or params["export"]["parity_rows"])
    return encode_histories([histories[i] for i in picked], item_ids, max_len)


def run(day: dt.date, params: dict, layout: Layout) -> dict:
    from tasks.history import load_events
    from tasks.units import model_items

    challenger = layout.run(day) / "challenger"
    inputs = parity_inputs(load_events(layout, day), day, params, model_items(challenger), params["train"]["max_len"])
    return export(challenger, layout.run(day) / "onnx", inputs, params["export"])


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)
    report = run(day, params, Layout.default())
    print(json.dumps({k: report[k] for k in ("fp32", "int8")}))


if __name__ == "__main__":
    main()
