"""The websocket channel of topic-based Subscriptions (outside /fhir):

    WS /subscriptions/websocket   send `bind-with-token <token>` (from
                                   `Subscription/[id]/$get-ws-binding-token`), then receive
                                   the notification Bundles as text frames

The token is the credential (single use, short-lived); the logic is in
`subscriptions.websocket`. A wrong or expired token gets an `error` text and the close
code 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from fhir_server.interactions.service import FhirService
from subscriptions import websocket as channel

BIND_SECONDS = 10.0  # to send the bind message after connecting


def install(app: FastAPI) -> None:
    app.add_api_websocket_route(channel.PATH, subscription_socket)


async def subscription_socket(ws: WebSocket) -> None:
    await ws.accept()
    service: FhirService = ws.app.state.service
    try:
        message = await asyncio.wait_for(ws.receive_text(), BIND_SECONDS)
    except (TimeoutError, WebSocketDisconnect, KeyError):
        await _close(ws, "error: expected 'bind-with-token <token>'")
        return
    ids = await channel.bind(service.storage, message[:300])
    if not ids:
        await _close(ws, "error: bind-with-token refused (unknown, used or expired token)")
        return
    base = service.base_url or str(ws.base_url).replace("ws", "http", 1).rstrip("/") + "/fhir"
    loop = asyncio.get_running_loop()
    tasks = {
        loop.create_task(_pump(ws, service, ids, base)),
        loop.create_task(_until_closed(ws)),
    }
    try:  # until the client goes (or sending fails)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pump(ws: WebSocket, service: FhirService, ids: list[str], base: str) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        async for note in channel.notifications(service, ids, base):
            await ws.send_text(note.decode())


async def _until_closed(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()


async def _close(ws: WebSocket, text: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(text)
        await ws.close(code=1008)
