"""Demo DMPs: synthetic patients (demonstration INS, OID …4.11) whose records are opened at a
CPAM desk and fed by the demo GP, through the same service functions as the API."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from faker import Faker
from sqlalchemy import func, select

from parcours.auth.principal import Principal
from parcours.dossier import documents, records, rights
from parcours.dossier.models import Patient
from parcours.dossier.samples import cda, provide_bundle
from parcours.dossier.store import DocumentStore
from parcours.identity import INS, INS_OID_NIR_DEMO
from parcours.storage.db import Database


def ensure_demo_records(
    db: Database, store: DocumentStore, manifest: dict[str, Any], count: int = 20, seed: int = 35
) -> list[dict[str, str]]:
    with db.session() as session:
        if session.execute(select(func.count()).select_from(Patient)).scalar_one():
            existing = session.execute(select(Patient).order_by(Patient.created_at).limit(5))
            return [
                {"id": p.id, "ins": p.ins, "nom": p.family, "prenom": p.given}
                for p in existing.scalars()
            ]
    rng = random.Random(seed)
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    gp = manifest["demo_logins"][0]
    # The demo kiné holds each patient's authorisation (R12), so the habilitation matrix shows:
    # he sees the consultation report and the synthesis, not the biology (R20).
    kine = next(
        (x for x in manifest["demo_logins"] if x.get("role") == "masseur_kinesitherapeute"), None
    )
    author = Principal(
        kind="professional",
        subject=gp["idnat_ps"],
        issuer="demo",
        idnat_ps=gp["idnat_ps"],
        profession="10",
        auth_level="eidas1",
    )
    agent_id = manifest["cpam_accueils"][0]["agents"][0]
    agent = Principal(
        kind="agent", subject=agent_id, issuer="demo", agent_id=agent_id, auth_level="eidas1"
    )
    out: list[dict[str, str]] = []
    for _ in range(count):
        female = rng.random() < 0.5
        ins = INS.generate(rng, sex=2 if female else 1, oid=INS_OID_NIR_DEMO)
        year = 1900 + int(ins.value[1:3]) + (100 if int(ins.value[1:3]) < 25 else 0)
        month = int(ins.value[3:5]) if 1 <= int(ins.value[3:5]) <= 12 else 1
        given = fake.first_name_female() if female else fake.first_name_male()
        family = fake.last_name()
        with db.session() as session:
            patient, _ = records.create_patient(
                session,
                agent,
                {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:oid:" + INS_OID_NIR_DEMO, "value": ins.value}],
                    "name": [{"family": family, "given": [given]}],
                    "gender": "female" if female else "male",
                    "birthDate": (birth := date(year, month, rng.randint(1, 28))).isoformat(),
                },
            )
            records.record_consent(
                session,
                agent,
                {
                    "resourceType": "Consent",
                    "status": "active",
                    "patient": {"reference": f"Patient/{patient.id}"},
                    "extension": [{"url": records.EXT_CHANNEL, "valueCode": "guichet-cpam"}],
                },
            )
            patient_id = patient.id
            # The patient designates the demo GP as his médecin traitant (R37), so the GP's
            # token reads the record as the README shows.
            holder = Principal(
                kind="patient", subject=ins.value, issuer="demo", ins=ins.value, auth_level="eidas1"
            )
            if (date.today() - birth).days < 18 * 365.25:  # a minor: a parent acts (R40)
                holder = Principal(
                    kind="legal_representative",
                    subject="parent-" + ins.value,
                    issuer="demo",
                    ins="parent-" + ins.value,
                    represents=(ins.value,),
                    auth_level="eidas1",
                )
            choices = [("designate-mt", gp["idnat_ps"])]
            if kine is not None:
                choices.append(("grant", kine["idnat_ps"]))
            for action, target in choices:
                rights.apply(
                    session,
                    holder,
                    patient_id,
                    {
                        "resourceType": "Parameters",
                        "parameter": [
                            {"name": "action", "valueCode": action},
                            {"name": "target", "valueString": target},
                        ],
                    },
                )
        bundle = provide_bundle(
            subject=f"Patient/{patient_id}",
            author_idnps=gp["idnat_ps"],
            patient_ins=ins.value,
            documents=[
                (cda(f"{given} {family} : examen clinique sans particularité."), {}),
                (
                    cda("Antécédents : hypertension artérielle. Traitement : amlodipine."),
                    {
                        "type_code": "60591-5",
                        "class_code": "11",
                        "title": "Volet de synthèse médicale",
                    },
                ),
                (
                    cda("Hémogramme : hémoglobine 14,1 g/dl ; plaquettes 250 G/l. Normal."),
                    {
                        "type_code": "11502-2",
                        "class_code": "10",
                        "title": "Compte rendu d'examens biologiques",
                    },
                ),
            ],
        )
        documents.publish(db, store, author, bundle)
        out.append({"id": patient_id, "ins": ins.value, "nom": family, "prenom": given})
    return out
