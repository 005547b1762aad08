"""pytest fixture for the real SLURM test cluster (see README.md beside this file).

tests/conftest.py imports it: ``from tests.slurm.fixtures import slurm_cluster``.
"""

import os

import pytest

from tests.slurm.cluster import SlurmCluster, slurm_installed


@pytest.fixture(scope="session")
def slurm_cluster():
    """A started single-node SlurmCluster, stopped (jobs scancelled) at session end.

    SLURM_TESTS=off skips it (and every test that needs it): quick local runs of other tests
    then neither start the daemons nor wait for another pytest session that holds them."""
    if os.environ.get("SLURM_TESTS") == "off":
        pytest.skip("SLURM_TESTS=off")
    if not slurm_installed():
        # CI installs SLURM itself (.ci/install_slurm.sh): a missing install there is a failure.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("SLURM is not installed (slurmctld/slurmd/sbatch/munged missing): "
                    "run .ci/install_slurm.sh")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (writes /etc/slurm, runs daemons)")
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
