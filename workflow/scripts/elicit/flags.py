"""A step program's command line from its typed config dataclass (TRL's `sft.py` style): the flags'
one dialect, the one that elicit/steps.py renders (`steps.argv`, `steps.shell`).

Every field is a `--kebab-case` flag; a field without a default is a required flag (the rules pass
every config value explicitly), booleans are `true`/`false`, a list field takes one or more values
(`--seed 0 1`), a field left at None is not given; `help_` puts a field's help text (and its
choices) in its metadata.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def help_(text: str, choices=None) -> dict:
    return {"help": text, **({"choices": tuple(choices)} if choices is not None else {})}


def boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def dataclass_parser(cls, description: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None: X
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        many = typing.get_origin(kind) is list
        kind = typing.get_args(kind)[0] if many else kind
        required = f.default is dataclasses.MISSING
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, required=required,
                        type=boolean if kind is bool else kind, metavar=None if "choices" in f.metadata else kind.__name__.upper(),
                        nargs="+" if many else None, choices=f.metadata.get("choices"),
                        default=None if required else f.default,
                        help=f.metadata.get("help", "") + ("" if required else f" (default: {f.default!r})"))
    return ap
