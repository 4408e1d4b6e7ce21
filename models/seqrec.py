"""SASRec-class causal transformer over item-id sequences.

The backbone is Hugging Face's GPT-2 block stack built from a `GPT2Config` in code
(no hub download): pre-LayerNorm causal self-attention with learned absolute
positions, which is SASRec's architecture. Items are fed as `inputs_embeds`; the
output projection is tied to the item embedding, so a score is a dot product
between the sequence state and an item vector, and growing the catalogue is adding
rows. Index 0 is padding; sequences are left-padded so the latest item sits at the
last position.

`block: ligr` swaps each GPT-2 block for a LiGR block (eSASRec, RecSys'25; LinkedIn's LiGR,
arXiv 2502.03417): the same pre-LayerNorm attention, but each residual branch is scaled by a
learned sigmoid gate of the stream it joins, and the feed-forward is SwiGLU. Everything else (the
attention module, positions, masks, `top`/LoRA trainable sets, ONNX export) is GPT-2's.

`repeat_score: true` adds one learned scalar to the score of every item already in the input window
(RepeatNet's repeat-vs-explore question, AAAI'19, as a single learned weight): the model learns from
the data whether users come back to what they had, instead of a fixed rule deciding it. On MovieLens,
where nobody rates a movie twice, it learns a large negative weight; on listening or shopping data
it can learn a positive one. Training adds it at every position for the items up to that position
(`seen_prefix`; `add_prefix_repeat_score` for the full softmax, `seen_mask` over the sampled columns),
scoring for the items of the window it is given.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2Model
from transformers.models.gpt2.modeling_gpt2 import GPT2Block
from transformers.pytorch_utils import Conv1D

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
PAD = 0
BLOCKS = ("gpt2", "ligr")


@dataclass
class SeqRecConfig:
    n_items: int  # catalogue size + 1 (row 0 is padding)
    max_len: int = 50  # positions; longer histories keep their most recent max_len items
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2  # SASRec's 0.2 on MovieLens-sized data
    block: str = "gpt2"  # gpt2 | ligr (gated residuals + SwiGLU: module docstring)
    repeat_score: bool = False  # a learned score for items already in the window (module docstring)

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"unknown transformer block {self.block!r}: use one of {', '.join(BLOCKS)}")

    def backbone_config(self) -> GPT2Config:
        return GPT2Config(
            vocab_size=1,  # unused: items come in as inputs_embeds
            n_positions=self.max_len,
            n_embd=self.hidden_size,
            n_layer=self.num_layers,
            n_head=self.num_heads,
            n_inner=4 * self.hidden_size,
            activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU as one fused kernel, not five ops
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            use_cache=False,
            bos_token_id=None,  # no vocabulary: these GPT-2 defaults would point outside it
            eos_token_id=None,
        )

    @classmethod
    def from_dict(cls, d: dict) -> SeqRecConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class SwiGLU(nn.Module):
    """LiGR's feed-forward: down(silu(gate(x)) * up(x)); gate and up are one matmul (c_fc). The layers
    are GPT-2's Conv1D under GPT-2's MLP names, so LoRA (tasks/train.py) adapts them like any other."""

    def __init__(self, hidden: int, inner: int, dropout: float):
        super().__init__()
        self.c_fc = Conv1D(2 * inner, hidden)
        self.c_proj = Conv1D(hidden, inner)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(nn.functional.silu(gate) * up))


class LiGRBlock(GPT2Block):
    """A GPT-2 block whose residual branches are gated: x + sigmoid(W x) * branch(LayerNorm(x))."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__(config, layer_idx=layer_idx)
        h = config.hidden_size
        self.mlp = SwiGLU(h, config.n_inner, config.resid_pdrop)
        self.gate_attn = nn.Linear(h, h)
        self.gate_mlp = nn.Linear(h, h)

    def forward(self, hidden_states, past_key_values=None, attention_mask=None, *args, use_cache=False, **kwargs):
        attn, _ = self.attn(self.ln_1(hidden_states), past_key_values=past_key_values,
                            attention_mask=attention_mask, use_cache=use_cache, **kwargs)  # fmt: skip
        x = hidden_states + torch.sigmoid(self.gate_attn(hidden_states)) * attn
        return x + torch.sigmoid(self.gate_mlp(x)) * self.mlp(self.ln_2(x))


