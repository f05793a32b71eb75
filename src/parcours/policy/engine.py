"""The DMP policy-decision point: ``decide`` is the only place where access rules are evaluated.

The evaluation order is fixed by the reference (dmp-access.md §2): gates G1–G6 (any deny stops),
then the consent basis for the access mode (R10–R18, none → R19), then the habilitation matrix
and the document filters (R20–R26), then the action rules (R27–R46). Each rule is a small named
function over immutable facts; what may change without code (delays, the matrix, the §5.4
interpretations) is data in ``policy/data``. A decision names the rule that decided, every rule
that contributed, and the notifications it obliges the caller to queue (never on a deny, R45).

Time is a fact (``Request.now``): the announcement delay, authorisation expiry and the 10-year
retention are computed from it, never from the clock, so a trace can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from parcours.policy.facts import Actor, DocumentState, RecordState, Request
from parcours.policy.rules import READ_CELLS, Rules, load_rules

Recipient = Literal["holder", "mt", "representatives", "target", "previous_mt"]
TraceScope = Literal["all", "representative", "own"]

PS_KINDS = frozenset({"professional", "social_professional"})
HOLDER_SETTINGS = frozenset(
    {
        "mask",
        "unmask",
        "block",
        "unblock",
        "set-opposition",
        "grant",
        "revoke",
        "team-consent",
        "remove-from-team",
        "designate-mt",
        "mask-all",
        "close",
        "reactivate",
        "set-contact",
    }
)
CONTENT_READS = frozenset({"read", "search", "read-record"})
# Settings of the record (not of a document): a PS reaches them only through R12, R13, R37.
RECORD_SETTINGS = (HOLDER_SETTINGS - {"mask", "unmask"}) | {"delegate"}


@dataclass(frozen=True)
class Notify:
    recipient: Recipient
    event: str


@dataclass(frozen=True)
class Decision:
    permit: bool
    rule: str
    reason: str
    rules: tuple[str, ...] = ()
    notifications: tuple[Notify, ...] = ()
    basis: str | None = None
    trace_scope: TraceScope | None = None

    @property
    def deny(self) -> bool:
        return not self.permit


class _Deny(Exception):
    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass
class _Eval:
    """One evaluation: the facts, and what the rules have contributed so far."""

    request: Request
    actor: Actor
    record: RecordState
    document: DocumentState | None
    rules: Rules
    applied: list[str] = field(default_factory=list)
    notes: list[Notify] = field(default_factory=list)
    basis: str | None = None
    scope: TraceScope | None = None

    # --- who is acting ----------------------------------------------------------------------
    @property
    def holder(self) -> bool:
        return self.actor.kind == "patient" and self.actor.id == self.record.ins

    @property
    def representative(self) -> bool:
        return (
            self.actor.kind == "legal_representative"
            and self.record.patient_id in self.actor.represents
        )

    @property
    def holder_side(self) -> bool:
        return self.holder or self.representative

    @property
    def ps(self) -> bool:
        return self.actor.kind in PS_KINDS

    @property
    def mt(self) -> bool:
        return self.record.mt is not None and self.actor.id == self.record.mt

    @property
    def author(self) -> bool:
        return self.document is not None and self.document.author == self.actor.id

    def deny(self, rule: str, reason: str) -> _Deny:
        return _Deny(rule, reason)

    def use(self, rule: str) -> None:
        if rule not in self.applied:
            self.applied.append(rule)

    def notify(self, recipient: Recipient, event: str) -> None:
        """Holder notices of a minor's record go to his representatives, except those caused
        by a secret connection (R24b): the notice itself would reveal the act."""
        if recipient == "holder" and self.minor:
            if self.request.minor_secret:
                return
            recipient = "representatives"
        note = Notify(recipient, event)
        if note not in self.notes:
            self.notes.append(note)

    # --- the record's holder --------------------------------------------------------------
    def age(self) -> int | None:
        born = self.record.holder_birth_date
        return None if born is None else _years_between(born, self.request.now.date())

    @property
    def minor(self) -> bool:
        age = self.age()
        return age is not None and age < self.rules["majority_age"]


def _years_between(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months (R1111-53 counts "un mois"), clamped to the month's last day."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def invisible_to_holder(document: DocumentState, now: datetime, rules: Rules) -> bool:
    """R22: still pending announcement at ``now`` (the stored flag alone is not enough)."""
    if not document.invisible_patient or document.announced_at is not None:
        return False
    return now < add_months(document.published_at, rules["announce_auto_visible_months"])


def announcement_due(
    document: DocumentState, now: datetime, *, rules: Rules | None = None
) -> Literal["reminder", "visible"] | None:
    """R23 / R22 for the scheduler: the content-free reminder from day 14, visibility at one
    month; None once announced or when the document was never hidden."""
    rules = rules or load_rules()
    if not document.invisible_patient or document.announced_at is not None:
        return None
    if now >= add_months(document.published_at, rules["announce_auto_visible_months"]):
        return "visible"
    if now >= document.published_at + timedelta(days=rules["announce_notice_days"]):
        return "reminder"
    return None


# --- gates ----------------------------------------------------------------------------------


def g1_strong_authentication(e: _Eval) -> None:
    if e.actor.kind == "structure":
        raise e.deny(
            "G1",
            "Un certificat de structure n'accède pas pour lui-même : la requête doit nommer le "
            "professionnel authentifié qui agit.",
        )
    if not e.actor.strong_auth:
        raise e.deny("G1", "Authentification forte requise (CPS, e-CPS, Pro Santé Connect).")
    if e.actor.via_structure is not None:
        e.use("G1")


def g2_record_usable(e: _Eval) -> None:
    record, action = e.record, e.request.action
    if (
        e.actor.kind == "heir"
        and record.status == "closed"
        and not purged(record, e.request.now, e.rules)
    ):
        return  # R43 decides what heirs may ask of a closed record
    if record.status in ("absent", "opposed"):
        if action == "create":
            return
        raise e.deny("G2", "Aucun DMP accessible pour ce patient.")
    if record.status == "closed":
        if purged(record, e.request.now, e.rules):
            raise e.deny("G2", "DMP fermé depuis plus de 10 ans : il a été supprimé.")
        if record.closure_reason == "death" and action not in ("heir-request", "read-traces"):
            if action == "reactivate":
                raise e.deny("G6", "DMP fermé au décès du titulaire : il ne peut être réactivé.")
            raise e.deny("G2", "DMP fermé (décès du titulaire).")
        if action in ("reactivate", "create", "heir-request"):
            return
        if action == "read-traces" and e.holder_side:
            return
        raise e.deny(
            "G2",
            "Le DMP de ce patient est fermé : il n'est plus accessible, seulement conservé "
            "pendant la durée légale (10 ans).",
        )


def purged(record: RecordState, now: datetime, rules: Rules) -> bool:
    if record.status != "closed" or record.closed_at is None:
        return False
    return now >= add_months(record.closed_at, 12 * rules["retention_after_closure_years"])


def g3_forbidden(e: _Eval) -> None:
    if e.actor.kind in e.rules.forbidden_kinds:
        raise e.deny(
            "G3",
            "Accès interdit par la loi (art. L1111-18 CSP) à cet acteur, même avec l'accord "
            "du patient.",
        )
    if e.request.purpose in e.rules.forbidden_purposes:
        raise e.deny(
            "G3",
            "Accès interdit pour la conclusion ou l'exécution d'un contrat ou pour l'emploi "
            "(art. L1111-18 CSP).",
        )


def r43_heirs(e: _Eval) -> None:
    if e.actor.kind != "heir":
        return
    if e.request.action != "heir-request":
        raise e.deny(
            "R43",
            "Les ayants droit n'ont pas d'accès direct : leur demande est instruite hors ligne.",
        )
    if e.record.closure_reason != "death":
        raise e.deny(
            "R43", "Une demande d'ayant droit n'est recevable qu'après le décès du titulaire."
        )
    if e.record.heirs_opposed:
        raise e.deny(
            "R43", "Le titulaire s'est opposé de son vivant à l'accès de ses ayants droit."
        )
    e.use("R43")


def r42_administrative(e: _Eval) -> None:
    kind, action = e.actor.kind, e.request.action
    if kind == "agent" and action == "create":
        return
    if kind == "system" and action in ("publish", "replace", "record-death"):
        return
    if kind in e.rules.administrative_kinds:
        raise e.deny(
            "R42",
            "Les agents et systèmes de l'Assurance Maladie ne consultent pas le contenu d'un DMP.",
        )


def g4_blocked(e: _Eval) -> None:
    if e.actor.id not in e.record.blocked:
        return
    if e.request.action == "publish" and e.rules["blocked_ps_may_publish"]:
        e.use("G4")
        return
    raise e.deny("G4", "Le patient a bloqué l'accès de ce professionnel à son DMP.")


def g5_representation(e: _Eval) -> None:
    if e.actor.kind == "legal_representative":
        if not e.representative:
            raise e.deny("R40", "Ce représentant légal ne représente pas le titulaire de ce DMP.")
        if not e.minor:
            raise e.deny(
                "G5",
                "Le titulaire est majeur : les droits du représentant légal ont pris fin.",
            )
        e.use("R40")
    elif e.actor.kind == "patient":
        if not e.holder:
            raise e.deny("R19", "Un patient n'accède qu'à son propre DMP.")
        age = e.age()
        if age is not None and age < e.rules["minor_own_access_age"]:
            raise e.deny(
                "R40",
                "Un mineur n'a pas d'accès propre à son DMP : ses représentants légaux l'exercent.",
            )


# --- consent basis (professionals) ----------------------------------------------------------


def _valid_authorisation(e: _Eval, kind: str) -> bool:
    return any(
        a.ps == e.actor.id and a.kind == kind and a.valid_at(e.request.now)
        for a in e.record.authorisations
    )


def r17_bris_de_glace(e: _Eval) -> str:
    if e.actor.role in ("occupational", "fire"):
        raise e.deny(
            "R15", "Le médecin du travail ou de sapeurs-pompiers n'a pas d'accès d'urgence."
        )
    if e.actor.kind != "professional":
        raise e.deny("R17", "Le bris de glace est réservé aux professionnels de santé.")
    if not (e.request.justification or "").strip():
        raise e.deny("R17", "Bris de glace : la justification de l'urgence est obligatoire.")
    if e.record.oppose_bris_de_glace:
        raise e.deny("R17", "Le patient s'est opposé à l'accès en urgence (bris de glace).")
    e.notify("holder", "bris-de-glace")
    if e.record.mt:
        e.notify("mt", "bris-de-glace")
    return "R17"


def r18_centre_15(e: _Eval) -> str:
    if e.actor.role != "regulator" or e.actor.kind != "professional":
        raise e.deny("R18", "Le mode centre 15 est réservé au médecin régulateur du SAMU.")
    if not (e.request.call_id or "").strip():
        raise e.deny("R18", "Mode centre 15 : l'identifiant de l'appel est obligatoire.")
    if e.record.oppose_centre_15:
        raise e.deny("R18", "Le patient s'est opposé à l'accès du médecin régulateur.")
    e.notify("holder", "centre-15")
    if e.record.mt and e.rules["centre15_notifies_mt"]:
        e.notify("mt", "centre-15")
    return "R18"


def normal_basis(e: _Eval) -> str:
    """R10–R16 in order; the first that holds is the basis, none → R19."""
    actor, record, now = e.actor, e.record, e.request.now
    if actor.role in ("occupational", "fire"):  # R15: express consent only, no presumption
        if e.rules["occupational_doctor_access"] == "never":
            raise e.deny("R15", "L'accès du médecin du travail est désactivé sur cette plateforme.")
        if _valid_authorisation(e, "express"):
            return "R15"
        raise e.deny(
            "R15", "Le médecin du travail n'accède qu'avec le consentement exprès du patient."
        )
    if e.mt:
        return "R10"
    resident = actor.role == "ehpad_coordinator" and record.patient_id in actor.residents
    if resident and _valid_authorisation(e, "express"):
        return "R14"
    if actor.id not in record.removed_from_team:
        requires = e.rules["care_team_requires_initial_consent"]
        for team in record.care_teams:
            if team.occupational or not team.includes(actor, now):
                continue
            if team.consented(now) or not requires:
                return "R11"
    if _valid_authorisation(e, "authorisation"):
        return "R12"
    raise e.deny(
        "R19",
        "Aucune base d'accès : ni médecin traitant, ni équipe de soins avec consentement, ni "
        "autorisation du patient en cours de validité.",
    )


def consent_basis(e: _Eval) -> str:
    mode = e.request.mode
    if mode == "bris_de_glace":
        basis = r17_bris_de_glace(e)
    elif mode == "centre_15":
        basis = r18_centre_15(e)
    else:
        basis = normal_basis(e)
        if (
            e.request.first_access
            and e.request.action in CONTENT_READS
            and e.rules["notify_first_access"]
        ):
            e.notify("holder", "first-access")
    e.basis = basis
    e.use(basis)
    return basis


# --- document filters -----------------------------------------------------------------------


def r25_status(e: _Eval, document: DocumentState) -> None:
    if document.status == "deleted":
        raise e.deny("R25", "Document supprimé.")


def r20_matrix(e: _Eval, document: DocumentState) -> None:
    if e.basis == "R10":
        return
    matrix = e.rules.matrix
    row = e.actor.profession
    if f"role:{e.actor.role}" in matrix.rows:
        row = f"role:{e.actor.role}"
    column = matrix.column_of(document.class_code, document.type_code)
    if matrix.cell(row, column) not in READ_CELLS:
        raise e.deny(
            "R20",
            "La matrice d'habilitations ne permet pas à cette profession de lire ce type de "
            "document.",
        )
    e.use("R20")


def r21_masking(e: _Eval, document: DocumentState) -> None:
    if e.record.mask_all:
        if e.author or (e.mt and e.rules["mask_all_spares_mt"] and e.request.mode == "normal"):
            e.use("R21b")
        else:
            raise e.deny("R21b", "Le patient a masqué l'ensemble de son DMP aux professionnels.")
    if document.masque_ps:
        emergency = e.request.mode != "normal"
        spared = e.author or (e.mt and not emergency)
        if spared or (emergency and e.rules["masked_visible_in_emergency"]):
            e.use("R21")
        else:
            raise e.deny("R21", "Document masqué aux professionnels de santé par le patient.")
    if document.invisible_representatives:
        e.use("R24")  # binds representatives only; a PS reads it


def holder_filters(e: _Eval, document: DocumentState) -> None:
    if invisible_to_holder(document, e.request.now, e.rules):
        raise e.deny(
            "R22",
            "Document en attente de consultation d'annonce : il n'est pas encore visible.",
        )
    if document.invisible_patient:
        e.use("R22")  # announced, or past the automatic delay: visible now
    if e.representative and (document.invisible_representatives or document.secret_session):
        raise e.deny("R24", "Document non visible par les représentants légaux.")


def read_document(e: _Eval, document: DocumentState) -> None:
    r25_status(e, document)
    if e.holder_side:
        holder_filters(e, document)
    else:
        r20_matrix(e, document)
        r21_masking(e, document)


# --- actions --------------------------------------------------------------------------------


def _flags_on_publish(e: _Eval) -> None:
    flags = e.request.flags
    if e.minor:
        if e.request.minor_secret:
            if flags.invisible_representatives is not True:
                raise e.deny(
                    "R24b",
                    "Connexion secrète : tout document publié doit être invisible des "
                    "représentants légaux.",
                )
        elif flags.invisible_representatives is None:
            raise e.deny(
                "R24b",
                "DMP d'un mineur : la visibilité par les représentants légaux doit être indiquée.",
            )
        e.use("R24b")
    if flags.masque_ps is None or flags.invisible_patient is None:
        raise e.deny(
            "R46",
            "Toute publication doit indiquer explicitement le masquage aux professionnels et la "
            "visibilité par le patient.",
        )
    if (
        flags.masque_ps
        and flags.invisible_patient
        and not e.rules["cumul_invisible_patient_masque_ps"]
    ):
        raise e.deny(
            "R46",
            "Un document ne peut être à la fois masqué aux professionnels et invisible du patient.",
        )


def r27_publish(e: _Eval) -> None:
    klass = e.request.document_class or ""
    if klass in e.rules.reimbursement_classes and e.actor.kind != "system":
        raise e.deny("R27", "Les données de remboursement sont publiées par l'Assurance Maladie.")
    if e.actor.kind == "system":
        if klass not in e.rules.reimbursement_classes:
            raise e.deny(
                "R27", "Le système de l'Assurance Maladie ne publie que des remboursements."
            )
        e.use("R27")
        e.notify("holder", "new-document")
        return
    if klass in e.rules.personal_space_classes and not e.holder_side:
        raise e.deny("R27", "L'espace personnel est alimenté par le patient seul.")
    if e.holder_side:
        if klass not in e.rules.personal_space_classes:
            raise e.deny("R27", "Le patient alimente son espace personnel seulement.")
        e.use("R27")
        return
    _publishing_basis(e)
    _flags_on_publish(e)
    e.use("R27")
    if not e.request.flags.invisible_patient:
        e.notify("holder", "new-document")


def _publishing_basis(e: _Eval) -> None:
    """R27: "a PS with a consent basis (R10–R16, or R17 …) may publish" — a PS in the patient's
    care. Publishing needs no *consultation* of the record (NB2), but a stranger to the patient
    may not file documents into his record."""
    mode = e.request.mode
    try:
        if mode == "bris_de_glace":
            basis = r17_bris_de_glace(e)
        elif mode == "centre_15":
            basis = r18_centre_15(e)
        else:
            basis = normal_basis(e)
    except _Deny as refusal:
        raise e.deny(
            "R27",
            "Seul un professionnel qui prend en charge le patient alimente son DMP "
            f"({refusal.reason})",
        ) from None
    e.use(basis)


def _document(e: _Eval) -> DocumentState:
    if e.document is None:
        raise e.deny("R25", "Document introuvable.")
    return e.document


def _visible_to_holder(e: _Eval, document: DocumentState) -> bool:
    return not invisible_to_holder(document, e.request.now, e.rules)


def document_action(e: _Eval) -> None:
    """R28–R33 and R46 on an existing document, for professionals."""
    action, document = e.request.action, _document(e)
    r25_status(e, document)
    if action in ("replace", "archive", "delete"):
        same_structure = (
            action == "replace" and document.author_kind == "system" and e.actor.kind == "system"
        )
        if not (e.author or same_structure):
            rule = "R28" if action == "replace" else "R29"
            raise e.deny(
                rule, "Seul l'auteur du document peut le remplacer, l'archiver ou le supprimer."
            )
        if action == "replace":
            flags = e.request.flags
            masque = document.masque_ps if flags.masque_ps is None else flags.masque_ps
            invisible = (
                invisible_to_holder(document, e.request.now, e.rules)
                if flags.invisible_patient is None
                else flags.invisible_patient
            )
            if masque and invisible and not e.rules["cumul_invisible_patient_masque_ps"]:
                raise e.deny("R46", "Masqué aux professionnels et invisible du patient : interdit.")
            e.use("R28")
        else:
            e.use("R29")
            if action == "delete" and _visible_to_holder(e, document):
                e.notify("holder", "document-removed")
        return
    if action in ("mask", "unmask"):
        if not e.author:
            raise e.deny("R30", "Seuls le patient et l'auteur du document gèrent son masquage.")
        if action == "mask" and invisible_to_holder(document, e.request.now, e.rules):
            raise e.deny("R46", "Un document invisible du patient ne peut pas être masqué.")
        e.use("R30")
        return
    if action == "make-invisible":
        if not e.author:
            raise e.deny("R32", "Seul l'auteur rend un document invisible du patient.")
        if not invisible_to_holder(document, e.request.now, e.rules):
            raise e.deny(
                "R32", "Le document est déjà visible du patient : il ne peut plus être caché."
            )
        e.use("R32")
        return
    if action == "make-visible":
        if not document.invisible_patient:
            raise e.deny("R33", "Le document est déjà visible du patient.")
        if not e.author:
            consent_basis(e)  # R33: the author, or a PS with a basis (the MT has R10)
        e.use("R33")
        e.notify("holder", "document-visible")
        return
    raise e.deny("R19", "Action non permise à un professionnel.")


def holder_action(e: _Eval) -> None:
    """R30–R41 exercised by the holder or his representative (R40)."""
    action = e.request.action
    document = e.document
    if action in ("mask", "unmask", "delete"):
        document = _document(e)
        r25_status(e, document)
        if e.representative and (document.invisible_representatives or document.secret_session):
            raise e.deny("R24", "Document non visible par les représentants légaux.")
        if action == "delete":
            if invisible_to_holder(document, e.request.now, e.rules):
                raise e.deny("R31", "Un document pas encore visible ne peut être supprimé.")
            if document.class_code in e.rules.reimbursement_classes:
                raise e.deny("R31", "L'historique des remboursements ne peut être supprimé.")
            if (
                document.author_kind == "professional"
                and not e.rules["patient_may_delete_ps_documents"]
            ):
                raise e.deny("R31", "Le patient ne supprime que ses propres documents.")
            e.use("R31")
        else:
            if action == "mask" and invisible_to_holder(document, e.request.now, e.rules):
                raise e.deny(
                    "R46", "Ce document n'est pas encore visible : il ne peut être masqué."
                )
            e.use("R30")
        e.notify("holder", "confirmation")
        return
    if action in ("make-invisible", "make-visible", "replace", "archive"):
        rule = {"make-invisible": "R32", "make-visible": "R33", "replace": "R28", "archive": "R29"}
        raise e.deny(rule[action], "Action réservée aux professionnels de santé.")
    if action in ("block", "unblock"):
        if action == "block" and e.request.target is not None and e.request.target == e.record.mt:
            raise e.deny(
                "R34",
                "Le médecin traitant ne peut être bloqué : changez ou retirez d'abord le "
                "médecin traitant.",
            )
        e.use("R34")
    elif action == "set-opposition":
        e.use("R35")
    elif action in ("grant", "revoke", "remove-from-team"):
        e.use("R36")
    elif action == "team-consent":
        e.use("R36")
        e.use("R11")
    elif action == "designate-mt":
        e.use("R37")
        if e.record.mt and e.record.mt != e.request.target:
            e.notify("previous_mt", "mt-removed")
        e.notify("target", "mt-designated")
    elif action == "mask-all":
        e.use("R21b")
    elif action == "set-contact":
        e.use("R40" if e.representative else "L1111-19")
    elif action in ("close", "reactivate"):
        if action == "reactivate":
            if e.record.status != "closed":
                raise e.deny("R38", "Ce DMP n'est pas fermé.")
            if not e.rules["reopen_within_retention"]:
                raise e.deny("R38", "La réactivation n'est pas ouverte sur cette plateforme.")
        e.use("R38")
    else:
        raise e.deny("R19", "Action inconnue.")
    e.notify("holder", "confirmation")


def professional_settings(e: _Eval) -> None:
    """What a PS may do to the record's settings: record a consent he collected (R12), for a
    delegate (R13), or his own designation as MT with the patient's agreement (R37)."""
    action = e.request.action
    if action == "grant":
        if not e.request.consent_collected:
            raise e.deny(
                "R12",
                "Une autorisation n'est enregistrée que sur action explicite du professionnel "
                "qui a recueilli le consentement du patient.",
            )
        if e.request.target != e.actor.id:
            raise e.deny(
                "R13",
                "Un professionnel n'enregistre que le consentement recueilli pour lui-même ; "
                "pour un confrère, c'est une délégation (action delegate, réservée à un "
                "professionnel autorisé).",
            )
        e.use("R12")
        e.notify("holder", "confirmation")  # §3.2: grant → holder confirmation
        return
    if action == "delegate":
        basis = normal_basis(e)
        if basis not in ("R10", "R11", "R12"):
            raise e.deny("R13", "Seul un professionnel autorisé peut déléguer un accès.")
        e.use(basis)
        e.use("R13")
        e.notify("holder", "delegation")
        return
    if action == "designate-mt":
        if not e.request.consent_collected or e.request.target != e.actor.id:
            raise e.deny("R37", "Le médecin traitant est désigné par le patient.")
        e.use("R37")
        e.notify("holder", "confirmation")
        return
    rule = {
        "mask-all": "R21b",
        "block": "R34",
        "unblock": "R34",
        "set-opposition": "R35",
        "revoke": "R36",
        "team-consent": "R36",
        "remove-from-team": "R36",
        "close": "R38",
        "reactivate": "R38",
    }.get(action, "R19")
    raise e.deny(rule, "Droit réservé au titulaire du DMP ou à son représentant légal.")


