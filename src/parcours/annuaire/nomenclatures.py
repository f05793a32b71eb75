"""Nomenclatures (NOS) and FHIR URLs used by the Annuaire santé.

Plain data only: dicts ``code -> French label`` and string constants.  No
imports beyond :mod:`typing` so that any module can use it.

Sources (checked against public ANS / InteropSanté material, see
``docs/annuaire-fhir-mapping.md`` for the FHIR mapping):

* NOS tables: ANS CodeSystems as published by the "Terminologies de Santé"
  IG (rendered pages v1.12.0, CodeSystem versions 2024-2026).  An older
  snapshot of the same CodeSystems is kept in ``ansforge/IG-NOS`` at
  ``ig/allNos2/CodeSystem-<TRE id>.json``.  Labels are the NOS ``display``
  values, verbatim (accents/casing as written by the NOS); deprecated codes
  are left out unless stated.
* FHIR profiles, extensions, search parameters: ``ansforge/IG-fhir-annuaire``
  (``input/fsh/...``) and ``Interop-Sante/hl7.fhir.fr.core``
  (``input/fsh/...``).
"""

from typing import Final

# =============================================================================
# CodeSystem canonical URLs (NOS pattern:
# https://mos.esante.gouv.fr/NOS/<TRE_xxx-Nom>/FHIR/<TRE-xxx-Nom>)
# Source: ansforge/IG-fhir-annuaire input/fsh/profiles/AsPractitionerRoleProfile.fsh
# and the "url" of each CodeSystem in the NOS.
# =============================================================================
NOS_BASE: Final = "https://mos.esante.gouv.fr/NOS"


def _nos(tre: str) -> str:
    """Build a NOS FHIR canonical URL from e.g. ``"TRE_G15-ProfessionSante"``."""
    return f"{NOS_BASE}/{tre}/FHIR/{tre.replace('_', '-', 1)}"


CS_PROFESSION: Final = _nos("TRE_G15-ProfessionSante")
CS_CATEGORIE_PROFESSIONNELLE: Final = _nos("TRE_R09-CategorieProfessionnelle")
CS_TYPE_SAVOIR_FAIRE: Final = _nos("TRE_R04-TypeSavoirFaire")
CS_SPECIALITE_ORDINALE: Final = _nos("TRE_R38-SpecialiteOrdinale")
CS_COMPETENCE: Final = _nos("TRE_R39-Competence")
CS_COMPETENCE_EXCLUSIVE: Final = _nos("TRE_R40-CompetenceExclusive")
CS_MODE_EXERCICE: Final = _nos("TRE_R23-ModeExercice")
CS_CIVILITE: Final = _nos("TRE_R81-Civilite")
CS_CIVILITE_EXERCICE: Final = _nos("TRE_R11-CiviliteExercice")
CS_SECTEUR_ACTIVITE: Final = _nos("TRE_R02-SecteurActivite")
CS_FONCTION: Final = _nos("TRE_R21-Fonction")
CS_GENRE_ACTIVITE: Final = _nos("TRE_R22-GenreActivite")
CS_SECTION_TABLEAU_CNOP: Final = _nos("TRE_R06-SectionTableauCNOP")
CS_SOUS_SECTION_TABLEAU_CNOP: Final = _nos("TRE_G05-SousSectionTableauCNOP")
CS_ROLE_PRISE_CHARGE: Final = _nos("TRE_R85-RolePriseCharge")
CS_AUTRE_FONCTION_SANITAIRE: Final = _nos("TRE_R96-AutreFonctionSanitaire")
CS_TYPE_BAL: Final = _nos("TRE_R257-TypeBAL")
CS_TYPE_MESSAGERIE: Final = _nos("TRE_R256-TypeMessagerie")
CS_CATEGORIE_ETABLISSEMENT: Final = _nos("TRE_R66-CategorieEtablissement")
CS_STATUT_JURIDIQUE_FINESS: Final = _nos("TRE_R72-FinessStatutJuridique")
CS_NAF_REV2_NIVEAU5: Final = _nos("TRE_R75-InseeNAFrev2Niveau5")
CS_ESPIC: Final = _nos("TRE_R73-ESPIC")
CS_COMMUNE: Final = _nos("TRE_R13-Commune")
CS_TYPE_DIPLOME: Final = _nos("TRE_R14-TypeDiplome")
CS_DIPLOME_ETAT_FRANCAIS: Final = _nos("TRE_R48-DiplomeEtatFrancais")
CS_TYPE_CARTE: Final = _nos("TRE_R87-TypeCarte")

# ValueSet used to bind the mailbox type (as-ext-mailbox-mss-metadata.type).
# Source: ansforge/IG-fhir-annuaire input/fsh/aliases.fsh
VS_TYPE_BAL_RASS: Final = f"{NOS_BASE}/JDV_J139-TypeBAL-RASS/FHIR/JDV-J139-TypeBAL-RASS"

