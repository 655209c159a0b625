"""The in-context-learning transformer: a GPT-2-style decoder, optionally looped.

One code path: the standard model is the looped model with b = 1.

    tokens  x_1, y_1, x_2, y_2, ..., x_n, y_n      (y written into coordinate 0 of a d-vector; 2n tokens)
    e     = read_in(tokens)                         (B, 2n, C)
    h_0   = 0 (injection add), 1 (mul), e (none)
    for t in 0..b-1:                                # b = model.loops; b = 1 is the standard model
        u       = h_t + e | h_t * e | h_t           # input injection (add | mul | none)
        u      += wpe                               # pos_embedding=every_loop: every iteration (Yang et al.'s
                                                    # code); =once: only at t = 0
        h_{t+1} = blocks(u)                         # the n_layer (= layers_per_loop) distinct blocks, in order
        h_{t+1} = ln_f(h_{t+1})                     # final_norm=every_loop: h is normalized each iteration
                                                    # (Yang et al.); =once: ln_f only on the way to read-out
        if t >= b - T:  pred_t = read_out(ln_f?(h_{t+1}))[x positions]
    Iterations t < b - T run under torch.no_grad, so activation memory depends on T, not on b. The
    training loss averages the T predictions (iclab.train.prediction_loss).

Which tokens and positions an iteration sees (token dropping, drop_tokens = d > 0, min_tokens = k):
    iteration t (0-based) works on the last L_t = min(2n, max(2n - t*d, k)) tokens only: the last L_t
    rows of h_t and of e (the first iteration sees the whole prompt; earlier tokens are gone for good).
    Their position ids are the ids they have in the full prompt, 2n - L_t .. 2n - 1 (drop_positions=original),
    or 0 .. L_t - 1 (drop_positions=restart, as seed 000's code, which re-adds the embedding of a fresh
    arange each iteration). Iteration t predicts y at the x tokens among its L_t tokens, i.e. the last
    floor(L_t / 2) points of the prompt; the loss counts only those. Attention is causal within the kept
    tokens, so a kept x_j attends to the kept tokens up to x_j only.
Without dropping, attention is causal, so the prediction at x_j equals that of the prompt cut after x_j;
with dropping it does not (the window is anchored at the prompt's end), so evaluation of error vs
in-context examples runs every prefix separately (iclab.evaluate.per_iteration_predictions).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from iclab.config import ModelConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, L, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(B, L, C))


ACTIVATIONS = {"gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu, "relu": F.relu}


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def _call(block: nn.Module, u: torch.Tensor) -> torch.Tensor:
    return block(u)


def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(B, n, d), (B, n) -> (B, 2n, d): x_1, [y_1, 0...], x_2, [y_2, 0...], ..."""
    B, n, d = xs.shape
    ys_wide = torch.cat([ys.unsqueeze(-1), xs.new_zeros(B, n, d - 1)], dim=2)
    return torch.stack([xs, ys_wide], dim=2).reshape(B, 2 * n, d)


class ICLTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig, n_dims: int):
        super().__init__()
        self.cfg = cfg
        self.n_dims = n_dims
        self.read_in = nn.Linear(n_dims, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.read_out = nn.Linear(cfg.n_embd, 1)
        # train_block_call(block, u) -> block(u), used in training mode when set (the trainer puts a
        # torch.compile'd function here: one graph serves every block and loop iteration)
        self.train_block_call = None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.io_init == "torch":
            self.read_in.reset_parameters()
            self.read_out.reset_parameters()
        if cfg.read_in_std is not None:
            nn.init.normal_(self.read_in.weight, mean=0.0, std=cfg.read_in_std)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def seq_len(self, t: int, n_tokens: int) -> int:
        """Tokens seen by loop iteration t (0-based): the last min(n_tokens, max(n_tokens - t*d, k))."""
        d, k = self.cfg.drop_tokens, self.cfg.min_tokens
        return n_tokens if d == 0 else min(n_tokens, max(n_tokens - t * d, k))

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, loops: int | None = None, window: int | None = None):
        """Predictions of the last `window` iterations: a list of (B, m_t) tensors, where m_t is the
        number of points iteration t predicts (all n without token dropping; then it is the last m_t points)."""
        cfg = self.cfg
        b = loops or cfg.loops
        T = min(window or cfg.window, b)
        n_tok = 2 * xs.shape[1]
        if n_tok > cfg.n_positions:
            raise ValueError(f"prompt of {xs.shape[1]} points needs {n_tok} positions > n_positions={cfg.n_positions}")
        e = self.read_in(interleave(xs, ys))
        pos = self.wpe(torch.arange(n_tok, device=xs.device))
        restart = cfg.drop_positions == "restart"
        h = {"add": torch.zeros_like, "mul": torch.ones_like, "none": lambda e: e}[cfg.injection](e)
        preds = []
        for t in range(b):
            with torch.set_grad_enabled(torch.is_grad_enabled() and t >= b - T):
                L = self.seq_len(t, n_tok)
                h, e_t = h[:, -L:], e[:, -L:]
                u = h + e_t if cfg.injection == "add" else h * e_t if cfg.injection == "mul" else h
                if cfg.pos_embedding == "every_loop" or t == 0:
                    u = u + (pos[:L] if restart else pos[-L:])
                u = self.drop(u)
                call = self.train_block_call if self.training and self.train_block_call is not None else _call
                for block in self.blocks:
                    u = call(block, u)
                h = self.ln_f(u) if cfg.final_norm == "every_loop" else u
            if t >= b - T:
                out = h if cfg.final_norm == "every_loop" else self.ln_f(h)
                preds.append(self._read_out(out[:, L % 2 :: 2]))  # x tokens sit at even positions
        return preds

    def _read_out(self, h: torch.Tensor) -> torch.Tensor:
        """(B, m, C) -> (B, m). Under autocast (training.dtype=bfloat16) the read-out stays in fp32, so the
        predictions and the loss keep full precision."""
        if torch.is_autocast_enabled(h.device.type):
            with torch.autocast(h.device.type, enabled=False):
                return self.read_out(h.float()).squeeze(-1)
        return self.read_out(h).squeeze(-1)

    def predict(self, xs, ys, loops: int | None = None):
        """Prediction of the final iteration, (B, m) for the last m points."""
        return self.forward(xs, ys, loops=loops, window=1)[-1]
