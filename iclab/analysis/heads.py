"""Inside the heads: attention patterns, induction scores, OV copying and head ablation of a trained run.

    iclab heads RUN [--ablate L.H,...] [--over-training] [--n-sequences N] [--seed S] [--top K]

Layers and heads are numbered from 0 in every output, as in `iclab surgery` ("1.3" = layer 1, head 3). A
looped model is scored per loop iteration (`iteration`, from 0); ablation removes a head in every iteration.
A Reflex head is labelled with the layer whose K/V it reads (`reads`; its own layer for a self head).

Definitions (P = a head's attention probabilities, P[i, j] from query i to key j <= i; Olsson et al. 2022,
"In-context Learning and Induction Heads"):

  entropy          -sum_j P[i, j] log P[i, j], averaged over queries i >= 1 (nats)
  prev_token       P[i, i-1], averaged over i >= 1
  first_token      P[i, 0], averaged over i >= 1
  x_to_x, y_to_y   regression prompts (x_1, y_1, x_2, ...: x at even positions): for an x query, the mass on
                   earlier x tokens (j < i, same parity); for a y query, on earlier y tokens (queries from
                   the second x / second y on)
  induction        on sequences made of a block of n random distinct tokens repeated twice (n = min(L/2, V);
                   a language model draws them in proportion to their frequency in the evaluation windows),
                   the mean over the second copy (query n + i, i = 0..n-1) of P[n + i, i + 1]: attention to the
                   token right after the earlier occurrence of the current token. 1 = a perfect induction head.
  prefix_matching  Olsson et al.'s attention criterion of an induction head is this same quantity: the JSON
                   keeps it under both names
  duplicate        on the same sequences, P[n + i, i]: attention to the earlier occurrence itself
  copying          the OV circuit's copying score: with W_E (C, V) the token embeddings, W_V (H, C) the head's
                   value map (times the gain of the layer norm before it), W_O (C, H) its slice of c_proj, and
                   W_U (V, C) the unembedding (times ln_f's gain), the eigenvalues l of W_U W_O W_V W_E give
                   sum_l Re(l) / sum_l |l| in [-1, 1] (complex eigenvalues come in conjugate pairs, so
                   sum Re(l) = sum l: Elhage et al. 2021's "positive eigenvalues" summary). +1: the head raises
                   the logit of the tokens it attends to. Computed from the H x H matrix W_V W_E W_U W_O, which
                   has the same nonzero eigenvalues. Layer norms' centring and biases are left out.
  in_context       loss late in the context minus loss early (Olsson et al.: the 500th token minus the 50th),
                   on the workload's evaluation windows: mean cross-entropy over the last w positions minus
                   that over w positions from e (w = min(10, L/8), e = 49 when L >= 100, else L/4). Negative:
                   later tokens are predicted better, from the context.

Ablation: a head's output y_h = P v_h is replaced before c_proj by 0 (zero) or by its mean over the evaluation
set at each position (mean), on fixed evaluation data; the change of the run's headline (language model: loss
in nats/token, and the in-context score; regression: normalized squared error at k = 2d; other token tasks:
exact match and loss) is a paired difference over sequences / prompts, with its 95% t-interval. Beside every
single head: the K heads with the highest induction (regression: x_to_x) scores ablated together, and random
sets of K other heads for comparison; `--ablate` a set of your own.

Controls (iclab/analysis/heads_controls.py): the same scores on a randomly initialized model of the same
architecture, and for token runs a hand-built two-layer attention-only model with a planted induction head.
The phase change over training (iclab/analysis/heads_training.py, `--over-training`).

Writes RUN/heads.json and RUN/heads.png (heads_TAG.* with a tag).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F

from iclab.errors import IclabError
from iclab.models.attention import HeadHook
from iclab.stats import mean_ci


class HeadsError(IclabError, ValueError):
    pass


# --- which layer each head reads ---------------------------------------------------------------------------
def head_sources(model) -> list[list[int]]:
    """Per layer, per head: the layer whose K/V the head reads (a Reflex cross head: an earlier layer; under
    combine: linear, the layer of its largest weight; top_k: the layer its group reads now)."""
    out = []
    for i, blk in enumerate(model.blocks):
        attn = blk.attn
        p = getattr(attn, "p", None)
        if p is None or not p.n_cross:
            out.append([i] * model.cfg.n_head)
            continue
        reads = [i] * p.n_self
        if attn.mode == "fixed":
            reads += [i - d for d, n in p.groups for _ in range(n)]
        else:
            w = attn.weights().detach().abs()  # (n_cross, S)
            reads += [i - p.cands[int(s)] for s in w.argmax(1)]
        out.append(reads)
    return out


def parse_heads(spec: str, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    """'1.0,2.3' -> [(1, 0), (2, 3)], checked against the model's shape."""
    heads = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", part)
        if not m:
            raise HeadsError(f"--ablate {spec!r}: {part!r} is not LAYER.HEAD (e.g. 1.0,2.3; both from 0)")
        L, H = int(m[1]), int(m[2])
        if L >= n_layer or H >= n_head:
            raise HeadsError(
                f"--ablate {spec!r}: head {L}.{H} does not exist (layers 0..{n_layer - 1}, heads 0..{n_head - 1})"
            )
        heads.append((L, H))
    return list(dict.fromkeys(heads))


