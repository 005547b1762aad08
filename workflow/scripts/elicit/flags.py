"""A step program's command line from its typed config dataclass (TRL's `sft.py` style).

Every field is a `--kebab-case` flag; a field without a default is a required flag (the rules pass
every config value explicitly), booleans are `true`/`false`; `help_` puts a field's help text in
its metadata.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing


def help_(text: str) -> dict:
    return {"help": text}


def boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def dataclass_parser(cls, description: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        required = f.default is dataclasses.MISSING
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, required=required,
                        type=boolean if kind is bool else kind, metavar=kind.__name__.upper(),
                        default=None if required else f.default,
                        help=f.metadata.get("help", "") + ("" if required else f" (default: {f.default!r})"))
    return ap
