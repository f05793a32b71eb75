"""French health identifiers as immutable, always-valid value types.

Each type parses leniently (spaces, case) with ``X.parse(text)``, stores the canonical form in
``.value`` (also ``str(x)``), and refuses anything invalid with an :class:`IdentifierError`
carrying a machine ``reason`` and a French message. Generators (``X.generate(rng)``) draw
deterministic synthetic identifiers for tests and the demo territory.
"""

from parcours.identity.errors import REASONS, IdentifierError
from parcours.identity.ins import (
    INS,
    INS_OID_NIA,
    INS_OID_NIR,
    INS_OID_NIR_DEMO,
    INS_OID_NIR_TEST,
    INS_OIDS,
)
from parcours.identity.professional import ADELI, IDNPS_OID, RPPS, IdNatPS
from parcours.identity.structure import FINESS, IDNST_OID, SIRET, IdNatStruct

__all__ = [
    "ADELI",
    "FINESS",
    "IDNPS_OID",
    "IDNST_OID",
    "INS",
    "INS_OIDS",
    "INS_OID_NIA",
    "INS_OID_NIR",
    "INS_OID_NIR_DEMO",
    "INS_OID_NIR_TEST",
    "REASONS",
    "RPPS",
    "SIRET",
    "IdNatPS",
    "IdNatStruct",
    "IdentifierError",
]