# --- data -----------------------------------------------------------------------------------------------
def repeated_tokens(
    n_seq: int, vocab: int, seq_len: int, gen: torch.Generator, device, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """(n_seq, 2n) int64: a block of n distinct random tokens, repeated twice. Tokens are uniform over the
    vocabulary, or drawn without replacement in proportion to `weights` (V,) (a language model: the tokens'
    frequencies in its evaluation windows, so the block holds tokens the model has learned, not rare ones);
    n = min(seq_len // 2, the number of tokens that can be drawn)."""
    support = vocab if weights is None else int((weights > 0).sum())
    n = min(seq_len // 2, support)
    if n < 2:
        raise HeadsError(f"repeated sequences need seq_len >= 4 and >= 2 tokens (got seq_len {seq_len}, {support})")
    if weights is None:
        block = torch.rand(n_seq, vocab, generator=gen, device=device).argsort(-1)[:, :n]
    else:
        w = weights.to(device=device, dtype=torch.float32).expand(n_seq, vocab)
        block = torch.multinomial(w, n, replacement=False, generator=gen)
    return torch.cat([block, block], dim=1)


def context_bands(L: int) -> tuple[range, range]:
    """The early and late positions of the in-context score (see the module docstring)."""
    w = max(1, min(10, L // 8))
    e = 49 if L >= 100 else L // 4
    return range(e, min(e + w, L)), range(L - w, L)


# --- attention probabilities and their summaries -----------------------------------------------------------
@torch.no_grad()
def attention_calls(model, forward) -> list[tuple[int, int, torch.Tensor]]:
    """Run `forward()` with every head recorded: [(iteration, layer, P (B, N, T, T))] in call order."""
    if model.cfg.drop_tokens:
        raise HeadsError("iclab heads needs a model without token dropping (model.drop_tokens=0)")
    hook = HeadHook(record_probs=True)
    n_blocks = len(model.block_order or model.blocks)
    with model.hooked(hook):
        hook.start()
        forward()
    return [(c // n_blocks, layer, p) for c, (layer, p) in enumerate(hook.probs)]


def pattern_summary(P: torch.Tensor, regression: bool = False) -> dict[str, torch.Tensor]:
    """P (B, N, T, T) -> per head (N,): entropy, prev_token, first_token (and x_to_x, y_to_y for regression)."""
    P = P.double()
    T = P.shape[-1]
    q = slice(1, T)
    ent = -(P * P.clamp_min(1e-30).log()).sum(-1)[..., q]
    idx = torch.arange(1, T)
    out = {
        "entropy": ent.mean((0, 2)),
        "prev_token": P[..., idx, idx - 1].mean((0, 2)),
        "first_token": P[..., q, 0].mean((0, 2)),
    }
    if regression:
        i = torch.arange(T)
        same = (i[:, None] % 2 == i[None, :] % 2) & (i[None, :] < i[:, None])  # earlier tokens of the same role
        mass = (P * same).sum(-1)  # (B, N, T)
        out["x_to_x"] = mass[..., 2::2].mean((0, 2)) if T > 2 else torch.zeros(P.shape[1])
        out["y_to_y"] = mass[..., 3::2].mean((0, 2)) if T > 3 else torch.zeros(P.shape[1])
    return out


def uniform_reference(T: int, regression: bool = False) -> dict[str, float]:
    """The pattern summaries of a head that spreads its attention evenly over the causal window (the scores'
    no-preference level: x_to_x is ~0.45 for any head that ignores roles, not 0)."""
    P = torch.ones(T, T).tril()
    P = (P / P.sum(-1, keepdim=True))[None, None]
    return {key: float(v[0]) for key, v in pattern_summary(P, regression).items()}


def induction_summary(P: torch.Tensor) -> dict[str, torch.Tensor]:
    """P (B, N, 2n, 2n) on repeated blocks -> per head (N,): induction (= prefix matching) and duplicate."""
    n = P.shape[-1] // 2
    i = torch.arange(n)
    ind = P[..., n + i, i + 1].double().mean((0, 2))
    return {"induction": ind, "prefix_matching": ind, "duplicate": P[..., n + i, i].double().mean((0, 2))}


def eigen_copying(M: torch.Tensor) -> float | None:
    """sum Re(l) / sum |l| over the eigenvalues l of the square matrix M (None when M is 0)."""
    ev = np.linalg.eigvals(M.detach().double().cpu().numpy())
    tot = np.abs(ev).sum()
    return None if tot < 1e-12 else float(ev.real.sum() / tot)


def _value_weight(model, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(W_V (H, C) of the head, the gain of the layer norm its values were read through), or None (a mixing
    Reflex head, whose values are a learned blend of several layers)."""
    attn, C = model.blocks[layer].attn, model.cfg.n_embd
    H = C // model.cfg.n_head
    p = getattr(attn, "p", None)
    if p is None:
        return attn.c_attn.weight[2 * C + head * H : 2 * C + (head + 1) * H], model.blocks[layer].ln_1.weight
    if head < p.n_self:
        src, pos = layer, p.kv_heads.index(head)
    elif attn.mode != "fixed":
        return None
    else:
        g, start = 0, p.n_self
        while head >= start + p.groups[g][1]:
            start += p.groups[g][1]
            g += 1
        d = p.groups[g][0]
        if attn.reproject:  # this layer's own K/V weights of its cross heads, on the source layer's input
            half, a = p.n_cross * H, head - p.n_self
            return attn.c_kv_cross.weight[half + a * H : half + (a + 1) * H], model.blocks[layer - d].ln_1.weight
        src, pos = layer - d, attn.src_pos[d] + head - start
    sa = model.blocks[src].attn
    n_kv = len(sa.p.kv_heads)
    off = C + n_kv * H + pos * H
    return sa.c_attn.weight[off : off + H], model.blocks[src].ln_1.weight


@torch.no_grad()
def copying_scores(model) -> list[list[float | None]]:
    """Per layer, per head: the OV copying score (see the module docstring); token models only."""
    C, N = model.cfg.n_embd, model.cfg.n_head
    H = C // N
    W_E = model.wte.weight.t()  # (C, V)
    W_U = model.wte.weight * model.ln_f.weight  # (V, C)
    out = []
    for i, blk in enumerate(model.blocks):
        row = []
        for h in range(N):
            vw = _value_weight(model, i, h)
            if vw is None:
                row.append(None)
                continue
            W_V = vw[0] * vw[1]  # (H, C)
            W_O = blk.attn.c_proj.weight[:, h * H : (h + 1) * H]  # (C, H)
            row.append(eigen_copying((W_V @ W_E) @ (W_U @ W_O)))
        out.append(row)
    return out


# --- evaluation under ablation ----------------------------------------------------------------------------
class Evaluator:
    """Per-item values of the run's headline on fixed data, under a HeadHook (ablation) or none."""

    def __init__(self, model, workload, data: list, kind: str, k: int | None = None):
        self.model, self.workload, self.data, self.kind, self.k = model, workload, data, kind, k

    @torch.no_grad()
    def values(self, hook: HeadHook | None = None) -> dict[str, torch.Tensor]:
        from iclab.workloads.sequence.base import IGNORE, token_cross_entropy

        parts: dict[str, list] = {}
        for batch in self.data:
            if hook is not None:
                hook.start()
            if self.kind == "regression":
                xs, ys, norm = batch
                pred = self.model.predict(xs[:, : self.k + 1], ys[:, : self.k + 1])[:, -1]
                vals = {"error": (pred - ys[:, self.k]).double() ** 2 / norm}
            else:
                x, y = batch
                logits = self.model.logits(x)
                ce = token_cross_entropy(logits, y).double()
                keep = (y != IGNORE).double()
                vals = {"loss": (ce * keep).sum(1) / keep.sum(1).clamp_min(1)}
                if self.kind == "language_model":
                    early, late = context_bands(x.shape[1])
                    vals["late_loss"] = ce[:, late.start : late.stop].mean(1)
                    vals["in_context"] = vals["late_loss"] - ce[:, early.start : early.stop].mean(1)
                else:
                    right = ((logits.argmax(-1) == y) | (y == IGNORE)).all(1)
                    vals["exact_match"] = right.double()
            for key, v in vals.items():
                parts.setdefault(key, []).append(v.cpu())
        return {key: torch.cat(v) for key, v in parts.items()}

    def means(self) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
        """The unablated values, and every call's mean head outputs (for mean ablation)."""
        hook = HeadHook(record_outputs=True)
        with self.model.hooked(hook):
            vals = self.values(hook)
        return vals, {c: s / hook.out_n[c] for c, s in hook.out_sum.items()}


def paired(base: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per metric: the mean change (new - base) over items with its 95% t-interval, and the ablated value."""
    out = {}
    for key, b in base.items():
        diff = (new[key] - b).tolist()
        m, h = mean_ci(diff)
        out[key] = {"value": float(new[key].mean()), "delta": m, "ci95": h}
    return out


def ablate(ev: Evaluator, base, means, heads: list[tuple[int, int]], mode: str) -> dict[str, dict]:
    spec: dict[int, dict[int, str]] = {}
    for L, H in heads:
        spec.setdefault(L, {})[H] = mode
    hook = HeadHook(ablate=spec, means=means)
    with ev.model.hooked(hook):
        return paired(base, ev.values(hook))


def headline_of(kind: str, k: int | None) -> tuple[str, str]:
    """(metric key, its description) of the run's headline."""
    if kind == "regression":
        return "error", f"normalized squared error at k={k}"
    if kind == "language_model":
        return "loss", "loss (nats/token)"
    return "exact_match", "exact match"


def summarize_values(vals: dict[str, torch.Tensor]) -> dict[str, dict]:
    return {key: dict(zip(("mean", "ci95"), mean_ci(v.tolist()))) for key, v in vals.items()}


def head_label(layer: int, head: int) -> str:
    return f"{layer}.{head}"


def ablation_sets(scores: dict[str, float], k: int, n_random: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """The k heads of highest score, and n_random sets of k heads drawn from the others."""
    order = sorted(scores, key=lambda s: -scores[s])
    top, rest = order[:k], order[k:]
    rng = np.random.default_rng(seed)
    rand: list[list[str]] = []
    for _ in range(50 * n_random if len(rest) >= k else 0):  # distinct sets while there are enough
        s = sorted(rng.choice(rest, size=k, replace=False).tolist())
        if s not in rand:
            rand.append(s)
        if len(rand) == n_random:
            break
    return top, rand


# --- every head of a model -----------------------------------------------------------------------------------
@torch.no_grad()
def score_heads(model, family: str, data: dict, copying: bool = True) -> list[dict]:
    """One record per (iteration, layer, head): the pattern summaries on data["patterns"] (regression: (xs, ys);
    tokens: (B, L) ids), the induction scores on data["repeated"] (tokens), the copying score, and `reads`."""
    model.eval()
    reads = head_sources(model)
    regression = family == "regression"
    if regression:
        xs, ys = data["patterns"]
        calls = attention_calls(model, lambda: model.predict(xs, ys))
    else:
        calls = attention_calls(model, lambda: model.logits(data["patterns"]))
    summ = {(t, L): pattern_summary(P, regression) for t, L, P in calls}
    if not regression:
        for t, L, P in attention_calls(model, lambda: model.logits(data["repeated"])):
            summ[(t, L)].update(induction_summary(P))
    cop = copying_scores(model) if copying and not regression else None
    records = []
    for (t, L), s in summ.items():
        for h in range(model.cfg.n_head):
            rec = {"iteration": t, "layer": L, "head": h, "label": head_label(L, h), "reads": reads[L][h]}
            rec.update({key: float(v[h]) for key, v in s.items()})
            if cop is not None:
                rec["copying"] = cop[L][h]
            records.append(rec)
    return records


def best(records: list[dict], key: str) -> dict:
    """The record of the highest `key` (over iterations, layers and heads)."""
    return max(records, key=lambda r: r[key])


def score_key(family: str) -> str:
    """The score that ranks heads for the top-set ablation: induction for tokens, x_to_x for regression."""
    return "x_to_x" if family == "regression" else "induction"


def lm_loss_on(model, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L-1) cross-entropy of next-token prediction on `tokens` (B, L)."""
    logits = model.logits(tokens[:, :-1])
    return F.cross_entropy(logits.transpose(1, 2).float(), tokens[:, 1:], reduction="none")


def as_heads(labels: list[str]) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.split(".")) for s in labels]


def finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
