"""Write docs/reference/config.md from the config schema (iclab/config.py) and the registries' options.

    python scripts/config_reference.py            # rewrite docs/reference/config.md
    python scripts/config_reference.py --check    # exit 1 if the page is out of date (tests/test_docs.py)

Every key, its type, default and description come from the pydantic models themselves, so the page
cannot drift from the code: a field added without a description shows up here as a blank cell.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from iclab.config import Config
from iclab.registry import MODELS, OPTIMIZERS, SHAPES, TASKS

OUT = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"


def _type(ann) -> str:
    text = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(field) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        return "(section)" if isinstance(value, BaseModel) else f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{field.default!r}`"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _sub_model(ann) -> type[BaseModel] | None:
    for a in typing.get_args(ann) or (ann,):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _table(model: type[BaseModel], prefix: str, out: list[str], sections: list) -> None:
    out += ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        sub = _sub_model(field.annotation)
        key = f"{prefix}{name}"
        if sub is not None:
            sections.append((key, sub, field.description))
            anchor = key.replace(".", "")  # the heading's slug
            out.append(f"| `{key}` | section | | {_cell(field.description)} see [{key}](#{anchor}) |")
        else:
            out.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | {_cell(field.description)} |")
    out.append("")


def _options(title: str, registry, attr: str = "Options") -> list[str]:
    out = [f"## {title}", ""]
    for name in registry.names():
        obj = registry.get(name)
        opts = getattr(obj, attr, None)
        doc = _cell(registry.describe().get(name))
        out += [f"### `{name}`", "", doc, ""] if doc else [f"### `{name}`", ""]
        if isinstance(opts, type) and issubclass(opts, BaseModel) and opts.model_fields:
            out += ["| option | type | default | description |", "|---|---|---|---|"]
            for key, field in opts.model_fields.items():
                out.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | {_cell(field.description)} |")
            out.append("")
        else:
            out += ["No options.", ""]
    return out


def render() -> str:
    out = [
        "# Config reference",
        "",
        "Generated from the config schema by `python scripts/config_reference.py`; do not edit by hand.",
        "Every key can be set in the YAML file or overridden on the command line as `section.key=value`.",
        "",
        "## Top level",
        "",
    ]
    sections: list = []
    _table(Config, "", out, sections)
    while sections:
        key, model, _ = sections.pop(0)
        out += [f"## {key}", ""]
        _table(model, f"{key}.", out, sections)
    out += _options("Task options (`task.options`)", TASKS)
    out += _options("Model options", MODELS)
    out += _options("Optimizer options (`training.optimizer.options`)", OPTIMIZERS)
    out += _options("Curriculum shapes (`curriculum.*.shape`)", SHAPES)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    text = render()
    if ap.parse_args().check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