# fr-core CodeSystems.
# Source: Interop-Sante/hl7.fhir.fr.core input/fsh/codesystems/FRCoreCodeSystemv2-0203.fsh
# and FRCoreCodeSystemv2-3307.fsh (canonical base https://hl7.fr/ig/fhir/core).
FR_CORE_BASE: Final = "https://hl7.fr/ig/fhir/core"
CS_IDENTIFIER_TYPE: Final = f"{FR_CORE_BASE}/CodeSystem/fr-core-cs-v2-0203"
CS_ORGANIZATION_TYPE: Final = f"{FR_CORE_BASE}/CodeSystem/fr-core-cs-v2-3307"

# =============================================================================
# Identifier systems
# Sources: Interop-Sante/hl7.fhir.fr.core input/fsh/profiles/FRCorePractitionerProfile.fsh
#          and FRCoreOrganizationProfile.fsh; ansforge/IG-fhir-annuaire examples
#          input/fsh/examples/DP/PP19DP-*.fsh, PP16DP-*.fsh.
# =============================================================================
# idNatPS = type digit + identifier ("8" + RPPS, "0" + ADELI); type IDNPS.
SYSTEM_IDNAT_PS: Final = "urn:oid:1.2.250.1.71.4.2.1"
# Bare 11-digit RPPS number (Practitioner, type RPPS).  Also the system of
# PractitionerRole.identifier (slice idSituationExercice, "identifiant
# d'activité propre au RPPS") in as-practitionerrole 1.1.0.
SYSTEM_RPPS: Final = "https://rpps.esante.gouv.fr"
# Bare 9-digit ADELI number (fr-core slice "adeli", type ADELI).
SYSTEM_ADELI: Final = "https://adeli.esante.gouv.fr"
# idNat_Struct (type IDNST): prefix 0 + ADELI rang, 1 + FINESS, 2 + SIREN,
# 3 + SIRET, 4 + RPPS rang / identifiant technique de la structure.
SYSTEM_IDNAT_STRUCT: Final = "urn:oid:1.2.250.1.71.4.2.2"
# FINESS EG (type FINEG) and EJ (type FINEJ).
SYSTEM_FINESS: Final = "https://finess.esante.gouv.fr"
# SIREN (type SIREN) and SIRET (type SIRET) share the same system in fr-core 2.x
# (older Annuaire profiles used "http://sirene.fr").
SYSTEM_SIRENE: Final = "https://sirene.fr"
SYSTEM_SIREN: Final = SYSTEM_SIRENE
SYSTEM_SIRET: Final = SYSTEM_SIRENE
# RPPS rang (cabinets libéraux) and ADELI rang: fr-core types them INTRN,
# the Annuaire examples use RPPSRG for RPPS rang.
SYSTEM_RPPS_RANG: Final = "https://rppsrang.esante.gouv.fr"
SYSTEM_ADELI_RANG: Final = "https://adelirang.esante.gouv.fr"
# "Identifiant technique de la structure": UNVERIFIED for API v2.  The old
# as-organization profile (ansforge/IG-fhir-annuaire
# input/fsh/profiles/AsOrganizationProfile.fsh, parent FrOrganization) states
# "https://annuaire.sante.fr"; the same URL is used as meta.source.
SYSTEM_IDENTIFIANT_TECHNIQUE_STRUCTURE: Final = "https://annuaire.sante.fr"

# identifier.type codes (system CS_IDENTIFIER_TYPE), display as in fr-core.
IDENTIFIER_TYPES: Final[dict[str, str]] = {
    "IDNPS": "Identifiant National de Professionnel de Santé",
    "RPPS": "N° RPPS",
    "ADELI": "N° ADELI",
    "RPPSRG": "N° RPPS Rang",
    "IDNST": "Identification nationale de structure définie par l’ANS dans le CI_SIS",
    "FINEJ": "FINESS d'entité juridique",
    "FINEG": "FINESS d'entité géographique",
    "SIREN": "Identification de l'organisation au SIREN",
    "SIRET": "Identification de l'organisation au SIRET",
    "INTRN": "Identifiant interne",
}
# identifier system for each identifier type (convenience mapping).
IDENTIFIER_TYPE_SYSTEMS: Final[dict[str, str]] = {
    "IDNPS": SYSTEM_IDNAT_PS,
    "RPPS": SYSTEM_RPPS,
    "ADELI": SYSTEM_ADELI,
    "RPPSRG": SYSTEM_RPPS_RANG,
    "IDNST": SYSTEM_IDNAT_STRUCT,
    "FINEJ": SYSTEM_FINESS,
    "FINEG": SYSTEM_FINESS,
    "SIREN": SYSTEM_SIRENE,
    "SIRET": SYSTEM_SIRENE,
}

