"""The recommender: causal, padding-invariant, persists without pickle, grows its catalogue,
learns, and exports to ONNX that matches torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.seqrec import BLOCKS, SeqRecConfig, SeqRecModel, TopKScorer
from tasks.train import Recipe, fit, mapped_rows, text_init_rows

CFG = SeqRecConfig(n_items=60, max_len=12, hidden_size=32, num_layers=2, num_heads=2, dropout=0.0)


@pytest.fixture(params=BLOCKS)
def model(request):
    torch.manual_seed(0)
    return SeqRecModel(SeqRecConfig(**{**vars(CFG), "block": request.param})).eval()


def test_an_unknown_block_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown transformer block 'ligrr': use one of gpt2, ligr"):
        SeqRecConfig(n_items=10, block="ligrr")


def test_ligr_blocks_gate_their_residuals_and_keep_gpt2_module_names():
    torch.manual_seed(0)
    model = SeqRecModel(SeqRecConfig(**{**vars(CFG), "block": "ligr"}))
    names = set(model.state_dict())
    for i in range(CFG.num_layers):  # the names `top` and LoRA (tasks/train.py) select by
        assert {f"backbone.h.{i}.attn.c_attn.weight", f"backbone.h.{i}.mlp.c_fc.weight",
                f"backbone.h.{i}.mlp.c_proj.weight", f"backbone.h.{i}.gate_attn.weight",
                f"backbone.h.{i}.gate_mlp.weight"} <= names  # fmt: skip
    block = model.backbone.h[0]
    assert block.mlp.c_fc.weight.shape == (32, 2 * 4 * 32)  # gate and up of SwiGLU, inner 4 x hidden
    with torch.no_grad():  # a gate shut at both branches: the block passes its input through unchanged
        for gate in (block.gate_attn, block.gate_mlp):
            gate.weight.zero_()
            gate.bias.fill_(-1e4)
    x = torch.randn(2, 12, 32)
    torch.testing.assert_close(block(x, attention_mask=None), x)


@pytest.mark.parametrize("layers", [1, 2])
def test_last_state_is_the_last_position_of_the_full_forward(model, layers):
    """The served graph's shortcut (the last block at the last position only) computes what the whole
    forward does there: for full, short, one-item and empty windows, and for a batch cut short."""
    torch.manual_seed(1)
    model = SeqRecModel(SeqRecConfig(**{**vars(model.config), "num_layers": layers})).eval()
    x = torch.randint(1, CFG.n_items, (5, CFG.max_len))
    x[1, :7] = 0
    x[2, :-1] = 0
    x[3] = 0
    with torch.inference_mode():
        for ids in (x, x[:, 4:]):
            torch.testing.assert_close(model.last_state(ids), model(ids)[:, -1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("trainable", ["top", "lora"])
def test_ligr_trains_under_top_and_lora_and_merges_back(trainable):
    """LoRA finds SwiGLU's layers as it finds GPT-2's; merged back, the model computes what the adapted
    one did, with the plain model's weights."""
    from tasks.train import _merge_lora, _set_trainable

    torch.manual_seed(0)
    model = SeqRecModel(SeqRecConfig(**{**vars(CFG), "block": "ligr"}))
    plain = set(model.state_dict())
    model = _set_trainable(model, trainable, 4)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    if trainable == "lora":
        assert any("mlp.c_fc.lora_A" in n for n in trained) and any("mlp.c_proj.lora_B" in n for n in trained)
        with torch.no_grad():  # LoRA starts as a no-op (B = 0): give it something to merge
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(std=0.05)
    else:
        assert all(n.startswith(("item_emb", "backbone.h.1.", "backbone.ln_f")) for n in trained)
    model.eval()
    x = torch.randint(1, 60, (3, 12))
    with torch.no_grad():
        before = model(x)
    _merge_lora(model)
    assert set(model.state_dict()) == plain
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)


def test_causal_future_items_do_not_change_the_past(model):
    x = torch.randint(1, 60, (2, 12))
    y = x.clone()
    y[:, 8:] = torch.randint(1, 60, (2, 4))
    with torch.inference_mode():
        assert torch.allclose(model(x)[:, :8], model(y)[:, :8], atol=1e-5)


def test_padding_is_masked_and_never_recommended(model):
    """Left-padded rows (queries that may attend to nothing) stay finite; padding scores -inf;
    and the last state depends only on real items: changing a padded history's real items changes it."""
    seq = torch.tensor([[0, 0, 0, 0, 0, 0, 5, 9, 13, 2, 7, 30], [0] * 11 + [4]])
    with torch.inference_mode():
        states = model(seq)
        scores = model.last_scores(seq)
    assert torch.isfinite(states).all()
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()
    other = seq.clone()
    other[0, 6] = 6
    assert not torch.allclose(model.last_scores(other)[0], scores[0])


