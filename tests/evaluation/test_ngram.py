import math
from collections import Counter

import numpy as np
import pytest

from iclab.evaluation.ngram import kneser_ney_logprobs, ngram_baselines, unigram_logprobs

VOCAB = "abcdrz"  # 'z' never occurs in train
TRAIN = "abracadabra abracadabra cabbad abracadabra dacabra"
VAL = "abracazabra dabbrz cadabra"


def ids(text):
    return np.array([VOCAB.index(c) for c in text.replace(" ", "")], dtype=np.uint16)


# -- an independent, direct implementation of the documented formulas, with dicts and loops ----------


def brute_unigram(train, val, V):
    c = Counter(train)
    return [math.log((c[w] + 1) / (len(train) + V)) for w in val]


def brute_kn(train, val, V, order):
    train, val = [int(t) for t in train], [int(t) for t in val]
    raw = {m: Counter(tuple(train[i : i + m]) for i in range(len(train) - m + 1)) for m in range(1, order + 1)}
    cont = {m: Counter(g[1:] for g in raw[m + 1]) for m in range(1, order)}

    def discount(table):
        n1 = sum(1 for c in table.values() if c == 1)
        n2 = sum(1 for c in table.values() if c == 2)
        return n1 / (n1 + 2 * n2) if n1 else 0.5

    def prob(m, h, w, top):
        if m == 0:
            return 1 / V
        table = raw[m] if m == top else cont[m]
        lower = prob(m - 1, h[1:], w, top)
        total = sum(c for g, c in table.items() if g[:-1] == h)
        if total == 0:
            return lower
        types = sum(1 for g, c in table.items() if g[:-1] == h and c > 0)
        d = discount(table)
        return max(table.get(h + (w,), 0) - d, 0) / total + d * types / total * lower

    out = []
    for i, w in enumerate(val):
        k = min(i, order - 1)
        out.append(math.log(prob(k + 1, tuple(val[i - k : i]), w, k + 1)))
    return out


def test_unigram_matches_brute_force():
    train, val = ids(TRAIN), ids(VAL)
    got = unigram_logprobs(train, val, len(VOCAB))
    np.testing.assert_allclose(got, brute_unigram(train.tolist(), val.tolist(), len(VOCAB)), rtol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_matches_brute_force(order):
    train, val = ids(TRAIN), ids(VAL)
    got = kneser_ney_logprobs(train, val, len(VOCAB), order)
    assert got.shape == (len(val),) and np.isfinite(got).all()
    np.testing.assert_allclose(got, brute_kn(train, val, len(VOCAB), order), rtol=1e-12)


def test_kneser_ney_matches_brute_force_without_singletons():
    train, val = np.array([0, 1] * 6), np.array([1, 0, 1, 2, 0, 0])  # n1 = 0: the fallback discount
    for order in (2, 3):
        np.testing.assert_allclose(
            kneser_ney_logprobs(train, val, 3, order), brute_kn(train, val, 3, order), rtol=1e-12
        )


@pytest.mark.parametrize("order", [2, 3, 5])
@pytest.mark.parametrize("context", ["abr", "ra", "ca", "zz", "dz", ""])  # seen, unseen and empty contexts
def test_kneser_ney_distributions_sum_to_one(order, context):
    train, V = ids(TRAIN), len(VOCAB)
    h = [VOCAB.index(c) for c in context]
    p = [math.exp(kneser_ney_logprobs(train, np.array(h + [w]), V, order)[-1]) for w in range(V)]
    assert min(p) > 0 and sum(p) == pytest.approx(1.0, abs=1e-12)


def test_baselines_report_nats_and_bits():
    train, val = ids(TRAIN), ids(VAL)
    res = ngram_baselines(train, val, len(VOCAB), orders=(1, 2, 3, 5))
    assert list(res) == ["unigram", "bigram_kn", "trigram_kn", "5gram_kn"]
    assert res["unigram"]["smoothing"] == "add-one" and res["5gram_kn"]["smoothing"] == "interpolated Kneser-Ney"
    assert [r["order"] for r in res.values()] == [1, 2, 3, 5]
    for r in res.values():
        assert r["bits"] == pytest.approx(r["nats"] / math.log(2), rel=1e-12)
    assert res["unigram"]["nats"] == pytest.approx(-np.mean(brute_unigram(train.tolist(), val.tolist(), 6)))
    assert res["trigram_kn"]["nats"] == pytest.approx(-np.mean(brute_kn(train, val, 6, 3)), rel=1e-12)
    assert res["5gram_kn"]["nats"] == -kneser_ney_logprobs(train, val, len(VOCAB), 5).mean()


def test_higher_orders_win_on_repetitive_text():
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 20, size=37)
    train, val = np.tile(pattern, 60), np.tile(pattern, 5)
    res = ngram_baselines(train, val, 20, orders=(1, 2, 3))
    assert res["trigram_kn"]["nats"] < 0.2 < 2.0 < res["unigram"]["nats"]
    assert res["trigram_kn"]["nats"] <= res["bigram_kn"]["nats"] + 1e-9


def test_input_errors():
    with pytest.raises(ValueError, match="do not fit in int64"):
        kneser_ney_logprobs(np.zeros(4, dtype=np.int64), np.zeros(2, dtype=np.int64), 2**16, 4)
    with pytest.raises(ValueError, match="val id 7 at position 1 is outside the vocabulary"):
        ngram_baselines(np.zeros(4, dtype=np.int64), np.array([0, 7]), 6)
    with pytest.raises(ValueError, match="non-empty"):
        unigram_logprobs(np.zeros(4, dtype=np.int64), np.zeros(0, dtype=np.int64), 6)
    with pytest.raises(ValueError, match="order must be a positive integer"):
        kneser_ney_logprobs(np.zeros(4, dtype=np.int64), np.zeros(2, dtype=np.int64), 6, 0)


def test_train_shorter_than_the_order():
    train = np.array([0, 1])
    for order in (3, 4):
        for h in ([], [0], [1, 0], [2, 2, 2]):
            p = [math.exp(kneser_ney_logprobs(train, np.array(h + [w]), 3, order)[-1]) for w in range(3)]
            b = [math.exp(brute_kn(train, np.array(h + [w]), 3, order)[-1]) for w in range(3)]
            assert sum(p) == pytest.approx(1.0, abs=1e-12) and p == pytest.approx(b, rel=1e-12)
