"""Synthetic data for demonstrations: a whole department written as real extract files."""

from parcours.demo.territory import (
    ACTIVITY_HEADER,
    MSSANTE_HEADER,
    TerritoryManifest,
    generate_territory,
    write_extract,
)

__all__ = [
    "ACTIVITY_HEADER",
    "MSSANTE_HEADER",
    "TerritoryManifest",
    "generate_territory",
    "write_extract",
]
