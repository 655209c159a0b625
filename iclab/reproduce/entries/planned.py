"""Headline results whose entries are not built yet: `iclab reproduce --list` shows them as NOT BUILT."""

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Planned

for _p in (
    Planned("seed002-reflex", "Seed 002 (Reflex attention)", "Reflex attention (heads reading earlier layers) vs "
            "nanoGPT at equal size on language modelling and sorting.", "configs exist (configs/reflex); the entry is "
            "not written yet"),
):
    REPRODUCTIONS.register(_p.name, help=_p.claim)(_p)
