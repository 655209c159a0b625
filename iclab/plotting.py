"""Figures without a display: the one place that selects matplotlib's non-interactive Agg backend.

A module that draws imports pyplot from here, inside the function that draws (so `import iclab` stays
fast and a figure never needs a display):

    from iclab.plotting import plt
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (pyplot after the backend is chosen)

__all__ = ["plt"]
