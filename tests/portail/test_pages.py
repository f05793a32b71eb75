"""Portal pages over HTTP: login by authorization code + PKCE, session and CSRF, security
headers, the same policy and the same trace as the API (issue #7, Quality)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from parcours.audit.models import AuditEvent
from parcours.dossier.samples import PATIENT_INS
from tests.portail.conftest import Portal, _hidden_fields, break_the_glass, login


def test_patient_logs_in_and_sees_the_record_by_space(portal: Portal) -> None:
    with httpx.Client(base_url=portal.base) as client:
        page = login(client, PATIENT_INS)
        assert page.status_code == 303 and page.headers["location"] == "/portail/patient"
        record = client.get("/portail/patient")
        assert record.status_code == 200
        html = record.text
        assert "Mon dossier médical partagé" in html and "Anne Lefèvre" in html
        # Each document in its space: the consultation report under "Comptes rendus", the
        # vaccination note under "Prévention" (type override before class, spaces.json).
        reports = html.index('id="comptes-rendus"')
        prevention = html.index('id="prevention"')
        consult = html.index("Compte rendu de consultation du 12 juin")
        vaccine = html.index("Note de vaccination")
        assert reports < consult < html.index("</section>", reports)
        assert prevention < vaccine < html.index("</section>", prevention)
        # The document page and its bytes, read through the same service as ITI-68.
        doc = portal.documents["compte_rendu"]
        detail = client.get(f"/portail/patient/documents/{doc}")
        assert detail.status_code == 200 and "Télécharger le document" in detail.text
        content = client.get(f"/portail/patient/documents/{doc}/contenu")
        assert content.status_code == 200
        assert "tension artérielle normale" in content.content.decode()
        assert content.headers["content-disposition"].startswith("attachment;")


def test_every_page_is_traced_like_an_api_read(portal: Portal) -> None:
    doc = portal.documents["compte_rendu"]
    with httpx.Client(base_url=portal.base) as client:
        login(client, PATIENT_INS)
        assert client.get(f"/portail/patient/documents/{doc}").status_code == 200
        assert client.get("/portail/patient/documents/inconnu-42").status_code == 404
    with portal.db.session() as session:
        events = list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.actor_kind == "patient")
                .order_by(AuditEvent.seq)
            ).scalars()
        )
    read = [e for e in events if e.resource_id == doc]
    assert read and read[-1].action == "read" and read[-1].resource_type == "DocumentReference"
    assert read[-1].patient_id == portal.dmp.patient_id and read[-1].outcome == 200
    assert any(e.resource_id == "inconnu-42" and e.outcome == 404 for e in events)
    # No INS in what the trace keeps of the request line (paths use opaque ids).
    assert all(PATIENT_INS not in (e.query or "") for e in events)


def test_bris_de_glace_stands_out_in_the_patients_traces(portal: Portal) -> None:
    break_the_glass(portal, portal.documents["compte_rendu"])
    with httpx.Client(base_url=portal.base) as client:
        login(client, PATIENT_INS)
        page = client.get("/portail/patient/traces")
    assert page.status_code == 200
    assert "1 accès en urgence" in page.text
    row = page.text[page.text.index('<tr class="urgence') :]
    row = row[: row.index("</tr>")]
    assert "Accès en urgence (bris de glace)" in row and "Professionnel de santé" in row


def test_pages_need_a_session_and_an_expired_one_is_explained(portal: Portal) -> None:
    with httpx.Client(base_url=portal.base) as client:
        first = client.get("/portail/patient")
        assert first.status_code == 303
        assert first.headers["location"] == "/portail/connexion?profil=patient"
        client.cookies.set("parcours_session", "forged.value")
        assert client.get("/portail/patient/traces").status_code == 303


def test_security_headers_and_cookie_flags(portal: Portal) -> None:
    with httpx.Client(base_url=portal.base) as client:
        start = client.get("/portail/connexion?profil=patient")
        cookie = start.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        page = login(client, PATIENT_INS)
        cookies = [c.lower() for c in page.headers.get_list("set-cookie")]
        session_cookie = next(c for c in cookies if c.startswith("parcours_session="))
        assert "httponly" in session_cookie and "samesite=lax" in session_cookie
        record = client.get("/portail/patient")
    csp = record.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert record.headers["cache-control"] == "no-store"
    assert record.headers["x-content-type-options"] == "nosniff"


def test_logout_needs_the_csrf_token(portal: Portal) -> None:
    with httpx.Client(base_url=portal.base) as client:
        login(client, PATIENT_INS)
        forged = client.post("/portail/deconnexion", data={"csrf": "devine"})
        assert forged.status_code == 403 and "formulaire a expiré" in forged.text
        assert client.get("/portail/patient").status_code == 200  # still logged in
        page = client.get("/portail/patient")
        token = _hidden_fields(page.text)["csrf"]
        out = client.post("/portail/deconnexion", data={"csrf": token})
        assert out.status_code == 303
        assert client.get("/portail/patient").status_code == 303


def test_identity_provider_refuses_what_oidc_forbids(portal: Portal) -> None:
    with httpx.Client(base_url=portal.base) as client:
        start = client.get("/portail/connexion?profil=patient")
        authorize = urlsplit(start.headers["location"])
        query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        # A redirect URI the client did not register, or no PKCE: refused before any login.
        for bad in ({"redirect_uri": "https://evil.example/retour"}, {"code_challenge": ""}):
            refused = client.get("/idp/authorize", params={**query, **bad})
            assert refused.status_code == 400
        # An invalid INS key: the form says so and keeps what was typed.
        form = _hidden_fields(client.get(start.headers["location"]).text)
        wrong = PATIENT_INS[:-2] + ("00" if PATIENT_INS[-2:] != "00" else "01")
        typed = client.post("/idp/authorize", data={**form, "identifiant": wrong})
        assert typed.status_code == 400 and f'value="{wrong}"' in typed.text
        assert "clé" in typed.text.lower()
        # A code is single-use, bound to its PKCE verifier and redirect URI.
        back = client.post("/idp/authorize", data={**form, "identifiant": PATIENT_INS})
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        token = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": query["redirect_uri"],
            "client_id": query["client_id"],
            "code_verifier": "pas-le-bon",
        }
        assert client.post("/idp/token", data=token).json()["error"] == "invalid_grant"
        # The failed attempt consumed the code: the callback now fails cleanly.
        failed = client.get(back.headers["location"])
        assert failed.status_code == 400 and "Recommencez" in failed.text


def test_a_professional_cannot_use_the_patient_space(portal: Portal) -> None:
    from tests.scenario import DUPONT

    with httpx.Client(base_url=portal.base) as client:
        start = client.get("/portail/connexion?profil=patient")
        form = _hidden_fields(client.get(start.headers["location"]).text)
        # The patient profile takes an INS: an RPPS there is not an INS.
        wrong = client.post("/idp/authorize", data={**form, "identifiant": DUPONT})
        assert wrong.status_code == 400
