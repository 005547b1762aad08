"""Nested subsets: smaller inside larger, disjoint from validation, deterministic, exact sizes."""
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from prepare_data import DataError, split_ids
from tests.conftest import ROOT


@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(10, 400), data=st.data())
def test_nested_disjoint_exact(n_rows, data):
    n_val = data.draw(st.integers(1, n_rows - 1))
    pool = n_rows - n_val
    sizes = data.draw(st.lists(st.integers(1, pool), min_size=1, max_size=6, unique=True))
    seed = data.draw(st.integers(0, 2**31))
    m = split_ids(n_rows, n_val, sizes, seed)
    val = set(m["validation"])
    assert len(val) == n_val
    ordered = sorted(sizes)
    for k in sizes:
        ids = m["subsets"][str(k)]
        assert len(ids) == len(set(ids)) == k
        assert not val & set(ids)
    for small, big in zip(ordered, ordered[1:]):
        assert set(m["subsets"][str(small)]) < set(m["subsets"][str(big)])
    assert m == split_ids(n_rows, n_val, sizes, seed)


def test_same_ids_in_another_process(tmp_path):
    code = ("import json,sys; sys.path.insert(0, 'workflow/scripts'); from prepare_data import split_ids;"
            "print(json.dumps(split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)


def test_paper_split_shape():
    m = split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)
    assert len(m["subsets"]["928"]) + len(m["validation"]) == 1000
    assert set(m["subsets"]["928"]) | set(m["validation"]) == set(range(1000))


@pytest.mark.parametrize("n_val,sizes,msg", [
    (72, [929], "exceed the 928 rows"),
    (1000, [1], "data.n_val=1000"),
    (72, [0], "must be positive"),
])
def test_bad_split_config(n_val, sizes, msg):
    with pytest.raises(DataError, match=msg):
        split_ids(1000, n_val, sizes, 0)
