"""`repeat_score`: one learned score for the items already in the input window (models/seqrec.py).

Training adds it at each position for the items up to that position, scoring and the ONNX graph for the
window they are given; its sign is learned from the data, not set by a rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.seqrec import PAD, SeqRecConfig, SeqRecModel, TopKScorer
from tasks.train import Recipe, fit, param_groups, sampled_softmax

CFG = {"n_items": 40, "max_len": 10, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0}


def _model(repeat: bool = True) -> SeqRecModel:
    torch.manual_seed(0)
    return SeqRecModel(SeqRecConfig(**CFG, repeat_score=repeat)).eval()


def _ids() -> torch.Tensor:
    x = torch.zeros(3, 10, dtype=torch.long)
    x[0] = torch.arange(1, 11)
    x[1, -4:] = torch.tensor([7, 7, 30, 7])  # short, with repeats
    return x  # row 2: an empty history


@pytest.mark.parametrize("width", [10, 4], ids=["full-window", "bucketed"])
def test_seen_mask_holds_each_positions_prefix_and_nothing_later(width):
    """Also for a batch cut to its longest sequence (length bucketing), and over a few items only (the
    sampled softmax's columns, repeats among them)."""
    model, x = _model(), _ids()[:2, -width:]
    keep = x != PAD
    seen = model.seen_mask(model.seen_prefix(x, keep))
    rows = [(b, t) for b in range(2) for t in range(width) if keep[b, t]]
    assert seen.shape == (len(rows), 40)
    cols = torch.tensor([30, 7, 3, 7, 39])
    some = model.seen_mask(model.seen_prefix(x, keep), items=cols)
    for m, (b, t) in enumerate(rows):
        want = torch.zeros(40)
        want[[i for i in x[b, : t + 1].tolist() if i != PAD]] = 1.0
        torch.testing.assert_close(seen[m, 1:], want[1:])
        torch.testing.assert_close(some[m], want[cols])
    x = _ids()
    window = model.seen_mask(x)
    assert window.shape == (3, 40) and (window[1, 1:].nonzero().flatten() + 1).tolist() == [7, 30]
    assert window[2, 1:].sum() == 0  # an empty history has seen nothing


def test_scores_move_by_the_weight_on_the_window_only_in_torch_and_onnx(tmp_path):
    from tasks.export import FP32_FILE, export_onnx, parity, session, torch_top_k

    model, x = _model(), _ids()
    with torch.no_grad():
        model.repeat_weight.fill_(-3.0)
    plain = _model(repeat=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "repeat_weight"})
    shift = model.last_scores(x) - plain.last_scores(x)
    finite = torch.isfinite(shift)
    assert torch.allclose(shift[finite], torch.where(model.seen_mask(x).bool(), -3.0, 0.0)[finite], atol=1e-5)
    assert not finite[:, PAD].any() and finite[:, 1:].all()  # padding stays -inf, every item is scored
    for exclude_seen in (False, True):
        export_onnx(model, tmp_path / FP32_FILE, top_k=10, opset=18, exclude_seen=exclude_seen)
        assert parity(
            torch_top_k(model, x.numpy(), 10, exclude_seen), tmp_path / FP32_FILE, x.numpy(), "fp32", 1.0, 1e-4
        ).passed
    with torch.inference_mode():
        scores, _ = TopKScorer(model, 10)(x)
    torch.testing.assert_close(scores, model.last_scores(x).topk(10).values)
    export_onnx(model, tmp_path / FP32_FILE, top_k=10, opset=18)
    served, _ = session(tmp_path / FP32_FILE).run(None, {"item_ids": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(served), scores, atol=1e-4, rtol=1e-4)


def test_the_training_loss_adds_the_weight_where_each_position_had_seen_the_item():
    """fit's full softmax and the sampled one, against the score written out position by position."""
    model, x = _model(), _ids()
    with torch.no_grad():
        model.repeat_weight.fill_(-2.0)
    y = torch.roll(x, -1, 1)
    y[:, -1] = torch.tensor([3, 7, 5])
    y[x == PAD] = PAD
    keep = y != PAD
    states = model(x)[keep]
    prefix = model.seen_prefix(x, keep)
    full = model.add_prefix_repeat_score(model.item_logits(states), prefix)  # what fit's full softmax adds
    rows = [(b, t) for b in range(3) for t in range(10) if keep[b, t]]
    for m, (b, t) in enumerate(rows):
        want = states[m] @ model.item_emb.weight[1:].T
        for item in set(x[b, : t + 1].tolist()) - {PAD}:
            want[item - 1] -= 2.0
        torch.testing.assert_close(full[m], want)
    q = torch.full((39,), 1 / 39)
    got = sampled_softmax(model, states, y[keep], q, 64, False, torch.Generator().manual_seed(0), prefix)
    neg = torch.multinomial(q, 64, replacement=True, generator=torch.Generator().manual_seed(0))
    logits = torch.cat([full.gather(1, (y[keep] - 1).unsqueeze(1)), full[:, neg]], 1)
    logits[:, 1:] = logits[:, 1:].masked_fill((y[keep] - 1).unsqueeze(1) == neg.unsqueeze(0), float("-inf"))
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long)))
    # and fit's step itself: at lr 0 and one batch, its loss is the written-out full softmax's
    examples = [(x[b].numpy(), y[b].numpy()) for b in range(3)]
    _, loss = fit(model, examples, Recipe(1, 3, 0.0), 0, torch.device("cpu"), False)
    want = torch.nn.functional.cross_entropy(full, y[keep] - 1)
    assert loss == pytest.approx(want.item(), rel=1e-5)


