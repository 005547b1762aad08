"""Issue 19: a restore from the finished-work cache leaves no temporary file behind, also when the
target already is a hard link of the cached file (rename(2) of one link onto another does nothing)."""
from elicit import done_cache


def test_restore_onto_its_own_links_leaves_no_tmp_file(tmp_path):
    cell = tmp_path / "seed0.json"
    samples = tmp_path / "seed0.samples.jsonl"
    cell.write_text("{}\n")
    samples.write_text("{}\n")
    targets = {"cell": cell, "samples": samples}
    done_cache.store(tmp_path / ".done", "k", targets)
    for _ in range(2):  # the targets are links of the cache entry's files from the first restore on
        assert done_cache.restore(tmp_path / ".done", "k", targets)
    left = [p.name for p in tmp_path.rglob(".tmp-*")]
    assert left == [], left
    assert cell.read_text() == "{}\n" and samples.read_text() == "{}\n"
