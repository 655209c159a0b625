"""A GPT-2-style decoder, optionally looped: one trunk, two heads.

    Trunk             position table wpe, the n_layer blocks, ln_f, and the loop below (shared)
    ICLTransformer    in-context regression: read_in(x/y tokens) -> trunk -> read_out at the x tokens
    GPTLanguageModel  tokens: wte(ids) -> trunk -> logits = h @ wte.weight^T (tied LM head)

One code path: the standard model is the looped model with b = 1, for either head. For the regression
head (for the LM head, e is the token embedding and every kept position is read out):

    tokens  x_1, y_1, x_2, y_2, ..., x_n, y_n      (y written into coordinate 0 of a d-vector; 2n tokens)
    e     = read_in(tokens)                         (B, 2n, C)
    h_0   = 0 (injection add), 1 (mul), e (none)
    for t in 0..b-1:                                # b = model.loops; b = 1 is the standard model
        u       = h_t + e | h_t * e | h_t           # input injection (add | mul | none)
        u      += wpe                               # pos_embedding=every_loop: every iteration (Yang et al.'s
                                                    # code); =once: only at t = 0
        h_{t+1} = blocks(u)                         # the n_layer (= layers_per_loop) distinct blocks, in order
                                                    # (reflex attention: block i also reads the K/V that
                                                    # blocks i-1, i-2, ... computed in this iteration)
        h_{t+1} = ln_f(h_{t+1})                     # final_norm=every_loop: h is normalized each iteration
                                                    # (Yang et al.); =once: ln_f only on the way to read-out
        if t >= b - T:  pred_t = read_out(ln_f?(h_{t+1}))[x positions]
    Iterations t < b - T run under torch.no_grad, so activation memory depends on T, not on b. The
    training loss averages the T predictions (iclab.training.trainer.prediction_loss).

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
in-context examples runs every prefix separately (iclab.evaluation.regression.per_iteration_predictions).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from iclab.config import ModelConfig
from iclab.models.attention import make_attention

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
    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = make_attention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x, cache: list | None = None):
        """cache: reflex attention only, the K/V (and inputs) of the earlier blocks of this loop iteration."""
        x = x + (self.attn(self.ln_1(x)) if cache is None else self.attn(self.ln_1(x), cache))
        return x + self.mlp(self.ln_2(x))


def _call(block: nn.Module, u: torch.Tensor) -> torch.Tensor:
    return block(u)


def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(B, n, d), (B, n) -> (B, 2n, d): x_1, [y_1, 0...], x_2, [y_2, 0...], ..."""
    B, n, d = xs.shape
    ys_wide = torch.cat([ys.unsqueeze(-1), xs.new_zeros(B, n, d - 1)], dim=2)
    return torch.stack([xs, ys_wide], dim=2).reshape(B, 2 * n, d)


