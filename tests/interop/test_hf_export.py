"""`iclab export --format hf`: transformers loads the directory and computes iclab's logits; tokenizers agree."""


import pytest
import torch

from iclab.interop.hf_export import export_run
from iclab.runs import load_run_config, load_run_model
from iclab.workloads import make_workload

transformers = pytest.importorskip("transformers")


def test_exported_lm_gives_iclabs_logits(lm_run, tmp_path):
    out = tmp_path / "hf"
    export_run(lm_run, out)
    cfg = load_run_config(lm_run)
    workload = make_workload(cfg, lm_run)
    ours = load_run_model(lm_run, cfg, torch.device("cpu"), workload).eval()
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    idx = torch.randint(0, workload.vocab_size, (3, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours.logits(idx), hf(idx).logits
    diff = (a - b).abs().max().item()
    assert diff < 1e-4, diff
    print(f"max |logit difference| = {diff:.2e}")