# "Type d'identifiant PP" column of the public extract (first digit of the
# idNatPS).  Source: /work/shared/reference/mssante.md §5.4 (field tools).
TYPES_IDENTIFIANT_PP: Final[dict[str, str]] = {
    "0": "ADELI",
    "8": "RPPS",
}

# Organization.type codes for EJ/EG (system CS_ORGANIZATION_TYPE).
ORGANIZATION_TYPES: Final[dict[str, str]] = {
    "LEGAL-ENTITY": "Entité légale",
    "GEOGRAPHICAL-ENTITY": "Entité géographique",
}

# =============================================================================
# Profiles, extensions
# Source: ansforge/IG-fhir-annuaire input/fsh/profiles/*.fsh, extensions/*.fsh,
# rendered IG v1.1.0 / 1.2.0-snapshot examples.
# =============================================================================
AS_BASE: Final = "https://interop.esante.gouv.fr/ig/fhir/annuaire"
AS_SD: Final = f"{AS_BASE}/StructureDefinition"
FR_CORE_SD: Final = f"{FR_CORE_BASE}/StructureDefinition"

PROFILE_AS_PRACTITIONER: Final = f"{AS_SD}/as-practitioner"
PROFILE_AS_PRACTITIONERROLE: Final = f"{AS_SD}/as-practitionerrole"
PROFILE_AS_ORGANIZATION: Final = f"{AS_SD}/as-organization"
# "Donnée publique" profiles: what the public API v2 declares in meta.profile.
PROFILE_AS_DP_PRACTITIONER: Final = f"{AS_SD}/as-dp-practitioner"
PROFILE_AS_DP_PRACTITIONERROLE: Final = f"{AS_SD}/as-dp-practitionerrole"
PROFILE_AS_DP_ORGANIZATION: Final = f"{AS_SD}/as-dp-organization"
PROFILE_AS_MAILBOX_MSS: Final = f"{AS_SD}/as-mailbox-mss"  # ContactPoint profile
PROFILE_FR_CORE_PRACTITIONER: Final = f"{FR_CORE_SD}/fr-core-practitioner"
PROFILE_FR_CORE_PRACTITIONER_ROLE: Final = f"{FR_CORE_SD}/fr-core-practitioner-role"
PROFILE_FR_CORE_ORGANIZATION: Final = f"{FR_CORE_SD}/fr-core-organization"

# Mailbox (BAL MSSanté) extensions.
EXT_MAILBOX_MSS_METADATA: Final = f"{AS_SD}/as-ext-mailbox-mss-metadata"
# Sub-extension urls of as-ext-mailbox-mss-metadata.  "type" is a
# CodeableConcept (CS_TYPE_BAL), "listeRouge"/"digitization" booleans, others
# strings.  "responsible"/"phone" are not open data (0..0 in as-dp-*).
# "digitization" (dématérialisation) appears in the API v2 documentation and
# input/pagecontent/balmss-spec.md but not in every version of the extension.
MAILBOX_META_TYPE: Final = "type"
MAILBOX_META_DESCRIPTION: Final = "description"
MAILBOX_META_RESPONSIBLE: Final = "responsible"
MAILBOX_META_SERVICE: Final = "service"
MAILBOX_META_PHONE: Final = "phone"
MAILBOX_META_LISTE_ROUGE: Final = "listeRouge"
MAILBOX_META_DIGITIZATION: Final = "digitization"
EXT_CONTACT_POINT_EMAIL_TYPE: Final = f"{FR_CORE_SD}/fr-core-contact-point-email-type"
EMAIL_TYPE_MSSANTE: Final = "MSSANTE"  # code in CS_TYPE_MESSAGERIE

# TRE_R256-TypeMessagerie (valueCoding of fr-core-contact-point-email-type).
TYPES_MESSAGERIE: Final[dict[str, str]] = {
    "MSSANTE": "MSSANTE",
    "APICRYPT": "APICRYPT",
    "OSM": "OSM",
    "AutreMessagerie": "Messagerie électronique rassemblant des acteurs légitimes à l'utiliser",
}

# Other extensions seen in API v2 resources.
# valueCode on Organization.type, see ORGANIZATION_TYPE_SLICES.
EXT_ORGANIZATION_TYPES: Final = f"{AS_SD}/as-ext-organization-types"
EXT_ORGANIZATION_PERIOD: Final = "http://hl7.org/fhir/StructureDefinition/organization-period"
# Address.extension, valueCoding in CS_COMMUNE (code commune INSEE / COG).
EXT_ADDRESS_INSEE_CODE: Final = f"{FR_CORE_SD}/fr-core-address-insee-code"
# meta/resource extension; sub-extensions autorite-enregistrement, systeme-information.
EXT_DATA_TRACE: Final = f"{AS_SD}/as-ext-data-trace"
# Practitioner extension; sub-extensions type (CS_TYPE_CARTE), number, period.
EXT_SMARTCARD: Final = f"{AS_SD}/as-ext-smartcard"
EXT_ADXP_HOUSE_NUMBER: Final = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-houseNumber"
EXT_ADXP_BUILDING_NUMBER_SUFFIX: Final = (
    "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-buildingNumberSuffix"
)
EXT_ADXP_STREET_NAME_TYPE: Final = (
    "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-streetNameType"
)
EXT_ADXP_STREET_NAME_BASE: Final = (
    "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-streetNameBase"
)
EXT_ADXP_ADDITIONAL_LOCATOR: Final = (
    "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-additionalLocator"
)
EXT_ADXP_CARE_OF: Final = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-careOf"
EXT_ADXP_POST_BOX: Final = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-postBox"