class Trunk(nn.Module):
    """The shared GPT-2 trunk: position table, blocks, final norm and the loop around the blocks. A head
    (a subclass) embeds its inputs into e (B, L, C), calls `loop`, and reads the hidden states out."""

    def __init__(self, cfg: ModelConfig, *input_args):
        super().__init__()
        self.cfg = cfg
        self.build_input(*input_args)  # the head's input layer first (GPT-2's order: wte, wpe, blocks)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        # train_block_call(block, u) -> block(u), used in training mode when set (the trainer puts a
        # torch.compile'd function here: one graph serves every block and loop iteration). Causal attention
        # only: reflex blocks also take the iteration's K/V cache and always run eagerly here.
        self.train_block_call = None
        self.block_order: list[int] | None = None  # analysis: the blocks each iteration applies (see `rearranged`)
        self.taps: list | None = None  # analysis: (iteration, slot, hidden state) after every block (see `tapped`)

    @contextlib.contextmanager
    def hooked(self, hook):
        """Inside, every block's attention runs its heads through `hook` (an attention.HeadHook: record
        attention probabilities, ablate heads); outside, attention is SDPA again."""
        old = [b.attn.hook for b in self.blocks]
        for b in self.blocks:
            b.attn.hook = hook
        try:
            yield hook
        finally:
            for b, h in zip(self.blocks, old):
                b.attn.hook = h

    @contextlib.contextmanager
    def rearranged(self, order: list[int]):
        """Inside, every loop iteration applies blocks[order[0]], blocks[order[1]], ... (layer surgery)."""
        if any(not 0 <= i < len(self.blocks) for i in order) or not order:
            raise ValueError(f"block order {order} must be a non-empty list of indices 0..{len(self.blocks) - 1}")
        old, self.block_order = self.block_order, list(order)
        try:
            yield self
        finally:
            self.block_order = old

    @contextlib.contextmanager
    def tapped(self):
        """Inside, the loop records (t, j, u) after the j-th block of iteration t: u (B, L_t, C) is the
        residual stream before any final norm (probes, logit lens). Yields the list it fills."""
        old, self.taps = self.taps, []
        try:
            yield self.taps
        finally:
            self.taps = old

    def build_input(self, *args) -> None:
        """Create the head's input layer (a read-in, a token embedding)."""

    def init_weights(self) -> None:
        """GPT-2's init: N(0, 0.02) for every linear and embedding, zero biases, and the residual
        projections scaled by 1/sqrt(2 n_layer). Heads call this after creating their own layers."""
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def seq_len(self, t: int, n_tokens: int) -> int:
        """Tokens seen by loop iteration t (0-based): the last min(n_tokens, max(n_tokens - t*d, k))."""
        d, k = self.cfg.drop_tokens, self.cfg.min_tokens
        return n_tokens if d == 0 else min(n_tokens, max(n_tokens - t * d, k))

    def loop(self, e: torch.Tensor, loops: int | None = None, window: int | None = None) -> list[torch.Tensor]:
        """e: (B, L, C) embedded tokens -> the normalized hidden states (B, L_t, C) of the last `window`
        loop iterations, L_t being the tokens iteration t kept (the last L_t of the sequence)."""
        cfg = self.cfg
        b = loops or cfg.loops
        T = min(window or cfg.window, b)
        n_tok = e.shape[1]
        if n_tok > cfg.n_positions:
            raise ValueError(f"a sequence of {n_tok} tokens exceeds n_positions={cfg.n_positions}")
        pos = self.wpe(torch.arange(n_tok, device=e.device))
        restart = cfg.drop_positions == "restart"
        h, outs = None, []
        for t in range(b):
            with torch.set_grad_enabled(torch.is_grad_enabled() and t >= b - T):
                L = self.seq_len(t, n_tok)
                e_t = e if L == n_tok else e[:, -L:]
                if h is None:  # the first iteration's input is e itself under every injection: 0 + e, 1 * e, e
                    u = e_t
                else:
                    h = h if h.shape[1] == L else h[:, -L:]
                    u = h + e_t if cfg.injection == "add" else h * e_t if cfg.injection == "mul" else h
                if cfg.pos_embedding == "every_loop" or t == 0:
                    u = u + (pos[:L] if restart else pos[-L:])
                u = self.drop(u)
                call = self.train_block_call if self.training and self.train_block_call is not None else _call
                cache = [] if cfg.attention.name == "reflex" else None  # reflex: K/V of this iteration's blocks
                for j, i in enumerate(self.block_order or range(len(self.blocks))):
                    u = call(self.blocks[i], u) if cache is None else self.blocks[i](u, cache)
                    if self.taps is not None:
                        self.taps.append((t, j, u.detach()))
                h = self.ln_f(u) if cfg.final_norm == "every_loop" else u
            if t >= b - T:
                outs.append(h if cfg.final_norm == "every_loop" else self.ln_f(h))
        return outs


class ICLTransformer(Trunk):
    """In-context regression: read-in of (x, y) tokens, the trunk, a scalar read-out at the x tokens."""

    def __init__(self, cfg: ModelConfig, n_dims: int):
        super().__init__(cfg, n_dims)
        self.read_out = nn.Linear(cfg.n_embd, 1)
        self.init_weights()
        if cfg.io_init == "torch":
            self.read_in.reset_parameters()
            self.read_out.reset_parameters()
        if cfg.read_in_std is not None:
            nn.init.normal_(self.read_in.weight, mean=0.0, std=cfg.read_in_std)

    def build_input(self, n_dims: int) -> None:
        self.n_dims = n_dims
        self.read_in = nn.Linear(n_dims, self.cfg.n_embd)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, loops: int | None = None, window: int | None = None):
        """Predictions of the last `window` iterations: a list of (B, m_t) tensors, where m_t is the
        number of points iteration t predicts (all n without token dropping; then it is the last m_t points)."""
        if 2 * xs.shape[1] > self.cfg.n_positions:
            raise ValueError(
                f"prompt of {xs.shape[1]} points needs {2 * xs.shape[1]} positions > n_positions={self.cfg.n_positions}"
            )
        hs = self.loop(self.read_in(interleave(xs, ys)), loops, window)
        return [self._read_out(h[:, h.shape[1] % 2 :: 2]) for h in hs]  # x tokens sit at even positions

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


class GPTLanguageModel(Trunk):
    """A language model: token embedding, the trunk, and an LM head tied to the embedding (GPT-2): the
    logits are h @ wte.weight^T, so the embedding table is the model's only vocabulary-sized tensor."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.init_weights()

    def build_input(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.wte = nn.Embedding(vocab_size, self.cfg.n_embd)

    def forward(
        self, idx: torch.Tensor, loops: int | None = None, window: int | None = None, head_from: int = 0
    ) -> list[torch.Tensor]:
        """idx: (B, L) token ids -> logits (B, L_t, V) of the last `window` iterations, for the last L_t
        positions each iteration kept (all L without token dropping). head_from: the LM head only on
        positions >= head_from (a loss that counts only those: the logits are then (B, min(L_t, L - head_from), V),
        still the last positions, so targets align from the end as before)."""
        L = idx.shape[1]
        return [
            self.lm_head(h[:, max(head_from - (L - h.shape[1]), 0) :]) for h in self.loop(self.wte(idx), loops, window)
        ]

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.wte.weight)

    def logits(self, idx: torch.Tensor, loops: int | None = None) -> torch.Tensor:
        """Logits (B, L, V) of the final iteration."""
        return self.forward(idx, loops=loops, window=1)[-1]
