"""Every table of every domain, imported here so Alembic sees one complete metadata."""

from parcours.annuaire import models as _annuaire  # noqa: F401
from parcours.audit import models as _audit  # noqa: F401
from parcours.dossier import models as _dossier  # noqa: F401
from parcours.messagerie import mailstore as _mailstore  # noqa: F401
from parcours.messagerie import models as _messagerie  # noqa: F401
from parcours.notify import models as _notify  # noqa: F401
from parcours.storage.models import Base

target_metadata = Base.metadata
