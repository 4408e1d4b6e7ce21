"""SASRec-class causal transformer over item-id sequences.

The backbone is Hugging Face's GPT-2 block stack built from a `GPT2Config` in code
(no hub download): pre-LayerNorm causal self-attention with learned absolute
positions, which is SASRec's architecture. Items are fed as `inputs_embeds`; the
output projection is tied to the item embedding, so a score is a dot product
between the sequence state and an item vector, and growing the catalogue is adding
rows. Index 0 is padding; sequences are left-padded so the latest item sits at the
last position.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import GPT2Config, GPT2Model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
PAD = 0


@dataclass
class SeqRecConfig:
    n_items: int  # catalogue size + 1 (row 0 is padding)
    max_len: int = 50  # positions; longer histories keep their most recent max_len items
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2  # SASRec's 0.2 on MovieLens-sized data

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


class SeqRecModel(nn.Module):
    def __init__(self, config: SeqRecConfig):
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items, config.hidden_size, padding_idx=PAD)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()
        self.backbone = GPT2Model(config.backbone_config())
        self.emb_scale = math.sqrt(config.hidden_size)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids (B, T <= max_len) left-padded -> sequence states (B, T, H); a shorter T gives the same
        states as the same rows left-padded to max_len."""
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
        out = self.backbone(inputs_embeds=x, attention_mask=mask, position_ids=positions, use_cache=False)
        return out.last_hidden_state

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

    @torch.inference_mode()
    def last_scores(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Scores for the next item after each sequence: (B, T) -> (B, N)."""
        return self.scores(self(item_ids)[:, -1, :])

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
    """ONNX-exportable serving graph: item-id sequence -> top-K item indices and scores."""

    def __init__(self, model: SeqRecModel, k: int):
        super().__init__()
        self.model = model
        self.k = k

    def forward(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.model(item_ids)[:, -1, :]  # (B, H)
        logits = states @ self.model.item_emb.weight.T  # (B, N)
        pad_mask = torch.zeros_like(logits[:1])
        pad_mask[:, PAD] = float("-inf")
        scores, idx = torch.topk(logits + pad_mask, self.k, dim=-1)  # (B, K) each
        return scores, idx