# Organization.type discriminator codes (valueCode of EXT_ORGANIZATION_TYPES).
# Source: ansforge/IG-fhir-annuaire input/fsh/extensions/AsOrganizationTypes.fsh
ORGANIZATION_TYPE_SLICES: Final[dict[str, str]] = {
    "organizationType": CS_ORGANIZATION_TYPE,
    "secteurActiviteRASS": CS_SECTEUR_ACTIVITE,
    "activiteINSEE": CS_NAF_REV2_NIVEAU5,
    "statutJuridiqueINSEE": CS_STATUT_JURIDIQUE_FINESS,
    "sphParticipation": CS_ESPIC,
}

# API v2 endpoint (reference §5.2; annuaire-sante-fhir-documentation).
API_V2_BASE_URL: Final = "https://gateway.api.esante.gouv.fr/fhir/v2"
API_KEY_HEADER: Final = "ESANTE-API-KEY"

# =============================================================================
# TRE_G15-ProfessionSante (OID 1.2.250.1.71.1.2.7), version 20250328120000.
# Active codes only.  Deprecated 2024-12-13: 35 Aide-soignant, 36 Ambulancier,
# 37 Auxiliaire de puériculture, 38 Préparateur en pharmacie hospitalière,
# 39 Préparateur en pharmacie (officine); 93 Psychologue deprecated (the code
# lives in TRE_R95-UsagerTitre).
# =============================================================================
PROFESSIONS: Final[dict[str, str]] = {
    "10": "Médecin",
    "21": "Pharmacien",
    "26": "Audioprothésiste",
    "28": "Opticien-Lunetier",
    "31": "Assistant dentaire",
    "32": "Physicien médical",
    "40": "Chirurgien-Dentiste",
    "50": "Sage-Femme",
    "60": "Infirmier",
    "69": "Infirmier psychiatrique",
    "70": "Masseur-Kinésithérapeute",
    "80": "Pédicure-Podologue",
    "81": "Orthoprothésiste",
    "82": "Podo-Orthésiste",
    "83": "Orthopédiste-Orthésiste",
    "84": "Oculariste",
    "85": "Epithésiste",
    "86": "Technicien de laboratoire médical",
    "91": "Orthophoniste",
    "92": "Orthoptiste",
    "94": "Ergothérapeute",
    "95": "Diététicien",
    "96": "Psychomotricien",
    "98": "Manipulateur ERM",
}
PROFESSION_MEDECIN: Final = "10"
PROFESSION_PHARMACIEN: Final = "21"
PROFESSION_CHIRURGIEN_DENTISTE: Final = "40"
PROFESSION_SAGE_FEMME: Final = "50"
PROFESSION_INFIRMIER: Final = "60"

# =============================================================================
# TRE_R09-CategorieProfessionnelle (OID 1.2.250.1.213.1.6.1.10), 20260223120000.
# "M" is displayed "Agent public" since 2024-03-29 (it was "Militaire" before,
# e.g. ansforge/IG-NOS snapshot); "F" (Fonctionnaire d'Etat ou de collectivité
# locale) deprecated 2026-02-23.
# =============================================================================
CATEGORIES_PROFESSIONNELLES: Final[dict[str, str]] = {
    "C": "Civil",
    "E": "Etudiant",
    "M": "Agent public",
}

# =============================================================================
# TRE_R04-TypeSavoirFaire (OID 1.2.250.1.213.1.6.1.16), 20250625120000.
# =============================================================================
TYPES_SAVOIR_FAIRE: Final[dict[str, str]] = {
    "S": "Spécialité ordinale",
    "C": "Compétence",
    "CEX": "Compétence exclusive",
    "CAPA": "Capacité",
    "CM": "Compétence métier",
    "DEC": "Droit d'exercice complémentaire",
    "DNQ": "DESC non qualifiant",
    "FQ": "Fonction qualifiée",
    "OP": "Orientation particulière",
    "PAC": "Qualification PAC",
    "SH": "Spécialité de concours hospitalier",
    "SST": "Surspécialité de Formation Spécialisée Transversale (FST)",
}

