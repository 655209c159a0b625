"""An exported model under lm-evaluation-harness on a local ARC-layout task: the harness's per-choice
log-likelihoods and accuracy equal iclab's multiple-choice scoring on the same questions (slow); the fast
sibling scores the exported model with transformers directly, the way the harness does."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from iclab.config import validate
from iclab.interop.hf_export import export_run
from iclab.runs import evaluate_multiple_choice, train_run

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[2]
N_QUESTIONS = 40

TASK_YAML = """task: iclab_local_arc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def mc_export(tmp_path_factory):
    """A multiple-choice run trained briefly, its export, and its first questions in HF's ARC layout."""
    tmp = tmp_path_factory.mktemp("mc")
    cfg = {
        "task": {
            "name": "multiple_choice",
            "options": {
                "file": str(ROOT / "examples/multiple_choice/train.jsonl"),
                "eval_file": str(ROOT / "examples/multiple_choice/test.jsonl"),
            },
        },
        "model": {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 80},
        "training": {"steps": 20, "batch_size": 16, "lr": 3e-3, "device": "cpu"},
        "logging": {"log_every": 10, "ckpt_every": 100, "tensorboard": False, "progress": False},
    }
    train_run(validate(cfg), tmp / "run", evaluate_after=False)
    export_run(tmp / "run", tmp / "hf")
    rows = []
    for line in (ROOT / "examples/multiple_choice/test.jsonl").read_text().splitlines()[:N_QUESTIONS]:
        q = json.loads(line)
        ch = q["question"]["choices"]
        rows.append(
            {
                "id": q["id"],
                "question": q["question"]["stem"],
                "choices": {"text": [c["text"] for c in ch], "label": [c["label"] for c in ch]},
                "answerKey": q["answerKey"],
            }
        )
    (tmp / "arc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ours = evaluate_multiple_choice(tmp / "run", tmp / "arc.jsonl")
    return tmp, rows, ours


def test_transformers_scores_equal_iclabs(mc_export):
    """The harness's recipe by hand: encode context + continuation, score the continuation's tokens."""
    tmp, rows, ours = mc_export
    tok = transformers.AutoTokenizer.from_pretrained(tmp / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp / "hf").eval()
    right = 0
    for r, p in zip(rows, ours["predictions"]):
        ctx = f"Question: {r['question']}\nAnswer:"
        lls = []
        for text in r["choices"]["text"]:
            whole, n_ctx = tok(ctx + " " + text)["input_ids"], len(tok(ctx)["input_ids"])
            with torch.no_grad():
                logp = hf(torch.tensor([whole])).logits[0, :-1].log_softmax(-1)
            lls.append(sum(logp[t - 1, whole[t]].item() for t in range(n_ctx, len(whole))))
        assert np.allclose(lls, p["scores"], atol=1e-4)
        right += int(np.argmax(lls)) == r["choices"]["label"].index(r["answerKey"])
    assert right / len(rows) == ours["accuracy"]


@pytest.mark.slow
def test_lm_eval_harness_agrees_with_iclab(mc_export, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval")
    pytest.importorskip("accelerate")  # lm-eval's hf model imports it
    from lm_eval.tasks import TaskManager

    tmp, rows, ours = mc_export
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp / "tasks").mkdir(exist_ok=True)
    (tmp / "tasks" / "local_arc.yaml").write_text(TASK_YAML.format(path=tmp / "arc.jsonl"))
    res = lm_eval.simple_evaluate(
        model="hf",
        # char tokenizers have no BOS/EOS: the harness wants a prefix id (used only for empty contexts)
        model_args=f"pretrained={tmp / 'hf'},dtype=float32,prefix_token_id=0",
        tasks=["iclab_local_arc"],
        task_manager=TaskManager(include_path=str(tmp / "tasks")),
        device="cpu",
        batch_size=16,
        log_samples=True,
    )
    assert res["results"]["iclab_local_arc"]["acc,none"] == pytest.approx(ours["accuracy"], abs=1e-12)
    for s in res["samples"]["iclab_local_arc"]:
        lls = [r[0] for r in s["filtered_resps"]]
        assert np.allclose(lls, ours["predictions"][s["doc_id"]]["scores"], atol=1e-4)
