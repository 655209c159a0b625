"""`python -m iclab.experiments.worker [SPEC.json | -]`: one job in a fresh process (the local backend).

A module of its own that nothing in iclab imports: `python -m` of a module that its package already
imported (iclab.experiments imports jobs.py) makes runpy warn "found in sys.modules after import of
package" into every worker's log. This one is imported only when it runs. Its last line on stdout is
`iclab-sweep-result {JSON}` (JobResult.as_dict()); exit code 0 done or reused, 130 interrupted, 1 failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from iclab.experiments.jobs import execute_job

RESULT_PREFIX = "iclab-sweep-result "


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text() if argv and argv[0] != "-" else sys.stdin.read())
    res = execute_job(spec)
    print(RESULT_PREFIX + json.dumps(res), flush=True)
    return {"done": 0, "reused": 0, "interrupted": 130}.get(res["state"], 1)


if __name__ == "__main__":  # pragma: no cover  (run as a process by the local backend; tested through it)
    raise SystemExit(main())