def test_training_logits_skip_padding_with_the_same_loss_and_gradients(model):
    """Training's cross-entropy over `item_logits` (no padding column) equals the one over `scores`
    (padding at -inf): same loss, same item-embedding gradient, padding row untouched."""
    x = torch.randint(1, 60, (4, 12))
    y = torch.randint(1, 60, (4, 12))
    states = model(x)
    masked = torch.nn.functional.cross_entropy(model.scores(states).flatten(0, 1), y.flatten())
    (g_masked,) = torch.autograd.grad(masked, model.item_emb.weight)
    states = model(x)
    sliced = torch.nn.functional.cross_entropy(model.item_logits(states).flatten(0, 1), y.flatten() - 1)
    (g_sliced,) = torch.autograd.grad(sliced, model.item_emb.weight)
    torch.testing.assert_close(sliced, masked)
    torch.testing.assert_close(g_sliced, g_masked)
    assert model.item_logits(states).shape == (4, 12, 59)


def test_empty_history_matches_between_torch_and_onnx(model, tmp_path):
    """A user with no known items (all padding) gets the same recommendations from ONNX as from torch."""
    from tasks.export import FP32_FILE, export_onnx, parity, torch_top_k

    export_onnx(model, tmp_path / FP32_FILE, top_k=10, opset=18)
    x = np.zeros((2, 12), dtype=np.int64)
    x[1, -1] = 5
    assert parity(torch_top_k(model, x, 10, False), tmp_path / FP32_FILE, x, "fp32", 1.0, 1e-4).passed


def test_served_graph_never_recommends_the_input_window(model, tmp_path):
    """export.exclude_seen: torch and ONNX leave out the window's items; a user with fewer unseen items
    than K gets those first and -inf after them, and parity counts only the recommendable entries."""
    from tasks.export import FP32_FILE, export_onnx, parity, torch_top_k

    k = 50  # 59 items, 12 of them in a full window: 47 recommendable, 3 slots left at -inf
    export_onnx(model, tmp_path / FP32_FILE, top_k=k, opset=18, exclude_seen=True)
    x = np.zeros((3, 12), dtype=np.int64)
    x[0] = np.arange(1, 13)  # a full window
    x[1, -3:] = [7, 7, 30]  # a short one, with a repeat
    assert parity(torch_top_k(model, x, k, True), tmp_path / FP32_FILE, x, "fp32", 1.0, 1e-4).passed
    with torch.inference_mode():
        scores, items = TopKScorer(model, k, exclude_seen=True)(torch.from_numpy(x))
        plain_scores, plain_items = TopKScorer(model, k)(torch.from_numpy(x[2:]))
    for row, s, window in zip(items, scores, x, strict=True):
        served = row[torch.isfinite(s)].tolist()
        assert not set(served) & set(window.tolist()) and 0 not in served
        assert len(served) == min(k, 59 - len(set(window.tolist()) - {0}))
    assert torch.isinf(scores[0, -3:]).all() and torch.isfinite(scores[1]).all()
    torch.testing.assert_close(scores[2], plain_scores[0])  # nothing seen: the plain top-K
    assert items[2].tolist() == plain_items[0].tolist()


def test_serving_drops_the_slots_a_seen_filter_leaves_empty(model, tmp_path):
    """serve.model: a user whose window leaves fewer than K items gets only those, never a seen one."""
    from serve.model import Model, session
    from tasks.export import FP32_FILE, export_onnx

    export_onnx(model, tmp_path / FP32_FILE, top_k=50, opset=18, exclude_seen=True)
    items = [f"m{i}" for i in range(1, 60)]
    served = Model("v", None, FP32_FILE, session(tmp_path / FP32_FILE), items,
                   {m: i + 1 for i, m in enumerate(items)}, 12, 50, True)  # fmt: skip
    history = items[:12]
    scores, idx = served.score(served.encode([history]).inputs)
    recs = served.top(scores[0], idx[0], 50, None)
    assert len(recs) == 59 - 12 and not {m for m, _ in recs} & set(history)
    assert all(np.isfinite(score) for _, score in recs)


def test_save_load_roundtrip_uses_safetensors(model, tmp_path):
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.safetensors"]
    again = SeqRecModel.load(tmp_path)
    x = torch.randint(1, 60, (3, 12))
    torch.testing.assert_close(model.last_scores(x), again.last_scores(x))


