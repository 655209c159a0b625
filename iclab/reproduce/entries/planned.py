"""Headline results whose entries are not built yet: `iclab reproduce --list` shows them as NOT BUILT."""

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Planned

for _p in (
    Planned("seed001-reuse", "Seed 001 (weight reuse)", "An RNN-like model reusing 3 layers beats 6 independent layers "
            "on in-context linear regression.", "configs exist (configs/reuse/tiny); the entry is not written yet"),
    Planned("seed001-surgery", "Seed 001 (layer surgery)", "Duplicating or shuffling the layers of a trained standard "
            "model at inference does not help.", "iclab surgery exists; the entry is not written yet"),
    Planned("seed002-reflex", "Seed 002 (Reflex attention)", "Reflex attention (heads reading earlier layers) vs "
            "nanoGPT at equal size on language modelling and sorting.", "configs exist (configs/reflex); the entry is "
            "not written yet"),
    Planned("seed004-heavy-tail", "Seed 004 / Kunstner et al. 2024", "On Zipf-distributed classes SGD stalls on the "
            "rare classes and Adam does not.", "issue 13"),
    Planned("seed004-init", "Seed 004", "Deep ReLU nets train with Kaiming init and not with a naive one.", "issue 14"),
    Planned("seed004-double-descent", "Seed 004", "Test error peaks at the interpolation threshold and falls again.",
            "issue 14"),
):
    REPRODUCTIONS.register(_p.name, help=_p.claim)(_p)
