"""The reproduction entries: one small file each, registered with `@REPRODUCTIONS.register` (via `entry()`).
Every module of this package is imported when the registry is first used, so adding an entry is adding a file."""

import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
