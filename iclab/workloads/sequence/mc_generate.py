"""A seeded generator of simple multiple-choice questions in ARC's JSONL format (see
iclab/evaluation/multiple_choice.py), small enough for a character-level model to learn.

Five templates, drawn with equal probability, each with 4 choices:

    add        "What is 23 plus 9?"                                   distractors: sum +-1, +-2, +-10
    subtract   "What is 41 minus 17?"                                 distractors: difference +-1, +-2, +-10
    extreme    "Which is the largest: 34, 71, 12 or 58?" (or smallest)  choices: the four numbers
    alphabet   "Which letter comes first in the alphabet: q, d, m or w?" (or last)  choices: the four letters
    next       "What comes next: 12, 15, 18?" (an arithmetic run) or "What comes next: c, d, e?" (letters,
               stride 1 or 2, either case)                            distractors: near the answer

The correct answer goes to a uniformly random position (A-D), the distractors in random order around
it. Every stem (the question text) occurs once in a set, and `generate(..., exclude=stems)` never
produces a stem of `exclude`: the test set is drawn with the train set's stems excluded, so the two
share no question text (`main` checks this again before writing). The same (n, seed, exclude) give the
same questions (numpy's PCG64 seeded with `seed`).

    python -m iclab.workloads.sequence.mc_generate --out examples/multiple_choice
"""

from __future__ import annotations

import argparse
import json
import string
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

LABELS = "ABCD"
MAX_TRIES = 1000  # draws of one template before it counts as exhausted


def _pick_distractors(rng: np.random.Generator, answer, candidates: Iterable, fill: Callable[[], object]) -> list:
    """3 distinct distractors: from `candidates` (minus the answer) in random order, then `fill()` draws."""
    pool = list(dict.fromkeys(c for c in candidates if c != answer))
    out = [pool[i] for i in rng.permutation(len(pool))[:3]]
    while len(out) < 3:
        c = fill()
        if c != answer and c not in out:
            out.append(c)
    return out


def _near(rng: np.random.Generator, value: int, deltas: Iterable[int]) -> list[str]:
    cands = [value + d for d in deltas if value + d >= 0]
    return [str(c) for c in _pick_distractors(rng, value, cands, lambda: int(rng.integers(0, value + 20)))]


def _add(rng):
    a, b = (int(v) for v in rng.integers(0, 50, size=2))
    return f"What is {a} plus {b}?", str(a + b), _near(rng, a + b, (-1, 1, -2, 2, -10, 10))


def _subtract(rng):
    a, b = sorted((int(v) for v in rng.integers(0, 100, size=2)), reverse=True)
    return f"What is {a} minus {b}?", str(a - b), _near(rng, a - b, (-1, 1, -2, 2, -10, 10))


def _list_of(items: list[str]) -> str:
    return f"{', '.join(items[:-1])} or {items[-1]}"


def _extreme(rng):
    nums = [int(v) for v in rng.choice(100, size=4, replace=False)]
    word, pick = ("largest", max) if rng.random() < 0.5 else ("smallest", min)
    ans = pick(nums)
    return (f"Which is the {word}: {_list_of([str(v) for v in nums])}?", str(ans), [str(v) for v in nums if v != ans])


def _alphabet(rng):
    letters = [string.ascii_lowercase[i] for i in rng.choice(26, size=4, replace=False)]
    word, pick = ("first", min) if rng.random() < 0.5 else ("last", max)
    ans = pick(letters)
    return f"Which letter comes {word} in the alphabet: {_list_of(letters)}?", ans, [c for c in letters if c != ans]


def _next(rng):
    if rng.random() < 0.7:  # numbers
        step, length = int(rng.integers(1, 10)), int(rng.integers(3, 5))
        start = int(rng.integers(0, 61))
        run = [start + i * step for i in range(length)]
        ans = run[-1] + step
        return (
            f"What comes next: {', '.join(map(str, run))}?",
            str(ans),
            _near(rng, ans, (-1, 1, -2, 2, step, -step + 1)),
        )
    abc = string.ascii_lowercase if rng.random() < 0.5 else string.ascii_uppercase
    stride, length = int(rng.integers(1, 3)), int(rng.integers(2, 5))
    start = int(rng.integers(0, 26 - stride * length))
    run = [abc[start + i * stride] for i in range(length)]
    k = start + length * stride
    ans = abc[k]
    near = [abc[j] for j in range(max(k - 3, 0), min(k + 4, 26))]
    return (
        f"What comes next: {', '.join(run)}?",
        ans,
        _pick_distractors(rng, ans, near, lambda: abc[int(rng.integers(0, 26))]),
    )


TEMPLATES: dict[str, Callable[[np.random.Generator], tuple[str, str, list[str]]]] = {
    "add": _add,
    "subtract": _subtract,
    "extreme": _extreme,
    "alphabet": _alphabet,
    "next": _next,
}


def generate(n: int, seed: int, exclude: Iterable[str] = ()) -> list[dict]:
    """`n` questions (ARC JSONL rows) with distinct stems, none of them in `exclude`."""
    rng = np.random.default_rng(seed)
    seen = set(exclude)
    names = list(TEMPLATES)
    rows = []
    for i in range(n):
        name = names[int(rng.integers(len(names)))]
        for _ in range(MAX_TRIES):
            stem, answer, distractors = TEMPLATES[name](rng)
            if stem not in seen:
                break
        else:
            raise RuntimeError(
                f"mc_generate: template {name!r} ran out of new questions after {MAX_TRIES} draws "
                f"(question {i} of {n}, seed {seed})"
            )
        seen.add(stem)
        pos = int(rng.integers(4))
        texts = [distractors[j] for j in rng.permutation(3)]
        texts.insert(pos, answer)
        rows.append(
            {
                "id": f"gen-s{seed}-{i:05d}",
                "question": {"stem": stem, "choices": [{"label": lab, "text": t} for lab, t in zip(LABELS, texts)]},
                "answerKey": LABELS[pos],
            }
        )
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line (UTF-8, written atomically)."""
    from iclab.files import write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="write train.jsonl and test.jsonl of generated multiple-choice questions")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--test-seed", type=int, default=1)
    a = ap.parse_args(argv)
    train = generate(a.train, a.train_seed)
    test = generate(a.test, a.test_seed, exclude={r["question"]["stem"] for r in train})
    shared = {r["question"]["stem"] for r in train} & {r["question"]["stem"] for r in test}
    if shared:  # guaranteed by `exclude`; checked again before anything is written
        raise RuntimeError(f"mc_generate: train and test share {len(shared)} stems, e.g. {sorted(shared)[0]!r}")
    write_jsonl(a.out / "train.jsonl", train)
    write_jsonl(a.out / "test.jsonl", test)
    print(f"wrote {len(train)} questions to {a.out / 'train.jsonl'} and {len(test)} to {a.out / 'test.jsonl'}")


if __name__ == "__main__":
    main()
