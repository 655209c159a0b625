"""Token-sequence workloads: tokenizers and prepared corpora, and the tasks trained on tokens.
Importing this package registers every token task."""

from iclab.workloads.sequence import (
    lm,  # noqa: F401  (language_model)
    modular,  # noqa: F401  (modular_arithmetic)
    multiple_choice,  # noqa: F401  (multiple_choice)
    sorting,  # noqa: F401  (sorting)
)
