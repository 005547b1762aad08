"""Run a step program by name: `python -m elicit.run train --model ...` (or the console script
`elicit-step train ...`, or `torchrun ... -m elicit.run train ...`).

The rules start every step this way, so no shell command names the checkout's path (a moved
checkout reruns nothing, and `snakemake --lint` finds no global in a shell command). The program
replaces this process (exec: same PID, so a launcher's SIGTERM reaches it) and runs exactly as
`python workflow/scripts/<step>.py`, with the interpreter options this process was started with.
"""
from __future__ import annotations

import os
import sys

from elicit import REPO

SCRIPTS = REPO / "workflow" / "scripts"
STEPS = sorted(p.stem for p in SCRIPTS.glob("*.py"))


def interpreter_options() -> list[str]:
    """Options given before `-m` (e.g. torchrun's `-u`), kept for the step program."""
    argv = list(getattr(sys, "orig_argv", []))
    return argv[1:argv.index("-m")] if "-m" in argv[1:] else []


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STEPS:
        sys.exit(f"usage: python -m elicit.run STEP [ARGS...]; STEP is one of: {', '.join(STEPS)}")
    script = SCRIPTS / f"{argv[0]}.py"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *interpreter_options(), str(script), *argv[1:]])


if __name__ == "__main__":
    main()
