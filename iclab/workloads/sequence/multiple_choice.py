"""Task `multiple_choice`: train (or fine-tune) a language model on ARC-format multiple-choice questions.

Each training question becomes one sequence, the context `"Question: {stem}\\nAnswer:"` followed by
its correct continuation `" {text}"` (the same strings the harness in iclab/evaluation/multiple_choice.py
scores), and the loss counts the continuation's tokens only: targets are IGNORE over the context and
the padding. The file is tokenized once, into right-padded (N, L) int64 inputs and targets, L being
the longest question's tokens minus one (its last token is only a target); a training batch is
`batch_size` rows drawn with replacement by the step's generator. Right padding puts every token at
the position the harness gives it. The model must hold L positions (checked when the workload is
built, before a run directory is written); `task.seq_len` and the seq_len curriculum do not apply.

Tokenizer (`self.tokenizer`, recorded in RUN_DIR/tokenizer.json and in the checkpoint identity):
`char` (default) has the distinct characters of the questions of `file` and `eval_file` plus the
template text; `byte` is UTF-8; `tokenizer_from: RUN_DIR` takes the tokenizer.json of a language-model
run (to fine-tune a pretrained char LM; a character it lacks is an error naming the file and line) and
wins over `tokenizer`. A workload built for an existing run directory with a tokenizer.json uses that
one, so evaluation reads ids the model was trained on.

Evaluation: the harness on `eval_file` (default: `file`), written to eval[_TAG].json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from iclab.evaluation import multiple_choice as mc  # the module (tolerates the import cycle via iclab.workloads)
from iclab.files import write_json
from iclab.registry import TASKS
from iclab.workloads.sequence.base import IGNORE, SequenceOptions, SequenceWorkload
from iclab.workloads.sequence.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    TokenizerError,
    tokenizer_from_json,
)


class MultipleChoiceOptions(SequenceOptions):
    file: str
    eval_file: str | None = None
    tokenizer: Literal["char", "byte"] = "char"
    tokenizer_from: str | None = None


def load_run_tokenizer(run_dir: str | Path, what: str = "task.options.tokenizer_from") -> Tokenizer:
    path = Path(run_dir) / "tokenizer.json"
    if not path.is_file():
        raise mc.MultipleChoiceError(f"{what}: {path} not found (a language-model run records its tokenizer there)")
    try:
        return tokenizer_from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TokenizerError) as e:
        raise mc.MultipleChoiceError(f"{what}: {path} is not a tokenizer description: {e}") from None


def training_examples(tokenizer: Tokenizer, questions: list[mc.Question]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(inputs, targets) (N, L) int64, right-padded, targets IGNORE except at the correct answer's
    tokens, and the index of the longest question."""
    pairs = [
        mc.encode_pair(tokenizer, q, mc.context_of(q.stem), mc.continuation_of(q.texts[q.answer])) for q in questions
    ]
    lengths = np.asarray([len(ids) for ids, _ in pairs])
    L = int(lengths.max()) - 1
    inputs = np.zeros((len(pairs), L), dtype=np.int64)
    targets = np.full((len(pairs), L), IGNORE, dtype=np.int64)
    for r, (ids, k) in enumerate(pairs):  # one row copy each; sampling and the loss are batched
        n = len(ids) - 1
        inputs[r, :n] = ids[:-1]
        targets[r, n - k : n] = ids[-k:]
    return torch.from_numpy(inputs), torch.from_numpy(targets), int(lengths.argmax())


@TASKS.register("multiple_choice")
class MultipleChoice(SequenceWorkload):
    """Multiple-choice questions (ARC JSONL): loss on the correct answer's tokens, scored by log-likelihood."""

    Options = MultipleChoiceOptions
    eval_options = ("loops", "tag", "step")  # the question file: no prompts, no seed

    def __init__(self, cfg, run_dir=None):
        super().__init__(cfg, run_dir)
        o = self.opts
        self.questions = mc.read_questions(o.file)
        self.eval_path = Path(o.eval_file or o.file)
        self.eval_questions = mc.read_questions(self.eval_path) if o.eval_file else self.questions
        if run_dir is not None and (Path(run_dir) / "tokenizer.json").is_file():
            self.tokenizer = load_run_tokenizer(run_dir, f"run {run_dir}")
        elif o.tokenizer_from is not None:
            self.tokenizer = load_run_tokenizer(o.tokenizer_from)
        elif o.tokenizer == "char":
            parts = [mc.TEMPLATE_TEXT] + [q.stem + "".join(q.texts) for q in self.questions + self.eval_questions]
            self.tokenizer = CharTokenizer.from_text("".join(parts))
        else:
            self.tokenizer = ByteTokenizer()
        self.vocab_size = self.tokenizer.vocab_size
        self.inputs, self.targets, longest = training_examples(self.tokenizer, self.questions)
        if o.eval_file:  # every eval character must be in the vocabulary too (fails here, not after training)
            mc.encode_choices(self.tokenizer, self.eval_questions, n_positions=1 << 30)
        n_pos = cfg.model.n_positions
        if self.inputs.shape[1] > n_pos:
            raise mc.MultipleChoiceError(
                f"{self.questions[longest].where}: the longest question needs {self.inputs.shape[1]} positions "
                f"> model.n_positions={n_pos}; raise model.n_positions"
            )
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def check_config(cls, cfg) -> None:
        t, c = cfg.task, cfg.curriculum
        if c.dims is not None or c.points is not None or c.seq_len is not None:
            raise ValueError(
                f"{t.name}: curriculum.dims, .points and .seq_len do not apply (the sequence length "
                "is the longest question of task.options.file)"
            )
        if t.seq_len is not None:
            raise ValueError(
                f"task.seq_len does not apply to {t.name}: the sequence length is the longest question "
                "of task.options.file"
            )

    @property
    def seq_len(self) -> int:
        return int(self.inputs.shape[1])

    def sample(self, batch, seq_len, gen, device):
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = (self.inputs.to(device), self.targets.to(device))
        inputs, targets = self._on_device[key]
        rows = torch.randint(0, inputs.shape[0], (batch,), generator=gen, device=gen.device).to(inputs.device)
        return inputs[rows], targets[rows]

    def identity(self):
        return {**super().identity(), "tokenizer": self.tokenizer.fingerprint()}

    def start_run(self, run_dir):
        write_json(Path(run_dir) / "tokenizer.json", self.tokenizer.to_json())

    def evaluate(self, run_dir, model, device, *, tag=None, step=None, loops=None, **_):
        loops = loops or self.cfg.eval.loops or self.cfg.model.loops
        ev = {
            "task": "multiple_choice",
            "file": str(self.eval_path),
            "sha256": mc.file_sha256(self.eval_path),
            "tokenizer": self.tokenizer.kind,
            "tokenizer_fingerprint": self.tokenizer.fingerprint(),
            "loops": loops,
            "step": step,
            **mc.score_questions(model, self.tokenizer, self.eval_questions, device, loops=loops),
        }
        write_json(Path(run_dir) / f"eval{'_' + tag if tag else ''}.json", ev)
        return ev

    def headline(self, ev):
        return "multiple-choice accuracy", ev["accuracy"], False

    def summary(self, ev):
        return mc.summary_line(ev)