# =============================================================================
# TRE_R38-SpecialiteOrdinale (OID 1.2.250.1.213.2.28), 20260730120000.
# Selection of the most common codes, labels verbatim (the "(SM)"/"(SCD)"/
# "(SI)" suffix is part of the NOS display: SM = médecin, SCD = chirurgien-
# dentiste, SI = infirmier).  R38 has no active pharmacist specialty (the SP01-
# SP04 codes are deprecated since 2018); pharmacist biologists carry the
# biologie médicale codes (SM03, SM63-SM67) or R06/G05 on PractitionerRole.
# =============================================================================
SAVOIR_FAIRE: Final[dict[str, str]] = {
    # Médecine générale
    "SM54": "Médecine générale (SM)",
    "SM26": "Qualifié en Médecine générale (SM)",
    "SM53": "Spécialiste en Médecine générale (SM)",
    # Spécialités médicales
    "SM01": "Anatomie et Cytologie pathologiques (SM)",
    "SM02": "Anesthésie-réanimation (SM)",
    "SM03": "Biologie médicale (SM)",
    "SM04": "Cardiologie et Maladies vasculaires (SM)",
    "SM73": "Médecine cardiovasculaire (SM)",
    "SM15": "Dermatologie et Vénéréologie (SM)",
    "SM16": "Endocrinologie et Métabolisme (SM)",
    "SM62": "Endocrinologie, diabétologie, nutrition (SM)",
    "SM17": "Génétique médicale (SM)",
    "SM18": "Gériatrie (SM)",
    "SM19": "Gynécologie médicale (SM)",
    "SM20": "Gynécologie-obstétrique (SM)",
    "SM21": "Hématologie (SM)",
    "SM24": "Gastro-entérologie et Hépatologie (SM)",
    "SM25": "Médecine du travail (SM)",
    "SM27": "Médecine interne (SM)",
    "SM28": "Médecine nucléaire (SM)",
    "SM29": "Médecine physique et de réadaptation (SM)",
    "SM30": "Néphrologie (SM)",
    "SM32": "Neurologie (SM)",
    "SM36": "Oncologie, option médicale (SM)",
    "SM37": "Oncologie, option radiothérapie (SM)",
    "SM38": "Ophtalmologie (SM)",
    "SM39": "Oto-rhino-laryngologie (SM)",
    "SM34": "ORL et Chirurgie cervico-faciale (SM)",
    "SM40": "Pédiatrie (SM)",
    "SM41": "Pneumologie (SM)",
    "SM42": "Psychiatrie (SM)",
    "SM43": "Psychiatrie, option enfant et adolescent (SM)",
    "SM44": "Radio-diagnostic (SM)",
    "SM74": "Radiologie imagerie médicale (SM)",
    "SM45": "Radio-thérapie (SM)",
    "SM46": "Médecine intensive-réanimation (SM)",
    "SM48": "Rhumatologie (SM)",
    "SM49": "Santé publique et Médecine sociale (SM)",
    "SM57": "Allergologie (SM)",
    "SM58": "Maladies infectieuses et tropicales (SM)",
    "SM59": "Médecine d'urgence (SM)",
    "SM60": "Médecine légale et expertises médicales (SM)",
    "SM61": "Médecine vasculaire (SM)",
    # Spécialités chirurgicales
    "SM05": "Chirurgie générale (SM)",
    "SM06": "Chirurgie maxillo-faciale (SM)",
    "SM07": "Chirurgie maxillo-faciale et Stomatologie (SM)",
    "SM08": "Chirurgie orthopédique et Traumatologie (SM)",
    "SM09": "Chirurgie infantile (SM)",
    "SM10": "Chirurgie plastique reconstructrice et esthétique (SM)",
    "SM11": "Chirurgie thoracique et cardio-vasculaire (SM)",
    "SM12": "Chirurgie urologique (SM)",
    "SM13": "Chirurgie vasculaire (SM)",
    "SM14": "Chirurgie viscérale et digestive (SM)",
    "SM31": "Neuro-chirurgie (SM)",
    "SM50": "Stomatologie (SM)",
    "SM56": "Chirurgie orale (SM)",
    # Biologie médicale (médecins et pharmaciens biologistes)
    "SM63": "Biologie médicale option biologie générale (SM)",
    "SM64": "Biologie médicale option médecine moléculaire, génétique et pharmacologie (SM)",
    "SM65": "Biologie médicale option hématologie et immunologie (SM)",
    "SM66": "Biologie médicale option agents infectieux (SM)",
    "SM67": "Biologie médicale option biologie de la reproduction (SM)",
    # Chirurgiens-dentistes
    "SCD01": "Orthopédie dento-faciale (SCD)",
    "SCD02": "Chirurgie orale (SCD)",
    "SCD03": "Médecine bucco-dentaire (SCD)",
    # Infirmiers (pratique avancée, spécialités)
    "SI01": "Exercice infirmier en pratique avancée pathologies chroniques stabilisées (SI)",
    "SI02": "Exercice infirmier en pratique avancée oncologie et hémato-oncologie (SI)",
    "SI03": "Exercice infirmier en pratique avancée maladie rénale chronique (SI)",
    "SI04": "Exercice infirmier en pratique avancée santé mentale (SI)",
    "SI05": "Exercice infirmier en pratique avancée urgences (SI)",
    "SI06": "Infirmier(ère) de bloc opératoire (SI)",
    "SI07": "Infirmier(ère) anesthésiste (SI)",
    "SI08": "Infirmier(ère) puériculteur(trice)",
}
SAVOIR_FAIRE_MEDECINE_GENERALE: Final = "SM54"

