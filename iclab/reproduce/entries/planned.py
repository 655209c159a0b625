"""Headline results whose entries are not built yet: `iclab reproduce --list` shows them as NOT BUILT."""

from iclab.registry import REPRODUCTIONS
from iclab.reproduce.base import Planned

PLANNED: tuple[Planned, ...] = ()  # every headline result of the seeds has an entry now

for _p in PLANNED:
    REPRODUCTIONS.register(_p.name, help=_p.claim)(_p)
