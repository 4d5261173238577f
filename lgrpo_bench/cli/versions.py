"""``lgrpo-bench --version``: kept apart from the Typer app so it imports nothing heavy (package metadata only)."""

from __future__ import annotations

from lgrpo_bench.tracking.schema import VERSIONED_PACKAGES, package_versions

__all__ = ["version_lines"]


def version_lines() -> list[str]:
    """``lgrpo-bench 0.1.0``, then ``  torch 2.13.0+cpu``, ... : the distributions whose versions every run is
    tagged with (:data:`lgrpo_bench.tracking.schema.VERSIONED_PACKAGES`), ``not-installed`` when missing."""
    versions = package_versions(VERSIONED_PACKAGES)
    own = VERSIONED_PACKAGES[0]
    return [f"{own} {versions[own]}", *(f"  {name} {versions[name]}" for name in VERSIONED_PACKAGES[1:])]
