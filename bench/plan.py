#!/usr/bin/env python
"""Wall time of a dry-run: the paper grid vs a grid ten times larger, side by side.

The larger grid keeps the paper's DAG shape and multiplies the evaluation seeds by 10
(4 -> 40: 432 -> 4320 evaluation jobs). Goal on a 2-core box: <= 3 s and <= 15 s.
"paper+mem" is the paper grid with a site file that sets gpu_mem_gb: 80, i.e. with the
memory plan checked (workflow/scripts/elicit/plan/memory_plan.py). Its first run finds no cached
DeepSpeed estimates in the fresh workdir (cold: one subprocess imports deepspeed); the
later runs read the cache, as every dry-run after the first does.

Usage:  python bench/plan.py [--repeat 3]
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def dry_run(workdir: Path, *configfiles: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                          "--configfile", *map(str, configfiles)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    total = int(out.stdout.split("Job stats:")[-1].split("total")[1].split()[0])
    return wall, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paper = ROOT / "config" / "config.yaml"
        big = yaml.safe_load(paper.read_text())
        big["eval"]["seeds"] = list(range(40))
        (tmp / "x10.yaml").write_text(yaml.safe_dump(big))
        # site settings as the slurm profile gives them: a config file whose key is `site:`
        (tmp / "site.yaml").write_text(yaml.safe_dump({"site": {"gpu_mem_gb": 80, "partitions": {"default": "gpu"}}}))
        site = tmp / "site.yaml"
        results = {}
        for _ in range(args.repeat):  # interleaved, so all see the same machine noise
            for name, files in (("paper", [paper]), ("x10", [tmp / "x10.yaml"]), ("paper+mem", [paper, site])):
                wall, jobs = dry_run(tmp, *files)
                results.setdefault(name, []).append((wall, jobs))
    for name, runs in results.items():
        best = min(w for w, _ in runs)
        print(f"{name:>9}: {runs[0][1]:5d} jobs  dry-run best of {args.repeat}: {best:6.2f} s  "
              f"(all: {', '.join(f'{w:.2f}' for w, _ in runs)})")
    ratio = min(w for w, _ in results["x10"]) / min(w for w, _ in results["paper"])
    print(f"x10 / paper wall-time ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
