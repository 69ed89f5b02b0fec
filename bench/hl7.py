"""The HL7 v2 figures of `make bench`: MLLP in, one committed transaction, ACK out.

Against `fhir-server serve --mllp-port` on a scratch database, with python-hl7's MLLP
client: ADT^A01 throughput from several concurrent senders (each waits for its ACK before
sending the next, as MLLP senders do), the ACK latency at a paced 100 messages/s, and
ORU^R01 throughput with 20 OBX segments per message; for each, the server's CPU time per
message (user + system, from /proc), a figure that holds across machines better than
throughput does.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hl7.mllp import open_hl7_connection

from bench import server
from bench.report import ms, table

SENDERS = 8
ADT_TARGET = 300.0  # messages/s
PACED_RATE = 100.0  # messages/s
PACED_P99_TARGET_MS = 50.0
ORU_TARGET = 100.0  # messages/s (the issue: ORU^R01 with 20 OBX ≥ 100 messages/s)
COLUMNS = (
    "HL7 v2 over MLLP",
    "throughput",
    "p50",
    "p99",
    "server CPU/msg",
    "errors",
    "target",
    "met?",
)


@dataclass
class Row:
    label: str
    throughput: str
    p50: str
    p99: str
    errors: int
    target: str
    met: bool
    value: float
    cpu_ms: float | None = None  # server CPU (user + system) per message

    def cells(self) -> tuple[str, ...]:
        return (
            self.label,
            self.throughput,
            self.p50,
            self.p99,
            "" if self.cpu_ms is None else f"{self.cpu_ms:.2f} ms",
            str(self.errors),
            self.target,
            "yes" if self.met else "NO",
        )


def render(rows: list[Row]) -> str:
    return table(COLUMNS, [row.cells() for row in rows])


def adt(n: int, run: str) -> bytes:
    return (
        f"MSH|^~\\&|BENCH|LAB|FHIR|HUB|20240102030405||ADT^A01^ADT_A01|{run}-{n}|P|2.5.1\r"
        f"EVN|A01|20240102030405\r"
        f"PID|1||{run}{n:07d}^^^HOSP^MR||Bench^Patient{n}||19800101|F\r"
        "PV1|1|I|W^1^2\r"
    ).encode()


def oru(n: int, run: str) -> bytes:
    segments = [
        f"MSH|^~\\&|BENCH|LAB|FHIR|HUB|20240102030405||ORU^R01^ORU_R01|{run}-{n}|P|2.5.1",
        f"PID|1||{run}{n:07d}^^^HOSP^MR||Bench^Result{n}||19800101|M",
        f"OBR|1|P{n}|F{n}|24323-8^Comprehensive metabolic panel^LN|||20240102030405"
        "|||||||||||||||||F",
    ]
    for i in range(1, 21):
        segments.append(
            f"OBX|{i}|NM|{2000 + i}-{i % 10}^Analyte {i}^LN||{i}.5|mg/dL^mg/dL^UCUM|"
            f"1-40|N|||F|||20240102030405"
        )
    return ("\r".join(segments) + "\r").encode()


@dataclass
class Sent:
    latencies: list[float]
    errors: int
    seconds: float


async def _sender(port: int, messages: list[bytes], pace: float | None, out: Sent) -> None:
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    start = time.perf_counter()
    try:
        for index, message in enumerate(messages):
            if pace:
                await asyncio.sleep(max(0.0, start + index * pace - time.perf_counter()))
            sent = time.perf_counter()
            writer.writeblock(message)
            await writer.drain()
            ack = await asyncio.wait_for(reader.readblock(), 60)
            out.latencies.append((time.perf_counter() - sent) * 1000)
            if b"MSA|AA|" not in ack:
                out.errors += 1
    finally:
        writer.close()


async def _send(port: int, messages: list[bytes], senders: int, rate: float | None = None) -> Sent:
    out = Sent([], 0, 0.0)
    shares = [messages[i::senders] for i in range(senders)]
    pace = senders / rate if rate else None
    start = time.perf_counter()
    await asyncio.gather(*(_sender(port, share, pace, out) for share in shares))
    out.seconds = time.perf_counter() - start
    out.latencies.sort()
    return out


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] if values else 0.0


def _row(label: str, sent: Sent, count: int, target: float, minimum: float) -> Row:
    rate = count / sent.seconds if sent.seconds else 0.0
    return Row(
        label,
        f"{rate:,.0f} msg/s",
        ms(_percentile(sent.latencies, 0.5)),
        ms(_percentile(sent.latencies, 0.99)),
        sent.errors,
        f"≥ {target:g} msg/s",
        rate >= minimum and sent.errors == 0,
        rate,
    )


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(port: int, count: int, pid: int) -> list[Row]:
    await _send(port, [adt(i, "W") for i in range(50)], 2)  # warm-up
    before = server_cpu(pid)
    adts = await _send(port, [adt(i, "T") for i in range(count)], SENDERS)
    rows = [
        _row(f"ADT^A01, {SENDERS} senders, {count} messages", adts, count, ADT_TARGET, ADT_TARGET)
    ]
    rows[-1].cpu_ms = (server_cpu(pid) - before) * 1000 / count
    paced_count = int(PACED_RATE * 5)
    before = server_cpu(pid)
    paced = await _send(port, [adt(i, "P") for i in range(paced_count)], 4, PACED_RATE)
    p99 = _percentile(paced.latencies, 0.99)
    achieved = paced_count / paced.seconds if paced.seconds else 0.0
    rows.append(
        Row(
            f"ADT^A01 paced at {PACED_RATE:g} msg/s: ACK latency",
            f"{achieved:,.0f} msg/s",
            ms(_percentile(paced.latencies, 0.5)),
            ms(p99),
            paced.errors,
            f"p99 ≤ {PACED_P99_TARGET_MS:g} ms",
            p99 <= PACED_P99_TARGET_MS and paced.errors == 0,
            p99,
        )
    )
    rows[-1].cpu_ms = (server_cpu(pid) - before) * 1000 / paced_count
    oru_count = max(100, count // 5)
    before = server_cpu(pid)
    orus = await _send(port, [oru(i, "O") for i in range(oru_count)], SENDERS)
    rows.append(
        _row(f"ORU^R01 with 20 OBX, {SENDERS} senders", orus, oru_count, ORU_TARGET, ORU_TARGET)
    )
    rows[-1].cpu_ms = (server_cpu(pid) - before) * 1000 / oru_count
    return rows


def measure(scratch: Path, count: int = 3000) -> list[Row]:
    """Start a server with an MLLP listener on a scratch database and measure it."""
    port, mllp_port = server.free_port(), server.free_port()
    command = [
        str(server.BIN_DIR / "fhir-server"),
        "serve",
        "--host",
        server.HOST,
        "--port",
        str(port),
        "--mllp-port",
        str(mllp_port),
    ]
    env = {
        "FHIR_WORKERS": "1",  # the rows measure one process unless FHIR_WORKERS says otherwise
        **os.environ,
        "FHIR_DATABASE": str(scratch / "hl7.db"),
        "FHIR_AUTH": "off",
    }
    with server.running(command, env, port, scratch / "hl7.log") as running:
        return asyncio.run(_measure(mllp_port, count, running.process.pid))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fhir-bench-hl7-") as folder:
        print(render(measure(Path(folder))))