def test_grow_items_keeps_trained_rows(model):
    before = model.item_emb.weight.detach().clone()
    model.grow_items(5, torch.ones(5, 32))
    assert model.config.n_items == 65 and model.item_emb.weight.shape == (65, 32)
    torch.testing.assert_close(model.item_emb.weight[:60], before)
    torch.testing.assert_close(model.item_emb.weight[60:], torch.ones(5, 32))


def test_text_init_and_ridge_map_put_new_items_near_their_text_neighbours():
    """A new item whose text equals a known item's gets (nearly) that item's trained row."""
    torch.manual_seed(0)
    feats = {f"i{i}": torch.nn.functional.normalize(torch.randn(384), dim=0) for i in range(200)}
    rows = text_init_rows([f"i{i}" for i in range(200)], feats, 32, std=0.02)
    assert rows.shape == (200, 32) and rows.std().item() == pytest.approx(0.02, rel=0.05)
    feats["new"] = feats["i7"].clone()
    new = mapped_rows(["new"], [f"i{i}" for i in range(200)], rows, feats)
    sims = torch.nn.functional.cosine_similarity(new, rows)
    assert sims.argmax().item() == 7


def test_training_reduces_loss_on_a_learnable_pattern():
    """Sequences that always continue i -> i+1 are learned in a few epochs (loss falls a lot)."""
    torch.manual_seed(0)
    model = SeqRecModel(SeqRecConfig(**vars(CFG)))
    starts = np.random.default_rng(0).integers(1, 40, 256)
    seqs = [np.arange(s, s + 13) for s in starts]
    examples = [(s[:-1], s[1:]) for s in seqs]
    _, first = fit(model, examples, Recipe(1, 32, 3e-3), 0, torch.device("cpu"), progress=False)
    _, last = fit(model, examples, Recipe(15, 32, 3e-3), 0, torch.device("cpu"), progress=False)
    assert last < first * 0.5


def test_onnx_export_matches_torch(model, tmp_path, caplog):
    """fp32 ONNX: same top-10 and scores within 1e-4; int8 exports and mostly agrees; the quantizer's
    per-tensor INFO lines stay out of the log (issue 30)."""
    import logging

    from tasks.common import quiet_third_party_logs
    from tasks.export import FP32_FILE, INT8_FILE, export_onnx, parity, quantize_int8, torch_top_k

    export_onnx(model, tmp_path / FP32_FILE, top_k=10, opset=18)
    quiet_third_party_logs()  # what every task and command line does first
    with caplog.at_level(logging.INFO):
        quantize_int8(tmp_path / FP32_FILE, tmp_path / INT8_FILE)
    assert not [r for r in caplog.records if "onnxruntime" in r.pathname and r.levelno < logging.WARNING]
    x = np.random.default_rng(0).integers(0, 60, (16, 12)).astype(np.int64)
    x[:, :3] = 0
    fp32 = parity(torch_top_k(model, x, 10, False), tmp_path / FP32_FILE, x, "fp32", 0.99, 1e-4)
    int8 = parity(torch_top_k(model, x, 10, False), tmp_path / INT8_FILE, x, "int8", 0.5, None)
    assert fp32.passed and fp32.overlap == 1.0
    assert int8.passed
    _scores, items = TopKScorer(model, 10)(torch.from_numpy(x[:1]))
    assert items.shape == (1, 10) and (items > 0).all()


def test_a_prefix_cache_is_exact_only_on_the_windows_own_keys(model):
    """bench/prefix_cache.py's one-position step (issue 27): on the keys and values the window itself
    computes it gives the served top-K (full, short and empty windows); on the previous request's, where
    right-aligned learned positions put every item one slot further right, it does not."""
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    from prefix_cache import exactness

    torch.manual_seed(2)
    with torch.no_grad():  # positions and attention that matter, as a trained model's do
        model.backbone.wpe.weight.normal_(0, 1.0)
        for block in model.backbone.h:
            block.attn.c_attn.weight.normal_(0, 1.0)
    x = torch.randint(1, CFG.n_items, (6, CFG.max_len))
    x[1, :7] = 0
    x[2, :-1] = 0
    for exclude_seen in (False, True):
        report = exactness(TopKScorer(model, 5, exclude_seen).eval(), x.numpy())
        assert report["own_window_cache"]["top_k_overlap"] == 1.0
        assert report["own_window_cache"]["max_abs_diff"] < 1e-5
        assert report["cached_keys_max_abs_diff"] > 0.1
        assert report["previous_request_cache"]["max_abs_diff"] > 1e-2
