"""parcours: France's digital care-coordination platform (DMP, MSSanté, Annuaire santé)."""

__version__ = "0.1.0"