def test_the_full_softmaxs_sparse_add_is_the_dense_masks_value_for_value_and_in_the_gradient():
    """add_prefix_repeat_score (O(M x T), what fit uses) against add_repeat_score over the (M, N) mask:
    an item repeated in a prefix gets the weight once, padding none, and the gradients agree."""
    model, x = _model(), _ids()
    keep = x != PAD
    prefix = model.seen_prefix(x, keep)
    states = torch.randn(len(prefix), 16)
    y = torch.randint(0, 39, (len(prefix),))
    grads = []
    for add in (lambda lo: model.add_repeat_score(lo, model.seen_mask(prefix)[:, 1:]),
                lambda lo: model.add_prefix_repeat_score(lo, prefix)):  # fmt: skip
        model.zero_grad()
        with torch.no_grad():
            model.repeat_weight.fill_(-1.5)
        logits = add(model.item_logits(states))
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), model.repeat_weight.grad.clone(), model.item_emb.weight.grad.clone()))
    (dense, dw, demb), (sparse, sw, semb) = grads
    assert torch.equal(sparse, dense)
    assert torch.equal(dense != model.item_logits(states).detach(), model.seen_mask(prefix)[:, 1:].bool())
    torch.testing.assert_close(sw, dw)
    torch.testing.assert_close(semb, demb)
    plain = _model(repeat=False).item_logits(states)
    assert torch.equal(_model(repeat=False).add_prefix_repeat_score(plain.clone(), prefix), plain)


def _sequences(repeats: bool, n: int = 160) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random walks over 39 items, left-padded; with `repeats` a user's next item is often one they had."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        seq = [int(rng.integers(1, 40))]
        while len(seq) < 11:
            fresh = [i for i in range(1, 40) if i not in seq]
            seq.append(int(rng.choice(seq)) if repeats and rng.random() < 0.6 else int(rng.choice(fresh)))
        out.append((np.array(seq[:-1]), np.array(seq[1:])))
    return out


@pytest.mark.parametrize(("repeats", "sign"), [(False, -1), (True, 1)], ids=["never-again", "comes-back"])
@pytest.mark.parametrize(
    "recipe",
    [{}, {"loss": "sampled", "negatives": 16}, {"bucketing": True}, {"bf16": "on"}],
    ids=["full", "sampled", "bucketing", "bf16"],
)
def test_the_weight_learns_its_sign_from_the_data(repeats, sign, recipe):
    model = _model()
    fit(model, _sequences(repeats), Recipe(4, 32, 3e-3, **recipe), 0, torch.device("cpu"), False)
    assert sign * model.repeat_weight.item() > 0.3, model.repeat_weight.item()


def test_the_weight_has_its_own_rate_and_no_decay_and_plain_models_are_unchanged():
    from tasks.train import REPEAT_LR_SCALE

    recipe = Recipe(1, 8, 1e-3, weight_decay=0.1)
    model = _model()
    groups = param_groups(model, list(model.parameters()), recipe)
    assert [g["params"] for g in groups[1:]] == [[model.repeat_weight]]
    assert groups[1]["lr"] == 1e-3 * REPEAT_LR_SCALE and groups[1]["weight_decay"] == 0.0
    assert not any(p is model.repeat_weight for p in groups[0]["params"])
    plain = _model(repeat=False)
    assert len(param_groups(plain, list(plain.parameters()), recipe)) == 1
    assert "repeat_weight" not in plain.state_dict()


def test_a_model_saved_before_the_option_existed_loads_without_it(tmp_path):
    import json

    plain = _model(repeat=False)
    plain.save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["repeat_score"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    again = SeqRecModel.load(tmp_path)
    assert again.config.repeat_score is False
    torch.testing.assert_close(again.last_scores(_ids()), plain.last_scores(_ids()))
