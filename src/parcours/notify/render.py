"""The words of a notification: French, short, and without medical content.

Reference dmp-access.md §3.2: a notification says that something happened (who accessed the
record, that a document is available) and never what a document contains; at most "un nouveau
document". The same text goes to every channel, so the portal inbox and the e-mail agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _when(raw: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(raw)).astimezone(PARIS)
    except ValueError:
        return str(raw)
    return moment.strftime("%d/%m/%Y à %H:%M")


_SIGNATURE = (
    "\n\nCe message est envoyé automatiquement par votre Dossier Médical Partagé ; il ne "
    "contient aucune information médicale. Pour toute question, parlez-en à votre médecin "
    "traitant ou consultez l'historique des accès de votre dossier."
)

_PS_SIGNATURE = "\n\nMessage automatique du DMP ; il ne contient aucune information médicale."


def render(event: str, recipient_kind: str, payload: dict[str, Any]) -> Rendered:
    who = payload.get("acteur") or "un professionnel de santé"
    when = _when(payload.get("date", ""))
    to_ps = recipient_kind in ("mt", "previous_mt", "target")
    # Emergency accesses are told to the holder and to his médecin traitant alike.
    to_record = "au DMP de votre patient" if to_ps else "à votre Dossier Médical Partagé"
    the_record = "le DMP de votre patient" if to_ps else "votre Dossier Médical Partagé"
    texts: dict[str, tuple[str, str]] = {
        "record-created": (
            "Votre Dossier Médical Partagé a été créé",
            f"Votre Dossier Médical Partagé (DMP) a été créé le {when}. Vous pouvez le "
            "consulter, masquer un document, bloquer un professionnel ou vous opposer à "
            "l'accès en urgence depuis votre espace.",
        ),
        "first-access": (
            "Un professionnel a consulté votre DMP pour la première fois",
            f"{who} a consulté votre Dossier Médical Partagé pour la première fois le {when}.",
        ),
        "bris-de-glace": (
            "Accès en urgence (bris de glace) au DMP",
            f"{who} a accédé en urgence (« bris de glace ») {to_record} le {when}. Le motif "
            "déclaré est conservé dans l'historique des accès.",
        ),
        "centre-15": (
            "Accès du médecin régulateur (centre 15) au DMP",
            f"Le médecin régulateur du SAMU-centre 15 ({who}) a consulté {the_record} le "
            f"{when}, lors d'un appel.",
        ),
        "new-document": (
            "Un nouveau document est disponible dans votre DMP",
            f"Un nouveau document a été ajouté à votre Dossier Médical Partagé le {when}.",
        ),
        "document-visible": (
            "Un nouveau document est disponible dans votre DMP",
            f"Un document de votre Dossier Médical Partagé vous est désormais accessible "
            f"(le {when}).",
        ),
        "document-available": (
            "Un nouveau document est disponible dans votre DMP",
            "Un document ajouté à votre Dossier Médical Partagé il y a un mois vous est "
            "désormais accessible.",
        ),
        "announce-reminder": (
            "Votre DMP a été mis à jour",
            "Votre Dossier Médical Partagé a été mis à jour. Nous vous invitons à prendre "
            "contact avec votre médecin traitant ou le professionnel qui vous suit.",
        ),
        "document-removed": (
            "Un document de votre DMP a été retiré ou remplacé",
            f"{who} a retiré ou remplacé un document de votre Dossier Médical Partagé le {when}.",
        ),
        "confirmation": (
            "Modification de votre DMP enregistrée",
            f"La modification demandée sur votre Dossier Médical Partagé a été enregistrée le "
            f"{when}.",
        ),
        "delegation": (
            "Un accès à votre DMP a été délégué",
            f"{who} a autorisé un autre professionnel à accéder à votre Dossier Médical "
            f"Partagé le {when}.",
        ),
        "mt-designated": (
            "Vous êtes désigné médecin traitant (DMP)",
            f"Un patient vous a désigné comme médecin traitant dans son Dossier Médical "
            f"Partagé le {when} : vous accédez à l'ensemble de son dossier.",
        ),
        "mt-removed": (
            "Vous n'êtes plus médecin traitant (DMP)",
            f"Un patient a désigné un autre médecin traitant dans son Dossier Médical Partagé "
            f"le {when}.",
        ),
    }
    texts["heir-request-accepted"] = (
        "Votre demande d'accès au DMP d'un proche décédé est acceptée",
        "Votre demande d'ayant droit a été acceptée. L'Assurance Maladie vous adresse les "
        "informations nécessaires à l'objet de votre demande, et elles seules.",
    )
    texts["heir-request-rejected"] = (
        "Votre demande d'accès au DMP d'un proche décédé est rejetée",
        "Votre demande d'ayant droit a été rejetée ; le motif figure dans le suivi de votre "
        "demande.",
    )
    subject, body = texts.get(
        event,
        ("Votre DMP a été mis à jour", f"Votre DMP a été mis à jour le {when}."),
    )
    return Rendered(subject, body + (_PS_SIGNATURE if to_ps else _SIGNATURE))