# =============================================================================
# TRE_R23-ModeExercice (OID 1.2.250.1.213.1.6.1.18), 20260202120000.
# "I" (Indirect) was added 2026-02-02.
# =============================================================================
MODES_EXERCICE: Final[dict[str, str]] = {
    "L": "Libéral, indépendant, artisan, commerçant",
    "S": "Salarié",
    "B": "Bénévole",
    "I": "Indirect",
}

# =============================================================================
# TRE_R81-Civilite (OID 1.2.250.1.213.1.6.1.69).  MLLE deprecated 2016-09-01.
# Carried in Practitioner.name.prefix.
# =============================================================================
CIVILITES: Final[dict[str, str]] = {
    "M": "Monsieur",
    "MME": "Madame",
}

# =============================================================================
# TRE_R11-CiviliteExercice (OID 1.2.250.1.213.1.6.1.11).
# Carried in Practitioner.name.suffix.
# =============================================================================
CIVILITES_EXERCICE: Final[dict[str, str]] = {
    "DR": "Docteur",
    "PR": "Professeur",
    "MC": "Médecin chef",
    "MG": "Médecin général",
    "PC": "Pharmacien chef",
    "PG": "Pharmacien général",
}

# =============================================================================
# TRE_R02-SecteurActivite (OID 1.2.250.1.71.4.2.4), 20250523120000.
# All active codes (SA11 and SA62 are deprecated).  Carried in
# Organization.type (slice secteurActiviteRASS).
# =============================================================================
SECTEURS_ACTIVITE: Final[dict[str, str]] = {
    "SA01": "Etablissement public de santé",
    "SA02": "Hôpital militaire du Service de santé des armées",
    "SA03": "Etablissement privé PSPH",
    "SA04": "Etablissement privé non PSPH",
    "SA05": "Centre de santé",
    "SA06": "Autre structure du Service de santé des armées",
    "SA07": "Cabinet individuel",
    "SA08": "Cabinet de groupe",
    "SA09": "Exercice en société",
    "SA10": "Transporteur sanitaire",
    "SA12": "Etablissement de soins et prévention",
    "SA13": "Prévention et soins en entreprise",
    "SA14": "Etablissements scolaires, universitaires et de formation hors champ FINESS",
    "SA15": "PMI et Planification familiale",
    "SA16": "Etablissement pour personnes handicapées",
    "SA17": "Etablissement pour personnes âgées",
    "SA18": "Etablissement aide à la famille",
    "SA19": "Etablissements FINESS de formation aux professions sanitaires et sociales",
    "SA20": "Etablissement pour la protection de l'enfance",
    "SA21": "Etablissement d'hébergement et de réadaptation",
    "SA22": "Recherche",
    "SA23": "Assurance privée",
    "SA24": "Organisme de sécurité sociale",
    "SA25": "Laboratoire de biologie médicale",
    "SA26": "Ministère ou Service déconcentré",
    "SA27": "Collectivité territoriale",
    "SA28": "Association ou organisme humanitaire",
    "SA29": "Laboratoire d'analyses et de biologie médicale",
    "SA30": "Autre établissement sanitaire",
    "SA31": "Répartition et Distribution de médicaments et dispositifs médicaux",
    "SA32": "Fabrication, Exploitation et Importation de médicaments et dispositifs médicaux",
    "SA33": "Pharmacie d'officine",
    "SA34": "Centre de dialyse",
    "SA35": "Para-pharmacie",
    "SA36": "Centre anti-cancer",
    "SA37": "Centre de transfusion sanguine",
    "SA38": "Pharmacie minière",
    "SA39": "Pharmacie mutualiste",
    "SA40": "Secteur privé, praticien hospitalier temps plein",
    "SA41": "Autre établissement du domaine social ou médico-social",
    "SA42": "Appareillage médical",
    "SA43": "Secteur non défini",
    "SA44": "Recrutement ou Gestion RH",
    "SA45": "Communication, Marketing, Consulting, Média",
    "SA46": "Fab, Exploit, Import, Répart, Distrib médicaments et dispo médicaux",
    "SA47": "Incendie et secours",
    "SA48": "Entreprise indus et tertiaire hors pharmaceutique",
    "SA49": "Entité Outre-Mer",
    "SA50": "Permanence des soins ambulatoires hors cabinet",
    "SA51": "Structure de coop avec autorisation de soins",
    "SA52": "Maison de santé ou Pôle de santé",
    "SA53": "Siège administratif d'un établissement de santé",
    "SA54": "Centre de dépistage et de prévention",
    "SA55": "Laboratoire pharmaceutique préparant délivrant allergènes",
    "SA56": "Propharmacie",
    "SA57": "Structure de coop avec mission coordination soins",
    "SA58": "Entreprise de taxis",
    "SA59": "Labo de biologie médicale hors catégorie standard",
    "SA60": "Centres médicaux SNCF",
    "SA61": "Structure Dispensatrice à domicile d'Oxygène à usage médical",
    "SA63": "Structures de coordination et d'orientation",
    "SA64": "Société de téléconsultation",
    "SA65": "Antenne de pharmacie",
    "SA66": "Services de Prévention et de Santé au Travail (SPST)",
    "SA67": "Maisons médicales de garde (MMG)",
    "SA68": "Services départementaux d'incendie et de secours (SDIS)",
    "SA69": "Maisons de naissance",
}
SECTEUR_ETABLISSEMENT_PUBLIC_SANTE: Final = "SA01"
SECTEUR_ETABLISSEMENT_PRIVE_PSPH: Final = "SA03"
SECTEUR_ETABLISSEMENT_PRIVE_NON_PSPH: Final = "SA04"
SECTEUR_CENTRE_DE_SANTE: Final = "SA05"
SECTEUR_CABINET_INDIVIDUEL: Final = "SA07"
SECTEUR_CABINET_DE_GROUPE: Final = "SA08"
SECTEUR_EXERCICE_EN_SOCIETE: Final = "SA09"
SECTEUR_EHPAD: Final = "SA17"  # "Etablissement pour personnes âgées" (no EHPAD-specific code)
SECTEUR_LABORATOIRE_BIOLOGIE_MEDICALE: Final = "SA25"
SECTEUR_OFFICINE: Final = "SA33"
SECTEUR_MAISON_DE_SANTE: Final = "SA52"
# Groups used by the ANS documentation (annuaire-sante-fhir-documentation,
# use case "Extraction des BAL MSSanté").
SECTEURS_LABORATOIRES: Final = ("SA25", "SA29")
SECTEURS_OFFICINES: Final = ("SA33", "SA38", "SA39", "SA65")

