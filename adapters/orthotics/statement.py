"""The EU MDR statement for a custom-made device, as a PDF (fpdf2).

Regulation (EU) 2017/745, Annex XIII, Section 1: "For custom-made devices, the manufacturer or
its authorised representative shall draw up a statement containing all of the following
information": the manufacturer's name and address and those of all manufacturing sites; the
authorised representative, if applicable; data identifying the device; that the device is
intended for the exclusive use of a particular patient, identified by name, an acronym or a
numerical code; the prescriber and, where applicable, the health institution; the specific
characteristics of the product as indicated by the prescription; that the device conforms to
the general safety and performance requirements of Annex I, naming any that are not fully met
with the grounds; and whether it incorporates a medicinal substance or tissues or cells of
human or animal origin. Article 21 has the statement accompany the device; Section 4 keeps it
for at least 10 years.
"""

from __future__ import annotations

from fpdf import FPDF

from adapters.orthotics.model import MdrStatement

TITLE = "Statement concerning a custom-made device"
SUBTITLE = "Regulation (EU) 2017/745 on medical devices, Annex XIII, Section 1"
EXCLUSIVE_USE = (
    "This device is a custom-made device, intended for the exclusive use of the patient "
    "identified by the code {code}."
)
CONFORMS = (
    "The device in question conforms to the general safety and performance requirements set "
    "out in Annex I of Regulation (EU) 2017/745."
)
NOT_MET = "The following requirements have not been fully met, with the grounds:"
NO_SUBSTANCES = (
    "The device does not contain or incorporate a medicinal substance, including a human blood "
    "or plasma derivative, nor tissues or cells of human origin, or of animal origin as "
    "referred to in Regulation (EU) No 722/2012."
)


def statement_pdf(statement: MdrStatement) -> bytes:
    """The statement as a PDF document (A4, one page for an ordinary prescription)."""
    pdf = FPDF(format="A4")
    pdf.set_title(TITLE)
    pdf.set_creator("fhir-server orthotics")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 5, SUBTITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for label, value in _facts(statement):
        _field(pdf, label, value)
    _heading(pdf, "Specific characteristics as indicated by the prescription")
    for name, value in statement.design_characteristics.items():
        _field(pdf, name, value)
    _heading(pdf, "Statement")
    _paragraph(pdf, EXCLUSIVE_USE.format(code=statement.patient_code))
    _paragraph(pdf, CONFORMS)
    if statement.requirements_not_met:
        _paragraph(pdf, NOT_MET)
        for item in statement.requirements_not_met:
            _paragraph(pdf, f"- {item}")
    _paragraph(pdf, statement.substances or NO_SUBSTANCES)
    pdf.ln(4)
    _field(pdf, "Date", statement.date)
    _field(pdf, "Signed for the manufacturer", statement.signatory or "")
    return bytes(pdf.output())


def _facts(statement: MdrStatement) -> list[tuple[str, str]]:
    facts = [("Manufacturer", statement.manufacturer)]
    facts += [("Manufacturing site", site) for site in statement.manufacturing_sites]
    if statement.authorised_representative:
        facts.append(("Authorised representative", statement.authorised_representative))
    facts += [
        ("Device", statement.device_description),
        ("Serial number(s)", ", ".join(statement.serial_numbers)),
        ("Patient code", statement.patient_code),
        ("Prescriber", statement.prescriber),
    ]
    if statement.health_institution:
        facts.append(("Health institution", statement.health_institution))
    return facts


def _latin1(text: str) -> str:
    """The PDF core fonts cover Latin-1; anything else is shown as '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.multi_cell(0, 6, _latin1(text), new_x="LMARGIN", new_y="NEXT")


def _field(pdf: FPDF, label: str, value: str) -> None:
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(60, 6, _latin1(label))
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(0, 6, _latin1(value) or "-", new_x="LMARGIN", new_y="NEXT")


def _paragraph(pdf: FPDF, text: str) -> None:
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(0, 5.5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
