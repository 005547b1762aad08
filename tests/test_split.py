"""Nested subsets: smaller inside larger, disjoint from validation, deterministic, exact sizes."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elicit.data.s1k import DataError, split_ids, split_problems
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
    code = ("import json,sys; from elicit.data.s1k import split_ids;"
            "print(json.dumps(split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)


def test_paper_split_shape():
    m = split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)
    assert len(m["subsets"]["928"]) + len(m["validation"]) == 1000
    assert set(m["subsets"]["928"]) | set(m["validation"]) == set(range(1000))


@pytest.mark.parametrize("n_val,sizes,msg", [
    (72, [929], "exceed the 928 rows"),
    (1000, [1], "data.n_val: 1000 must be in"),
    (72, [0], "must be positive"),
])
def test_bad_split_config(n_val, sizes, msg):
    with pytest.raises(DataError, match=msg):
        split_ids(1000, n_val, sizes, 0)


@settings(max_examples=60, deadline=None)
@given(n_rows=st.integers(10, 300), data=st.data())
def test_one_permutation_whatever_the_sizes(n_rows, data):
    """Adding or removing a subset size changes neither validation nor the other subsets."""
    n_val = data.draw(st.integers(1, n_rows - 1))
    pool = n_rows - n_val
    a = data.draw(st.lists(st.integers(1, pool), min_size=1, max_size=5, unique=True))
    b = data.draw(st.lists(st.integers(1, pool), min_size=1, max_size=5, unique=True))
    seed = data.draw(st.integers(0, 2**31))
    ma, mb = split_ids(n_rows, n_val, a, seed), split_ids(n_rows, n_val, b, seed)
    assert ma["validation"] == mb["validation"]
    for k in set(a) & set(b):
        assert ma["subsets"][str(k)] == mb["subsets"][str(k)]
    if pool in a:  # the largest possible subset is everything but validation
        assert sorted(ma["subsets"][str(pool)] + ma["validation"]) == list(range(n_rows))


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(2, 2000), n_val=st.integers(1, 2000),
       sizes=st.lists(st.integers(1, 2100), min_size=1, max_size=6, unique=True))
def test_plan_time_check_agrees_with_split(rows, n_val, sizes):
    """The plan-time check (data.expected_rows) fails exactly when the split would: one rule."""
    problems = split_problems(rows, n_val, sizes)
    try:
        split_ids(rows, n_val, sizes, 0)
        ok = True
    except DataError:
        ok = False
    assert ok == (problems == []), problems


PAPER_SPLIT_SHA256 = "e9c42fa53ee2d11887cc43ddac9bf071d21482b5f5c54a17195662e6a6b2f7f7"
CASES = [(1000, 72, [928, 464, 232, 116, 58, 29], 0), (1000, 72, [928, 464, 232, 116, 58, 29], 1),
         (48, 8, [16, 8], 0), (37, 5, [32, 1], 2**31 - 1)]


@pytest.mark.parametrize("hashseed", ["0", "12345"])
def test_same_ids_in_other_processes(hashseed):
    code = ("import json,sys; from elicit.data.s1k import split_ids;"
            f"print(json.dumps([split_ids(*c) for c in {CASES!r}]))")
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=env)
    assert json.loads(out.stdout) == [split_ids(*c) for c in CASES]


def test_paper_split_is_pinned():
    """The paper's ids must never drift (numpy's PCG64 stream is stable): a fingerprint."""
    m = split_ids(1000, 72, [928, 464, 232, 116, 58, 29], 0)
    digest = hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()
    assert digest == PAPER_SPLIT_SHA256, digest


@pytest.mark.parametrize("sizes,msg", [([], "at least one"), ([5, 5], "repeat"), ([-1], "must be positive")])
def test_more_bad_split_config(sizes, msg):
    with pytest.raises(DataError, match=msg):
        split_ids(100, 10, sizes, 0)