# =============================================================================
# TRE_R21-Fonction (OID 1.2.250.1.213.1.6.1.17), 20260223120000.
# Active codes.  Carried in PractitionerRole.code (slice fonction).
# =============================================================================
FONCTIONS: Final[dict[str, str]] = {
    "FON-01": "Titulaire de cabinet",
    "FON-02": "Associé dans une société d'exercice (SEL ou SCP)",
    "FON-03": "Titulaire d'officine",
    "FON-04": "Remplaçant du titulaire d'officine",
    "FON-05": "Adjoint",
    "FON-07": "Gérant après incapacité ou décès",
    "FON-09": "Responsable d'établissement",
    "FON-17": "Collaborateur",
    "FON-18": "Assistant",
    "FON-19": "Praticien Conseil",
    "FON-21": "Médecin scolaire",
    "FON-22": "Remplaçant, intérimaire, intermittent",
    "FON-23": "Gérant",
    "FON-24": "Médecin de santé publique",
    "FON-29": "Médecin du travail",
    "FON-32": "Régulateur libéral",
    "FON-33": "Salarié en poste fixe",
    "FON-36": "Délégué",
    "FON-37": "Gérant de PUI",
    "FON-39": "Exercice en PMI",
    "FON-40": "Biologiste responsable",
    "FON-41": "Biologiste médical",
    "FON-42": "Assistant collaborateur",
    "FON-43": "Cadre de santé",
    "FON-45": "Directeur des soins",
    "FON-46": "Enseignant salarié",
    "FON-47": "Etudiant remplaçant, adjoint",
    "FON-48": "Interne",
    "FON-49": "Pharmacien responsable BPDO",
    "FON-50": "Pharmacien adjoint BPDO",
    "FON-51": "Remplacement partiel",
    "FON-52": "Etudiant militaire",
    "FON-54": "Permanence des soins ambulatoires hors cabinet",
    "FON-55": "Participation libérale aux missions de service public d'un ES",
    "FON-56": "Intervention libérale dans le cadre d'un GCS",
    "FON-57": "Docteur junior",
    "FON-58": "Activité en piscine ou bassin",
    "FON-59": "Gérant d'antenne",
    "FON-60": "Pharmacien remplaçant BPDO",
    "FON-61": "Prestataire de Services",
    "FON-62": "Consultations de solidarité territoriale",
    "FON-63": "Coordonnateur en EHPAD",
    "FON-AU": "Fonction non définie",
}

