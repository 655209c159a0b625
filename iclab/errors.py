"""The one base of iclab's errors.

Every error that iclab raises for bad input or a refused operation (a config key, a file, a run
directory, an option) derives from `IclabError`; its message is one line that names the problem.
The command line catches `IclabError` in one place and prints that line (exit status 2). Classes
keep their second base (ValueError, RuntimeError) so library users can catch them either way.
"""

from __future__ import annotations


class IclabError(Exception):
    """Bad input or a refused operation; the message names the key, file or value."""
