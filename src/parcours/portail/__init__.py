"""Portals: the pages patients, professionals and CPAM staff use (issue #7)."""
