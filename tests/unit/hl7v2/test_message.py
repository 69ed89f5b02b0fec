"""Reading ER7: line endings, BOM, delimiters, escapes, charsets, versions, batches, refusals."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from adapters.hl7v2.batch import split
from adapters.hl7v2.convert import ConvertOptions, convert
from adapters.hl7v2.message import MessageError, decode, parse, read_header

MSH = "MSH|^~\\&|APP|FAC|RCV|RFAC|20240105083000||ADT^A01^ADT_A01|C1|P|{version}"
PID = "PID|1||12001^^^HOSP^MR||Everyman^Adam||19610615|M"


def adt(version: str = "2.5.1", *extra: str, sep: str = "\r") -> str:
    return sep.join([MSH.format(version=version), "EVN|A01", PID, *extra]) + sep


def error_of(raw: bytes | str, options: ConvertOptions | None = None) -> MessageError:
    with pytest.raises(MessageError) as caught:
        convert(raw, options)
    return caught.value


def resources(
    raw: bytes | str, type: str, options: ConvertOptions | None = None
) -> list[dict[str, Any]]:
    bundle = convert(raw, options or ConvertOptions()).bundle
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == type]


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_endings(sep: str) -> None:
    text = decode(adt(sep=sep).encode())
    assert [s.name for s in parse(text).segments] == ["MSH", "EVN", "PID"]


def test_bom_is_dropped() -> None:
    assert read_header(b"\xef\xbb\xbf" + adt().encode()).control_id == "C1"
    assert decode(b"\xef\xbb\xbf" + adt().encode()).startswith("MSH|")


def test_continuation_lines_stay_in_obx_text() -> None:
    raw = adt("2.5.1", "OBX|1|TX|8251-1^Note^LN||first line\nsecond line||||||F", sep="\n")
    message = parse(decode(raw.encode()))
    assert [s.name for s in message.segments] == ["MSH", "EVN", "PID", "OBX"]
    obs = resources(raw.encode(), "Observation")
    assert obs[0]["valueString"] == "first line\nsecond line"


def test_odd_delimiters() -> None:
    raw = (
        "MSH#$~\\&#APP#FAC#RCV#RFAC#20240105083000##ADT$A01#C1#P#2.5.1\r"
        "PID#1##12001$$$HOSP$MR##Everyman$Adam\r"
    )
    header = read_header(raw)
    assert (header.field_sep, header.message_type, header.trigger_event) == ("#", "ADT", "A01")
    patient = resources(raw, "Patient")[0]
    assert patient["name"][0]["family"] == "Everyman"
    assert patient["identifier"][0]["value"] == "12001"


def test_truncation_character_in_msh2() -> None:
    raw = adt("2.7").replace("^~\\&|", "^~\\&#|", 1)
    header = read_header(raw)
    assert header.encoding_chars == "^~\\&#" and header.delimiters.truncation == "#"
    assert resources(raw, "Patient")[0]["gender"] == "male"


def test_escape_sequences_are_decoded() -> None:
    value = "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\g\\.br\\h"
    raw = adt("2.5.1", f"OBX|1|ST|8251-1^Note^LN||{value}||||||F")
    assert resources(raw, "Observation")[0]["valueString"] == "a|b^c&d~e\\fAg\nh"


@pytest.mark.parametrize("charset, codec", [("8859/1", "iso-8859-1"), ("CP1252", "cp1252")])
def test_declared_charsets(charset: str, codec: str) -> None:
    msh = MSH.format(version="2.5.1") + f"||||||{charset}"
    raw = (
        "\r".join(
            [
                msh,
                "PID|1||12001^^^HOSP^MR||Müller^Zoë€"
                if codec == "cp1252"
                else "PID|1||12001^^^HOSP^MR||Müller^Zoë",
            ]
        )
        + "\r"
    )
    name = resources(raw.encode(codec), "Patient")[0]["name"][0]
    assert name["family"] == "Müller" and name["given"][0].startswith("Zoë")


def test_undeclared_latin1_is_read_as_windows_1252() -> None:
    raw = adt().replace("Everyman", "Müller").encode("cp1252")
    assert resources(raw, "Patient")[0]["name"][0]["family"] == "Müller"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.5.1", "2.8.2", "2.9"])
def test_supported_versions(version: str) -> None:
    assert resources(adt(version), "Patient")


@pytest.mark.parametrize("version", ["2.2", "banana", ""])
def test_unsupported_version_is_ar_203(version: str) -> None:
    error = error_of(adt(version))
    assert (error.ack_code, error.error_code) == ("AR", "203")


def test_batch_is_split() -> None:
    one, two = adt(), adt().replace("|C1|", "|C2|")
    batch = f"FHS|^~\\&|APP\rBHS|^~\\&|APP\r{one}{two}BTS|2\rFTS|1\r"
    messages = split(batch.encode())
    assert [read_header(m).control_id for m in messages] == ["C1", "C2"]
    assert split(one.encode()) == [one.encode()]


def test_z_segment_is_kept() -> None:
    bundle = convert(adt("2.5.1", "ZPI|custom^value")).bundle
    binary = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary"
    )
    assert b"ZPI|custom^value" in base64.b64decode(binary["data"])
    assert binary["contentType"] == "x-application/hl7-v2+er7"


def test_time_without_offset_gets_the_sender_zone() -> None:
    raw = adt(
        "2.5.1", "PV1|1|I|||||||||||||||||V1^^^HOSP^VN|||||||||||||||||||||||||20240105080000"
    )
    encounter = resources(raw, "Encounter", ConvertOptions(timezone="America/New_York"))[0]
    assert encounter["period"]["start"] == "2024-01-05T08:00:00-05:00"


@pytest.mark.parametrize(
    "raw", [b"", b"PID|1||x\r", b"\x00\x01\x02garbage\xff\xfe", b"MSH", "hello world"]
)
def test_unreadable_input_is_ar(raw: bytes | str) -> None:
    assert error_of(raw).ack_code == "AR"


@pytest.mark.parametrize(
    "change, code",
    [
        (("ADT^A01^ADT_A01", "QRY^A19"), "200"),
        (("ADT^A01^ADT_A01", "ADT^A99"), "201"),
        (("|C1|P|", "|C1|X|"), "202"),  # under the strict setting (lenient by default)
        (("|C1|P|", "||P|"), "101"),
    ],
)
def test_refused_headers(change: tuple[str, str], code: str) -> None:
    error = error_of(adt().replace(*change), ConvertOptions(strict_processing_id=True))
    assert (error.ack_code, error.error_code) == ("AR", code)


def test_missing_pid3_is_ae_101_with_location() -> None:
    error = error_of(adt().replace("12001^^^HOSP^MR", ""))
    assert (error.ack_code, error.error_code, error.location) == ("AE", "101", "PID^1^3")


def test_a_batch_file_is_sent_as_its_messages() -> None:
    from fhir_server.cli.hl7 import split_messages

    one, two = adt(), adt().replace("|C1|", "|C2|")
    batch = f"\ufeffFHS|^~\\&|APP\nBHS|^~\\&|APP\r\n{one}{two}BTS|2\nFTS|1\n".encode()
    messages = split_messages(batch)
    assert [read_header(m).control_id for m in messages] == ["C1", "C2"]
    assert not any(b"BTS" in m or b"FHS" in m for m in messages)
