"""The ``natchat`` command line. Each command builds a config and calls ``trio.run``; nothing more."""

from __future__ import annotations

import re
import signal
import sys
from typing import Annotated, NoReturn

import trio
import typer

from .client import JoinConfig, run_client
from .net import EndpointError, resolve_udp
from .proto.client import ClientConfig
from .proto.wire import ID_PATTERN
from .server import ServerConfig, print_event, serve

app = typer.Typer(
    help="Peer-to-peer chat that gets through NATs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def fail(message: str, status: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(status)


@app.command("serve")
def serve_command(
    host: Annotated[
        str, typer.Option(envvar="NATCHAT_HOST", help="Address to listen on ('::' for IPv6 and IPv4).")
    ] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="NATCHAT_PORT", min=1, max=65535, help="UDP port to listen on.")] = 10080,
    timeout: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_TIMEOUT",
            min=0.1,
            max=86400,
            help="Seconds of silence after which a client has disappeared.",
        ),
    ] = 30.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", envvar="NATCHAT_VERBOSE", help="Also print every dropped datagram.")
    ] = False,
) -> None:
    """Run the rendezvous server: clients register, keep alive, and learn who is online."""
    config = ServerConfig(host=host, port=port, timeout=timeout)

    async def main() -> str | None:
        problem = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
                await nursery.start(serve, config, print_event(verbose))
        except* OSError as group:
            first = group.exceptions[0]
            problem = f"cannot listen on UDP {host}:{port}: {getattr(first, 'strerror', first)}"
        return problem

    if (problem := trio.run(main)) is not None:
        fail(problem)


async def _cancel_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for _ in signals:
            scope.cancel()


@app.command("join")
def join_command(
    client_id: Annotated[
        str | None,
        typer.Argument(
            envvar="NATCHAT_ID", show_default=False, help="Your ID (asked for when missing): 1-32 of A-Z a-z 0-9 . _ -"
        ),
    ] = None,
    server: Annotated[
        str, typer.Option(envvar="NATCHAT_SERVER", help="The rendezvous server, HOST[:PORT] (port 10080 if omitted).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="NATCHAT_CLIENT_PORT", min=0, max=65535, help="Local UDP port (0: any free port).")
    ] = 10081,
    bind: Annotated[
        str | None,
        typer.Option(envvar="NATCHAT_BIND", show_default=False, help="Local address to bind (default: all)."),
    ] = None,
    keepalive: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_KEEPALIVE",
            min=0.05,
            max=3600,
            help="Seconds between keepalives (at most a third of the server's timeout).",
        ),
    ] = 10.0,
    deliver_within: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_DELIVER_WITHIN",
            min=0.5,
            max=3600,
            help="Report a message undeliverable after this many seconds.",
        ),
    ] = 10.0,
    register_within: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_REGISTER_WITHIN",
            min=0.5,
            max=86400,
            help="Give up if the server does not answer within this many seconds.",
        ),
    ] = 10.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", envvar="NATCHAT_VERBOSE", help="Also print path changes.")
    ] = False,
) -> None:
    """Join the chat. Commands: @show_list, @chat <id> <message>, @exit."""
    if client_id is None:
        try:
            client_id = input("Enter ID : ").strip()
        except EOFError:
            fail("no ID given", 2)
    if not re.fullmatch(ID_PATTERN, client_id):
        fail(f"invalid ID {client_id!r}: use 1-32 characters of A-Z a-z 0-9 . _ -", 2)
    session = ClientConfig(keepalive=keepalive, deliver_within=deliver_within, register_within=register_within)

    async def main() -> int:
        try:
            server_addr = await resolve_udp(server, 10080)
        except EndpointError as exc:
            fail(f"--server: {exc}", 2)
        config = JoinConfig(
            client_id=client_id, server=server_addr, bind=bind, port=port, verbose=verbose, session=session
        )
        try:
            return await run_client(config)
        except OSError as exc:
            hint = " (try --port 0 for any free port)" if port else ""
            fail(f"cannot use UDP port {port}: {exc.strerror}{hint}")

    raise typer.Exit(trio.run(main))


def main() -> None:
    app()
