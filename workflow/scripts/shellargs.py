"""Command-line arguments for shell commands built from config values (the rules use it)."""
from __future__ import annotations

import shlex


def cli(args: dict) -> str:
    """`--key value` pairs, every value shell-quoted (config strings never reach the shell raw);
    True = a bare flag, None/False = left out, '' = an explicit empty value."""
    out = []
    for k, v in args.items():
        if v is True:
            out.append(f"--{k}")
        elif v is not None and v is not False:
            out.append(f"--{k} {shlex.quote(str(v))}")
    return " ".join(out)
