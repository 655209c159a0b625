"""Classical in-context learners, computed batched on the same prompts as the model.

Every baseline maps xs (B, n, d), ys (B, n) to predictions (B, n), where the prediction at position i
uses only the points before i (position 0 predicts 0), mirroring what a causal model sees. Options are
declared per baseline (`fn.Options`, a pydantic model); `eval.baselines` entries are names or mappings
`{name, options, label}` (see base.py).

    least_squares, ridge, averaging, knn      linear.py (fast: all prefixes in a few batched steps)
    lasso                                     lasso.py  (batched coordinate descent, sklearn's objective)
    decision_tree, xgboost                    trees.py  (one fit per prompt and prefix)
    relu_net_gd                               nets.py   (many small networks trained as one tensor program)
    memorization                              memorization.py (the best function of the training pool)

Importing the package registers every baseline in `iclab.registry.BASELINES`.
"""

from iclab.evaluation.baselines import memorization  # the module (its function registers as `memorization`)
from iclab.evaluation.baselines.base import (
    Baseline,
    BaselineEntry,
    ResolvedBaseline,
    check_entry,
    check_positions,
    options_of,
    register,
    resolve,
    resolve_baselines,
)
from iclab.evaluation.baselines.lasso import lasso
from iclab.evaluation.baselines.linear import averaging, knn, least_squares, least_squares_pinv, prefix_masked, ridge
from iclab.evaluation.baselines.nets import init_relu_nets, relu_net_gd
from iclab.evaluation.baselines.trees import decision_tree, xgboost

# the package's interface: the checks of eval.baselines and every baseline function
__all__ = [
    "Baseline",
    "BaselineEntry",
    "ResolvedBaseline",
    "check_entry",
    "check_positions",
    "options_of",
    "register",
    "resolve",
    "resolve_baselines",
    "averaging",
    "decision_tree",
    "init_relu_nets",
    "knn",
    "lasso",
    "least_squares",
    "least_squares_pinv",
    "memorization",
    "prefix_masked",
    "relu_net_gd",
    "ridge",
    "xgboost",
]
