"""Token-sequence workloads: tokenizers and prepared corpora, and the tasks trained on tokens.
Importing this package registers every token task."""

from iclab.workloads.sequence import lm  # noqa: F401  (language_model)
from iclab.workloads.sequence import sorting  # noqa: F401  (sorting)
from iclab.workloads.sequence import modular  # noqa: F401  (modular_arithmetic)
from iclab.workloads.sequence import multiple_choice  # noqa: F401  (multiple_choice)