def split_heads(attn, t: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, heads, T, head_dim) for `attn` (GPT-2's attention module)."""
    return t.reshape(t.shape[0], t.shape[1], attn.num_heads, attn.head_dim).transpose(1, 2)


def attend_one(block: GPT2Block, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               keep: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """`block` (GPT-2 or LiGR) at one position: its input x (B, 1, H), that position's query q (B, heads, 1,
    head_dim) over the keys and values k, v (B, heads, T, head_dim) of the positions it sees, the padding mask
    keep (B, T) -> the block's output there (B, 1, H)."""
    attn = block.attn
    weights = (q @ k.transpose(-1, -2)) * attn.scaling  # (B, heads, 1, T)
    weights = weights.masked_fill(keep[:, None, None, :] == 0, torch.finfo(weights.dtype).min)
    out = attn.c_proj((weights.softmax(-1) @ v).transpose(1, 2).reshape(x.shape[0], 1, x.shape[2]))
    if isinstance(block, LiGRBlock):
        x = x + torch.sigmoid(block.gate_attn(x)) * out
        return x + torch.sigmoid(block.gate_mlp(x)) * block.mlp(block.ln_2(x))
    x = x + out
    return x + block.mlp(block.ln_2(x))


def _last_position(block: GPT2Block, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`block` (GPT-2 or LiGR) applied to x (B, T, H) with the padding mask keep (B, T), its output at the
    last position only (B, 1, H). The last position attends to every position it keeps, so the causal
    mask adds nothing there."""
    attn = block.attn
    q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=2)
    return attend_one(block, x[:, -1:], split_heads(attn, q[:, -1:]), split_heads(attn, k), split_heads(attn, v), keep)


class SeqRecModel(nn.Module):
    def __init__(self, config: SeqRecConfig):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items, config.hidden_size, padding_idx=PAD)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        self.backbone = GPT2Model(config.backbone_config())
        if config.block == "ligr":
            bc = self.backbone.config
            self.backbone.h = nn.ModuleList(LiGRBlock(bc, layer_idx=i) for i in range(config.num_layers))
            self.backbone.h.apply(self.backbone._init_weights)  # GPT-2's init: N(0, 0.02), zero biases ...
            for block in self.backbone.h:  # ... and its depth-scaled init of the layers that write the residual
                nn.init.normal_(block.mlp.c_proj.weight, std=bc.initializer_range / math.sqrt(2 * config.num_layers))
        self.emb_scale = math.sqrt(config.hidden_size)
        if config.repeat_score:  # 0 at the start: the data decides its sign
            self.repeat_weight = nn.Parameter(torch.zeros(()))

    def _inputs(self, item_ids: torch.Tensor) -> dict:
        """The backbone's keyword arguments for item_ids (B, T <= max_len), left-padded."""
        mask = (item_ids != PAD).long()  # (B, T): padding is never attended to ...
        # ... except the last slot, always: an empty history (all padding) then has one well-defined
        # state instead of a fully masked softmax, which torch and ONNX Runtime resolve differently.
        mask = torch.cat([mask[:, :-1], torch.ones_like(mask[:, -1:])], dim=1)
        x = self.item_emb(item_ids) * self.emb_scale  # (B, T, H)
        positions = None
        if item_ids.shape[1] < self.config.max_len:  # a batch cut to its longest sequence (length bucketing):
            # positions stay right-aligned, so the latest item keeps the slot it has in a full window
            start = self.config.max_len - item_ids.shape[1]
            positions = torch.arange(start, self.config.max_len, device=item_ids.device).unsqueeze(0)
        return {"inputs_embeds": x, "attention_mask": mask, "position_ids": positions, "use_cache": False}

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids (B, T <= max_len) left-padded -> sequence states (B, T, H); a shorter T gives the same
        states as the same rows left-padded to max_len."""
        return self.backbone(**self._inputs(item_ids)).last_hidden_state

    def last_state(self, item_ids: torch.Tensor) -> torch.Tensor:
        """self(item_ids)[:, -1] (B, H) for less: the last block computes keys and values at every position
        but the attention, its projection and the feed-forward at the last one only, the one that is
        scored. With 2 blocks that drops about 40 % of the arithmetic; the served graph uses it."""
        inputs = self._inputs(item_ids)
        trunk = copy.copy(self.backbone)  # the same modules but the last block and the final LayerNorm
        trunk._modules = {**trunk._modules, "h": self.backbone.h[:-1], "ln_f": nn.Identity()}
        x = trunk(**inputs).last_hidden_state  # (B, T, H): the input of the last block
        return self.backbone.ln_f(_last_position(self.backbone.h[-1], x, inputs["attention_mask"]))[:, 0]

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """states (..., H) -> scores over the catalogue (..., N); padding scores -inf."""
        logits = states @ self.item_emb.weight.T
        logits[..., PAD] = float("-inf")
        return logits

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """states (..., H) -> logits over the real items (..., N - 1); column i is item i + 1.

        Training's cross-entropy uses these: the padding column is left out instead of set to
        -inf in place, which would cost a copy and a fill of the whole (M, N) gradient per step.
        """
        return states @ self.item_emb.weight[1:].T

    @staticmethod
    def seen_prefix(item_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, T) windows and the (B, T) bool positions to keep -> (M, T): for each kept position the items
        up to and including it, later slots as padding (what training scores there)."""
        t = item_ids.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=item_ids.device).tril()  # (t, s): s <= t
        return item_ids.unsqueeze(1).masked_fill(~causal, PAD)[keep]

    def seen_mask(self, item_ids: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """1.0 where a row of item ids (R, T) (a window, or a position's prefix: `seen_prefix`) holds an
        item, else 0.0: (R, N) over the catalogue, padding's column 0 included, or (R, K) over the item
        ids `items` (K,) only, which costs O(K) a row instead of O(N) (the sampled softmax's columns)."""
        if items is None:
            n = self.config.n_items
            return torch.zeros(item_ids.shape[0], n, device=item_ids.device).scatter_(1, item_ids, 1.0)
        uniq, inverse = items.unique(return_inverse=True)
        slot = torch.full((self.config.n_items,), len(uniq), dtype=torch.long, device=item_ids.device)
        slot[uniq] = torch.arange(len(uniq), device=item_ids.device)  # anything else -> the spare slot
        seen = torch.zeros(item_ids.shape[0], len(uniq) + 1, device=item_ids.device).scatter_(1, slot[item_ids], 1.0)
        return seen[:, inverse]

    def add_repeat_score(self, logits: torch.Tensor, seen: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """logits (..., C) plus the learned repeat weight where `seen` (..., C) is 1; unchanged without
        `repeat_score`. `inplace` saves an (M, C) copy where autograd allows it (a matmul's output)."""
        if not self.config.repeat_score:
            return logits
        w, seen = self.repeat_weight.to(logits.dtype), seen.to(logits.dtype)
        return logits.addcmul_(seen, w) if inplace else torch.addcmul(logits, seen, w)

    def add_prefix_repeat_score(self, logits: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Training's full softmax, in place: logits (M, N - 1) over the real items (`item_logits`:
        column i is item i + 1) plus the learned repeat weight once on each distinct item of each row
        of `prefix` (M, T) (`seen_prefix`). The sum `add_repeat_score` makes with `seen_mask`, value for
        value, at O(M x T) instead of an (M, N) mask built, applied and saved for backward: the weight is
        scattered onto each item's first slot in the sorted row, and 0 onto repeats and padding."""
        if not self.config.repeat_score:
            return logits
        ids = prefix.sort(1).values
        first = torch.ones_like(ids, dtype=torch.bool)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]
        add = (first & (ids != PAD)).to(logits.dtype) * self.repeat_weight.to(logits.dtype)  # (M, T): w or 0
        return logits.scatter_add_(1, (ids - 1).clamp_(min=0), add)

    def add_window_repeat_score(self, scores: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """scores (B, N) after the windows item_ids (B, T) plus the learned repeat weight on each window's
        items (what evaluation and the served graph score); unchanged without `repeat_score`."""
        if not self.config.repeat_score:
            return scores
        return self.add_repeat_score(scores, self.seen_mask(item_ids))

    @torch.inference_mode()
    def last_scores(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Scores for the next item after each sequence: (B, T) -> (B, N)."""
        return self.add_window_repeat_score(self.scores(self(item_ids)[:, -1, :]), item_ids)

    def grow_items(self, n_new: int, init: torch.Tensor | None = None) -> None:
        """Append `n_new` item rows (new catalogue entries), keeping every trained row."""
        if n_new <= 0:
            return
        old = self.item_emb.weight.data
        new_rows = init if init is not None else torch.randn(n_new, old.shape[1]) * old[1:].std()
        emb = nn.Embedding(old.shape[0] + n_new, old.shape[1], padding_idx=PAD)
        emb.weight.data = torch.cat([old, new_rows.to(old)], dim=0)
        self.item_emb = emb.to(old.device)
        self.config.n_items += n_new

    def save(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out_dir / WEIGHTS_FILE))

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> SeqRecModel:
        model_dir = Path(model_dir)
        config = SeqRecConfig.from_dict(json.loads((model_dir / CONFIG_FILE).read_text()))
        model = cls(config)
        model.load_state_dict(load_file(str(model_dir / WEIGHTS_FILE), device="cpu"))
        return model.to(device).eval()


class TopKScorer(nn.Module):
    """ONNX-exportable serving graph: item-id sequence -> top-K item indices and scores.

    exclude_seen: the items of the input window are never recommended (`export.exclude_seen`: for
    catalogues where nobody consumes an item twice, such as rated movies). A user who has seen all but
    j < K items gets those j first; the other K - j entries score -inf and the caller drops them."""

    def __init__(self, model: SeqRecModel, k: int, exclude_seen: bool = False):
        super().__init__()
        self.model = model
        self.k = k
        self.exclude_seen = exclude_seen

    def forward(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rank(self.model.last_state(item_ids), item_ids)

    def rank(self, states: torch.Tensor, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The states (B, H) after the windows item_ids (B, T) -> top-K (scores, indices), each (B, K)."""
        logits = states @ self.model.item_emb.weight.T  # (B, N)
        pad_mask = torch.zeros_like(logits[:1])
        pad_mask[:, PAD] = float("-inf")
        logits = logits + pad_mask
        if self.exclude_seen:  # the window's items (and padding's column 0) to -inf, one ScatterElements
            logits = logits.scatter(1, item_ids, float("-inf"))
        else:  # the learned repeat weight, if any (under exclude_seen those items are -inf whatever it is)
            logits = self.model.add_window_repeat_score(logits, item_ids)
        scores, idx = torch.topk(logits, self.k, dim=-1)  # (B, K) each
        return scores, idx
