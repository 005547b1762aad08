"""Issue 31: the Apptainer image bakes in workflow/, so a stale image would silently run old step
programs. The image records the code's sha256 as a label (envs/elicit.def); with --sdm apptainer
planning compares it with the checkout's and refuses a mismatch, a missing label or a missing
image (apptainer itself is not installed here: the label is given to the comparison)."""
import shutil
import subprocess

from elicit import code_hash
from tests.conftest import ROOT, child_env


def checkout(tmp_path):
    for name in (*code_hash.BAKED, "config"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def test_the_hash_follows_the_code_not_the_config_or_caches(tmp_path):
    root = checkout(tmp_path)
    before = code_hash.code_sha256(root)
    assert before == code_hash.code_sha256(ROOT)
    (root / "config" / "config.yaml").write_text("# edited\n")
    (root / "workflow" / "scripts" / "__pycache__").mkdir(exist_ok=True)
    (root / "workflow" / "scripts" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert code_hash.code_sha256(root) == before
    step = root / "workflow" / "scripts" / "select_checkpoint.py"
    step.write_text(step.read_text() + "\n# a fix\n")
    assert code_hash.code_sha256(root) != before


def test_a_stale_image_is_refused(tmp_path):
    image = tmp_path / "elicit.sif"
    assert "no image at" in code_hash.image_problem(None, ROOT, str(image))
    image.write_bytes(b"")
    assert code_hash.image_problem(code_hash.code_sha256(ROOT), ROOT, str(image)) is None
    stale = code_hash.image_problem("0" * 64, ROOT, str(image))
    assert "built from other code" in stale and "apptainer build --force" in stale
    assert "carries no code hash" in code_hash.image_problem(None, ROOT, str(image))


def test_the_image_records_the_hash_and_planning_checks_it(tmp_path):
    definition = (ROOT / "envs" / "elicit.def").read_text()
    assert f'echo "{code_hash.LABEL} $(python -m elicit.code_hash /opt/elicit)" >> "$APPTAINER_LABELS"' in definition
    for name in code_hash.BAKED:  # the hash covers what the image bakes in
        assert f"    {name} /opt/elicit/{name}" in definition
    root = checkout(tmp_path)
    out = subprocess.run(["snakemake", "-n", "--sdm", "apptainer"], cwd=root, env=child_env(), capture_output=True,
                         text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "no image at" in text and "apptainer build" in text
