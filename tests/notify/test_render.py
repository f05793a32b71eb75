"""Notification texts: the holder is told about *his* record, the médecin traitant about *his
patient's*, and no text carries more than who, when and how (dmp-access.md §3.2)."""

from __future__ import annotations

import pytest

from parcours.notify.render import render

PAYLOAD = {"acteur": "Dr Urgent", "date": "2026-11-23T10:15:00+00:00", "mode": "bris_de_glace"}


@pytest.mark.parametrize("event", ["bris-de-glace", "centre-15"])
def test_emergency_access_is_worded_for_each_recipient(event: str) -> None:
    holder = render(event, "holder", PAYLOAD).body
    mt = render(event, "mt", PAYLOAD).body
    assert "votre Dossier Médical Partagé" in holder and "votre patient" not in holder
    assert "DMP de votre patient" in mt and "votre Dossier Médical Partagé" not in mt
    assert "Dr Urgent" in holder and "23/11/2026 à 11:15" in holder  # Paris time


def test_unknown_event_still_says_something_without_content() -> None:
    text = render("quelque-chose", "holder", PAYLOAD)
    assert (
        text.subject == "Votre DMP a été mis à jour" and "aucune information médicale" in text.body
    )
