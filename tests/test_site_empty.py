"""Issue 19: an empty `site:` mapping (the key written, nothing under it) is refused at plan time
with a message naming it, instead of planning silently without site settings."""
import subprocess

import yaml

from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_empty_site_mapping_is_named(tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(PAPER) + "site:\n")
    out = subprocess.run(["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(tmp_path / "cfg.yaml")], capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "`site:` is empty" in text, text[-2000:]
