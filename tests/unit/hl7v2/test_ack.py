"""ACKs we answer with (MSH swapped, MSA, ERR with table 0357) and ACKs we read."""

from __future__ import annotations

from adapters.hl7v2.ack import AckError, build_ack, encode, read_ack
from adapters.hl7v2.message import read_header

ADT = (
    "MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||ADT^A01^ADT_A01|MSG-77|P|2.5.1\r"
    "PID|1||123^^^HOSP^MR||Doe^John\r"
)


def fields(ack: str, segment: str) -> list[str]:
    line = next(s for s in ack.split("\r") if s.startswith(segment))
    parts = line.split("|")
    return ["MSH", "|", *parts[1:]] if segment == "MSH" else parts  # [n] is field n


def test_accept_swaps_sender_and_receiver_and_echoes_the_control_id() -> None:
    ack = build_ack(read_header(ADT), "AA")
    msh, msa = fields(ack, "MSH"), fields(ack, "MSA")
    assert msh[3:7] == ["FHIR", "HUB", "LAB", "NORTH"]
    assert msh[9] == "ACK^A01^ACK" and msh[11] == "P" and msh[12] == "2.5.1"
    assert msh[10] and msh[10] != "MSG-77"
    assert msa[1:3] == ["AA", "MSG-77"]
    assert "ERR" not in ack and ack.endswith("\r")


def test_error_carries_err_with_location_and_table_0357_code() -> None:
    error = AckError("PID-3 is missing", "101", "PID^1^3")
    ack = build_ack(read_header(ADT), "AE", error)
    err = fields(ack, "ERR")
    assert fields(ack, "MSA")[1:4] == ["AE", "MSG-77", "PID-3 is missing"]
    assert err[2] == "PID^1^3"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E" and err[8] == "PID-3 is missing"


def test_unreadable_header_gets_an_ar_under_a_default_msh() -> None:
    ack = build_ack(None, "AR", AckError("no MSH", "100"))
    msh = fields(ack, "MSH")
    assert msh[2] == "^~\\&" and msh[9] == "ACK" and msh[12] == "2.5.1"
    assert fields(ack, "MSA")[1:3] == ["AR", ""]
    assert fields(ack, "ERR")[3].startswith("100^")


def test_text_is_escaped_in_the_message_delimiters() -> None:
    ack = build_ack(read_header(ADT), "AE", AckError("bad | field ^ here\rnext"))
    assert "bad \\F\\ field \\S\\ here next" in ack
    assert read_ack(ack).code == "AE"


def test_ack_follows_the_message_charset() -> None:
    raw = ADT.replace("|2.5.1\r", "|2.5.1||||||8859/1\r", 1)
    header = read_header(raw)
    ack = build_ack(header, "AE", AckError("Müller"))
    assert fields(ack, "MSH")[18] == "8859/1"
    assert "Müller".encode("latin-1") in encode(ack, header)


def test_read_ack_finds_code_control_id_and_text() -> None:
    got = read_ack(build_ack(read_header(ADT), "AR", AckError("unsupported", "200")).encode())
    assert (got.code, got.control_id, got.text, got.accepted) == (
        "AR",
        "MSG-77",
        "unsupported",
        False,
    )
    assert read_ack("MSH|^~\\&|A|B|C|D|||ACK|1|P|2.5.1\rMSA|CA|X1\r").accepted
    assert read_ack(b"junk").code == ""