# =============================================================================
# TRE_R22-GenreActivite (OID 1.2.250.1.213.1.6.1.19), 20240329120000.
# Active codes (GENR05, GENR07 deprecated 2020).  PractitionerRole.code
# (slice genreActivite).
# =============================================================================
GENRES_ACTIVITE: Final[dict[str, str]] = {
    "GENR01": "Activité de soin et de pharmacie",
    "GENR02": "Activité de soins ou de pharmacien en tant que remplaçant",
    "GENR03": "Remplacement dans une activité de soins",
    "GENR04": "Activité non soignante",
    "GENR06": "Délégation de responsabilité pour continuité de service",
    "GENR08": "Coordination et orientation",
    "GENR09": "Administratif ou appui à l'organisation de l'accompagnement social/médico-social",
    "GENR10": "Accompagnement social/médico-social à la vie sociale, professionnelle, éducative",
    "GENR11": "Accompagnement social/médico-social au soin",
    "GENR12": "Encadrement et organisation de l'accompagnement social/médico-social",
    "GENR13": "Activité médico-administrative",
    "GENR99": "Autre activité",
}

# =============================================================================
# TRE_R257-TypeBAL (OID 1.2.250.1.213.3.3.55), 20231215120000.
# Carriers (ansforge/IG-fhir-annuaire input/pagecontent/balmss-spec.md):
# PER -> Practitioner (RPPS only) or PractitionerRole (RPPS + structure);
# ORG, APP -> Organization; CAB -> Practitioner (work in progress at ANS).
# =============================================================================
TYPES_BAL: Final[dict[str, str]] = {
    "PER": "Boîte aux lettres personnelle",
    "ORG": "Boîte aux lettres organisationnelle",
    "APP": "Boîte aux lettres applicative",
    "CAB": "Boîte aux lettres cabinet",
}
TYPES_BAL_COURTS: Final[dict[str, str]] = {
    "PER": "BAL personnelle",
    "ORG": "BAL organisationnelle",
    "APP": "BAL applicative",
    "CAB": "BAL cabinet",
}

# =============================================================================
# Convenience: table name -> (CodeSystem URL, dict)
# =============================================================================
NOMENCLATURES: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "TRE_G15": (CS_PROFESSION, PROFESSIONS),
    "TRE_R09": (CS_CATEGORIE_PROFESSIONNELLE, CATEGORIES_PROFESSIONNELLES),
    "TRE_R04": (CS_TYPE_SAVOIR_FAIRE, TYPES_SAVOIR_FAIRE),
    "TRE_R38": (CS_SPECIALITE_ORDINALE, SAVOIR_FAIRE),
    "TRE_R23": (CS_MODE_EXERCICE, MODES_EXERCICE),
    "TRE_R81": (CS_CIVILITE, CIVILITES),
    "TRE_R11": (CS_CIVILITE_EXERCICE, CIVILITES_EXERCICE),
    "TRE_R02": (CS_SECTEUR_ACTIVITE, SECTEURS_ACTIVITE),
    "TRE_R21": (CS_FONCTION, FONCTIONS),
    "TRE_R22": (CS_GENRE_ACTIVITE, GENRES_ACTIVITE),
    "TRE_R257": (CS_TYPE_BAL, TYPES_BAL),
    "TRE_R256": (CS_TYPE_MESSAGERIE, TYPES_MESSAGERIE),
}


def label(system_or_table: str, code: str) -> str | None:
    """Return the French label of ``code`` in a table known by name or URL."""
    for name, (url, table) in NOMENCLATURES.items():
        if system_or_table in (name, url):
            return table.get(code)
    return None


# =============================================================================
# Aliases (names already used by parcours.annuaire.resources).  Both person and
# structure identifier.type codes (IDNPS, RPPS, ADELI, FINEG, FINEJ, SIRET,
# INTRN...) live in the single fr-core CodeSystem fr-core-cs-v2-0203.
# =============================================================================
CS_TYPE_IDENTIFIANT_PERSONNE: Final = CS_IDENTIFIER_TYPE
CS_TYPE_IDENTIFIANT_STRUCTURE: Final = CS_IDENTIFIER_TYPE
SYSTEM_RPPS_URL: Final = SYSTEM_RPPS
SYSTEM_STRUCTURE_TECHNIQUE: Final = SYSTEM_IDENTIFIANT_TECHNIQUE_STRUCTURE  # unverified, see above
PROFILE_PRACTITIONER: Final = PROFILE_AS_DP_PRACTITIONER
PROFILE_PRACTITIONER_ROLE: Final = PROFILE_AS_DP_PRACTITIONERROLE
PROFILE_ORGANIZATION: Final = PROFILE_AS_DP_ORGANIZATION
