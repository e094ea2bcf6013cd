"""`sartm data ...`: download, extract, prepare and synthesise datasets."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Get datasets into the common layout (data/processed/<name>/)."""
