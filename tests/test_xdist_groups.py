"""The suite's ``xdist_group`` marks keep their tests on one worker (``--dist loadgroup``, pyproject's addopts).

Tests that share a real cluster (``slurm``, ``ray``), a 2-process launch (``distributed``) or a served UI (``ui``)
rely on it: spread over two workers, each worker starts its own cluster, and the Ray executor test could run beside
the Ray cluster it must never join. pytest-xdist marks a grouped test by appending ``@<group>`` to its node id on the
worker; pytest 9.2 ignores that write (pytest-dev/pytest-xdist#1386) and grouping stops without an error, so the
dev extra pins ``pytest<9.2``. These tests fail when that happens again.
"""

from __future__ import annotations

import os

import pytest

GROUP = "xdist-group-probe"


def _loadgroup_worker(config: pytest.Config) -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER")) and bool(config.getoption("loadgroup", False))


@pytest.mark.xdist_group(GROUP)
@pytest.mark.parametrize("probe", range(4))
def test_a_grouped_test_carries_its_group_to_the_scheduler(request, probe):
    """The scheduler sees the group only through the node id's ``@<group>`` suffix: without it the four probes (and
    every cluster test) are dealt out one by one."""
    if not _loadgroup_worker(request.config):
        pytest.skip("not an xdist worker with --dist loadgroup (e.g. -n 0): nothing is grouped")
    assert request.node.nodeid.endswith(f"@{GROUP}"), (
        f"{request.node.nodeid!r} lacks '@{GROUP}': --dist loadgroup is not grouping (pytest {pytest.__version__}; "
        "see pytest-dev/pytest-xdist#1386)")


def test_an_ungrouped_test_keeps_its_node_id(request):
    if not _loadgroup_worker(request.config):
        pytest.skip("not an xdist worker with --dist loadgroup")
    assert "@" not in request.node.nodeid