def r41_create(e: _Eval) -> None:
    if e.record.status == "active":
        raise e.deny("R41", "Ce patient a déjà un DMP ouvert.")
    if e.actor.kind not in ("patient", "legal_representative", "agent", "professional"):
        raise e.deny("R41", "Cet acteur ne crée pas de DMP.")
    if not e.request.consent_collected and not e.holder_side:
        raise e.deny(
            "R41",
            "La création ou la réactivation d'un DMP exige le consentement recueilli du patient.",
        )
    e.use("R41")
    e.notify("holder", "record-created")


def r39_traces(e: _Eval) -> None:
    if e.holder:
        e.scope = "all"
    elif e.representative:
        e.scope = "representative"
    elif e.ps:
        e.scope = "all" if e.mt else "own"
    else:
        raise e.deny("R39", "Les traces sont consultées par le titulaire et les professionnels.")
    e.use("R39")


# --- the decision point ---------------------------------------------------------------------


def _evaluate(e: _Eval) -> str:
    """Run the fixed rule sequence; return the deciding rule of a permit (raise on a deny)."""
    action = e.request.action
    g1_strong_authentication(e)
    g2_record_usable(e)
    g3_forbidden(e)
    r43_heirs(e)
    if e.actor.kind == "heir":
        return "R43"
    r42_administrative(e)
    if action == "create":
        r41_create(e)
        return "R41"
    g4_blocked(e)
    g5_representation(e)
    if e.request.minor_secret and not e.minor:
        raise e.deny("R24b", "La connexion secrète n'existe que pour le DMP d'un mineur.")
    if e.request.mode != "normal" and not e.ps:
        # §1.2, R17/R18: the emergency modes are a professional's; a holder claiming one gains
        # nothing, but his trace would record an emergency access that never was.
        raise e.deny(
            "R17" if e.request.mode == "bris_de_glace" else "R18",
            "Les modes d'urgence (bris de glace, centre 15) sont réservés aux professionnels "
            "de santé.",
        )
    if action == "record-death" and e.actor.kind != "system":
        raise e.deny(
            "R38", "Le décès du titulaire est enregistré par l'Assurance Maladie, pas sur le DMP."
        )
    if action == "read-traces":
        r39_traces(e)
        return "R39"
    if e.actor.kind == "system":
        if action == "record-death":
            e.use("R38")  # a closure; only R43 applies to the record afterwards (G2)
            return "R38"
        r27_publish(e)
        return "R27"
    if e.holder_side:
        if action in CONTENT_READS:
            if e.document is not None:
                r25_status(e, e.document)
                holder_filters(e, e.document)
            rule = "R40" if e.representative else "L1111-19"
            e.use(rule)
            return rule
        if action == "publish":
            r27_publish(e)
            return "R27"
        holder_action(e)
        return e.applied[-1] if e.applied else "R19"
    if not e.ps:
        raise e.deny("R19", "Acteur sans droit sur le DMP.")
    if action in RECORD_SETTINGS:
        professional_settings(e)
        return e.applied[-1]
    if action == "publish":
        r27_publish(e)
        return "R27"
    if action not in CONTENT_READS:
        document_action(e)  # the author manages his document (R28–R32) without a read basis
        return e.applied[-1]
    basis = consent_basis(e)
    if e.document is not None:
        read_document(e, e.document)
    return basis


