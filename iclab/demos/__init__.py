"""The optimization lecture's demonstrations (seed 004), one module and one command each:

    trajectories.py  `iclab demo trajectories`  GD ... Muon, Shampoo on Rosenbrock, a quadratic and Beale
    noise_floor.py   `iclab demo noise-floor`   SGD's constant step stalls at a noise floor; decaying ones do not
    heavy_tail.py    `iclab demo heavy-tail`    Zipf-distributed classes: SGD stalls on the rare ones, Adam not

Each writes `<name>.json` and `<name>.png` into an output directory, is deterministic given its seed and
runs in seconds to a minute on one CPU thread. The optimizers come from iclab's registry.
"""

from __future__ import annotations

from iclab.errors import IclabError

DEMOS = {
    "trajectories": "iclab.demos.trajectories",
    "noise-floor": "iclab.demos.noise_floor",
    "heavy-tail": "iclab.demos.heavy_tail",
}


class DemoError(IclabError, ValueError):
    """A bad demo name or option (one line, exit 2 on the command line)."""


def save_figure(fig, path) -> None:
    from iclab.files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))


def run_demo(name: str, out, seed: int = 0, options: dict | None = None) -> dict:
    """Run demo `name` into directory `out`: writes <name>.json and <name>.png; returns the result."""
    import importlib
    import inspect
    from pathlib import Path

    from iclab.files import write_json

    if name not in DEMOS:
        raise DemoError(f"unknown demo {name!r}; valid: {', '.join(DEMOS)}")
    module = importlib.import_module(DEMOS[name])
    params = inspect.signature(module.run).parameters
    options = dict(options or {})
    for key, value in options.items():
        if key in ("out", "seed") or key not in params:
            valid = [p for p in params if p not in ("out", "seed")]
            raise DemoError(f"demo {name} has no option {key!r}; valid: {', '.join(valid)}")
        kind = type(params[key].default)
        try:
            options[key] = kind(value) if kind in (int, float) else value
        except ValueError:
            raise DemoError(f"demo {name}: option {key}={value!r} is not a {kind.__name__}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = module.run(out, seed=seed, **options)
    write_json(out / f"{name}.json", result)
    return result
