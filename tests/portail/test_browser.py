"""The patient space in a real headless Chromium (Playwright): what a patient does with a
phone-sized screen and a keyboard, screenshots kept under var/screenshots/ for review."""

from __future__ import annotations

from typing import Any

from parcours.dossier.samples import PATIENT_INS
from tests.portail.conftest import Portal, break_the_glass, screenshot


def _login(page: Any, base: str) -> None:
    page.goto(base + "/portail/")
    page.get_by_role("link", name="Accéder à mon dossier").click()
    page.get_by_label("Identifiant national de santé").fill(PATIENT_INS)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/portail/patient")


def test_patient_reads_a_document_and_sees_the_emergency_access(
    portal: Portal, chromium: Any
) -> None:
    break_the_glass(portal, portal.documents["compte_rendu"])
    context = chromium.new_context(
        viewport={"width": 390, "height": 844}, locale="fr-FR", accept_downloads=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(portal.base + "/portail/")
        screenshot(page, "portail-accueil")
        _login(page, portal.base)
        screenshot(page, "patient-dossier")
        section = page.locator("section#comptes-rendus")
        link = section.get_by_role("link", name="Compte rendu de consultation du 12 juin")
        link.click()
        page.wait_for_url("**/portail/patient/documents/*")
        assert page.get_by_role("heading", level=1).inner_text().startswith("Compte rendu")
        screenshot(page, "patient-document")
        with page.expect_download() as info:
            page.get_by_role("link", name="Télécharger le document").click()
        data = info.value.path().read_bytes()
        assert "tension artérielle normale" in data.decode()
        # No identifier of the patient in any address the browser went through.
        assert PATIENT_INS not in page.url
        page.get_by_role("link", name="Qui a consulté mon dossier").click()
        page.wait_for_url("**/portail/patient/traces")
        alert = page.get_by_role("alert")
        assert "1 accès en urgence" in alert.inner_text()
        emergency = page.locator("tr.urgence")
        assert emergency.count() == 1
        assert "bris de glace" in emergency.inner_text()
        # Highlighted: the row's background is the alert colour, not the table's white.
        background = emergency.evaluate("row => getComputedStyle(row).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
        screenshot(page, "patient-traces")
        # Keyboard: the skip link is the first stop and leads to the content.
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        assert focused.strip() == "Aller au contenu"
        # The CSP blocks nothing the pages need (no inline script or style to block).
        assert not [e for e in errors if "Content Security Policy" in e]
    finally:
        context.close()


def test_patient_masks_a_document_and_a_professional_no_longer_sees_it(
    portal: Portal, chromium: Any
) -> None:
    from tests.portail.test_patient_actions import _martin

    doc = portal.documents["compte_rendu"]
    portal.dmp.tokens["martin"] = _martin(portal)
    read = f"/fhir/DocumentReference/{doc}"
    assert portal.dmp.call("GET", read, "martin").status_code == 200
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = context.new_page()
    try:
        _login(page, portal.base)
        page.get_by_role("link", name="Compte rendu de consultation du 12 juin").click()
        page.get_by_role("link", name="Masquer ce document").click()
        assert page.get_by_text("Ce que cela change").is_visible()
        screenshot(page, "patient-masquage")
        page.get_by_role("button", name="Masquer le document").click()
        page.wait_for_url("**/portail/patient/documents/*?fait=masque")
        assert page.get_by_role("status").inner_text().startswith("Le document est masqué")
        assert portal.dmp.call("GET", read, "martin").status_code == 403
        # Settings: an invalid RPPS is explained next to the field, and the field keeps it.
        page.get_by_role("link", name="Mes paramètres").click()
        field = page.get_by_label("Numéro RPPS du professionnel à bloquer")
        field.fill("12345678901")
        page.get_by_role("button", name="Bloquer ce professionnel").click()
        assert "invalide" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Numéro RPPS du professionnel à bloquer").input_value() == (
            "12345678901"
        )
        screenshot(page, "patient-parametres")
    finally:
        context.close()


def test_a_professional_breaks_the_glass_and_the_patient_sees_it(
    portal: Portal, chromium: Any
) -> None:
    from tests.scenario import LEGALL

    ps = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = ps.new_page()
    try:
        page.goto(portal.base + "/portail/")
        page.get_by_role("link", name="Espace professionnel").click()
        page.get_by_label("Numéro RPPS").fill(LEGALL)
        page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url("**/portail/ps")
        assert "authentification forte" in page.content()
        page.get_by_label("INS du patient").fill(PATIENT_INS)
        page.get_by_role("button", name="Ouvrir le dossier").click()
        assert "accès au dossier refusé" in page.get_by_role("heading", level=1).inner_text()
        screenshot(page, "ps-refus")
        page.get_by_label("Justification").fill("Patient inconscient, admis aux urgences")
        page.get_by_label("Je certifie").check()
        page.get_by_role("button", name="Accéder en urgence").click()
        banner = page.locator(".bandeau-urgence")
        assert "bris de glace" in banner.inner_text()
        colour = banner.evaluate("el => getComputedStyle(el).backgroundColor")
        assert colour == "rgb(206, 5, 0)"  # the alert red of the palette
        assert PATIENT_INS not in page.url
        screenshot(page, "ps-dossier-urgence")
    finally:
        ps.close()
    patient = chromium.new_context(viewport={"width": 390, "height": 844}, locale="fr-FR")
    page = patient.new_page()
    try:
        _login(page, portal.base)
        page.get_by_role("link", name="Qui a consulté mon dossier").click()
        row = page.locator("tr.urgence").first
        assert "Yann Le Gall" in row.inner_text() and "bris de glace" in row.inner_text()
    finally:
        patient.close()


def test_a_cpam_agent_opens_a_record_and_the_patient_logs_in_with_the_letter(
    portal: Portal, chromium: Any
) -> None:
    from tests.portail.test_guichet import ADULT

    agent = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = agent.new_page()
    try:
        page.goto(portal.base + "/portail/connexion?profil=agent")
        page.get_by_label("Identifiant d'agent").fill("CPAM35-A001")
        page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url("**/portail/guichet")
        page.get_by_label("INS (NIR à 13 caractères et sa clé)").fill(ADULT)
        page.get_by_label("Nom de naissance").fill("Morel")
        page.get_by_label("Prénom(s)").fill("Claire")
        page.get_by_label("Date de naissance").fill("1990-05-14")
        page.get_by_label("Sexe").select_option("female")
        screenshot(page, "guichet-creation")
        # Without the consent box: refused, the form keeps what was typed.
        page.get_by_role("button", name="Ouvrir le dossier et imprimer le courrier").click()
        assert "consentement exprès" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Nom de naissance").input_value() == "Morel"
        page.get_by_label("consent expressément").check()
        page.get_by_role("button", name="Ouvrir le dossier et imprimer le courrier").click()
        code = page.locator("#code-acces").inner_text()
        assert page.locator(".qr svg").count() == 1
        screenshot(page, "guichet-courrier")
        page.emulate_media(media="print")
        assert not page.locator(".bandeau").is_visible()  # the letter prints alone
    finally:
        agent.close()
    patient = chromium.new_context(viewport={"width": 390, "height": 844}, locale="fr-FR")
    page = patient.new_page()
    try:
        page.goto(portal.base + "/portail/")
        page.get_by_role("link", name="Accéder à mon dossier").click()
        page.get_by_label("Identifiant national de santé").fill(ADULT)
        page.get_by_label("Code d'accès").fill(code)
        page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url("**/portail/patient")
        assert "Claire Morel" in page.locator(".identite").inner_text()
    finally:
        patient.close()
