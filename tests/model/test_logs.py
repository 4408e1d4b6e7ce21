"""What a task log shows: the figures at INFO (training progress among them), and nothing at ERROR
level that is not an error: no third-party progress bar on stderr, no optional-import warning."""

from __future__ import annotations

import logging

import numpy as np
import torch

from models.seqrec import SeqRecConfig, SeqRecModel


def test_training_logs_its_progress_at_info(caplog):
    from tasks.train import Recipe, fit

    model = SeqRecModel(SeqRecConfig(n_items=30, max_len=8, hidden_size=16, num_layers=1, num_heads=2))
    examples = [(np.arange(1, 9), np.arange(2, 10))] * 20
    with caplog.at_level(logging.INFO, logger="tasks.train"):
        fit(model, examples, Recipe(2, 8, 1e-3), 0, torch.device("cpu"), progress=True)
    epochs = [r.getMessage() for r in caplog.records if "done, mean loss" in r.getMessage()]
    assert len(epochs) == 2 and epochs[0].startswith("training: epoch 1/2 done, mean loss ")
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_loading_the_text_model_prints_no_progress_bar(capfd):
    from models.text import embed_texts

    embed_texts(["Toy Story (1995) Animation|Children's|Comedy"])
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err, err[-500:]


def test_onnx_export_warns_about_nothing(tmp_path, caplog):
    from tasks.export import export_onnx

    torch.manual_seed(0)
    model = SeqRecModel(SeqRecConfig(n_items=30, max_len=8, hidden_size=16, num_layers=1, num_heads=2)).eval()
    with caplog.at_level(logging.WARNING):
        export_onnx(model, tmp_path / "model.onnx", top_k=5, opset=18)
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in noisy if "torchvision" in m], noisy


def test_third_party_chatter_stays_out_of_task_logs(caplog):
    """GX's decorator registry, the ONNX rewriter and matplotlib talk at INFO: not in a task log."""
    import warnings

    from tasks.common import quiet_third_party_logs

    quiet_third_party_logs()
    with caplog.at_level(logging.INFO):
        for name in ("great_expectations._docs_decorators", "onnxscript.rewriter", "matplotlib.category"):
            logging.getLogger(name).info("internal detail")
        logging.getLogger("tasks.validate").info("validate 1998-03-01: 192 events")
    assert [r.name for r in caplog.records] == ["tasks.validate"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet_third_party_logs()
        warnings.warn("This pattern is interpreted as a regular expression, and has match groups.", UserWarning, 1)
    assert not seen