def decide(
    request: Request,
    actor: Actor,
    record: RecordState,
    document: DocumentState | None = None,
    *,
    rules: Rules | None = None,
) -> Decision:
    """The one policy decision for ``request`` by ``actor`` on ``record`` (and ``document``)."""
    e = _Eval(request, actor, record, document, rules or load_rules())
    try:
        rule = _evaluate(e)
    except _Deny as refusal:
        return Decision(False, refusal.rule, refusal.reason, tuple([*e.applied, refusal.rule]))
    if rule not in e.applied:
        e.applied.append(rule)
    return Decision(
        True,
        rule,
        _PERMIT_REASONS.get(rule, "Accès autorisé."),
        tuple(e.applied),
        tuple(e.notes),
        e.basis,
        e.scope,
    )


def search(
    request: Request,
    actor: Actor,
    record: RecordState,
    documents: list[DocumentState],
    *,
    rules: Rules | None = None,
) -> tuple[Decision, list[DocumentState]]:
    """R26: the record-level decision, and exactly the documents a read would permit one by one.
    Archived and replaced documents are left out of a default search (R25)."""
    rules = rules or load_rules()
    at_record = decide(request, actor, record, rules=rules)
    if at_record.deny:
        return at_record, []
    read = Request(
        action="read",
        now=request.now,
        mode=request.mode,
        justification=request.justification,
        call_id=request.call_id,
        purpose=request.purpose,
        minor_secret=request.minor_secret,
    )
    hits = [
        d
        for d in documents
        if d.status == "current" and decide(read, actor, record, d, rules=rules).permit
    ]
    return at_record, hits


_PERMIT_REASONS = {
    "R10": "Médecin traitant : accès à l'ensemble du DMP.",
    "R11": "Membre de l'équipe de soins, avec le consentement initial du patient.",
    "R12": "Autorisation du patient en cours de validité.",
    "R13": "Accès délégué par un professionnel autorisé.",
    "R14": "Médecin coordonnateur de l'EHPAD, avec l'accord du résident.",
    "R15": "Médecin du travail, avec le consentement exprès du patient.",
    "R17": "Accès en urgence (bris de glace) tracé et notifié.",
    "R18": "Médecin régulateur du centre 15, accès tracé et notifié.",
    "R27": "Alimentation du DMP.",
    "R39": "Consultation des traces.",
    "R40": "Représentant légal du titulaire.",
    "R41": "Création du DMP avec le consentement du patient.",
    "R43": "Demande des ayants droit enregistrée pour instruction.",
    "L1111-19": "Le titulaire accède à son DMP.",
}
