"""The ``natchat`` command line. Each command builds a config and calls ``trio.run``; nothing more."""

from __future__ import annotations

import json
import re
import signal
import sys
from typing import Annotated, NoReturn

import trio
import typer

from .client import JoinConfig, run_client
from .net import EndpointError, resolve_udp
from .probe import ProbeClientConfig, ProgressBar, probe_mapping
from .proto.client import ClientConfig
from .proto.probe import Kind, ProbeConfig, ProbeFailed, Report
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
        str,
        typer.Option(
            envvar="NATCHAT_HOST",
            help="Address to listen on. '::' takes IPv6 and IPv4 (IPv4 only if the machine has no IPv6); "
            "'0.0.0.0' IPv4 only.",
        ),
    ] = "::",
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
    max_clients: Annotated[
        int | None,
        typer.Option(
            envvar="NATCHAT_MAX_CLIENTS",
            min=1,
            show_default="no limit",
            help="Refuse registrations beyond this many clients.",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            envvar="NATCHAT_JSON",
            help="One JSON object per event instead of the human lines (docs/EVENTS.md).",
        ),
    ] = False,
    # --- issue 5: mapping probes (natchat/probe.py) ---
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            envvar="NATCHAT_PROBE",
            help="Answer `natchat probe-mapping` (needs a second UDP port). STUN Binding is answered either way.",
        ),
    ] = True,
    probe_port: Annotated[
        int | None,
        typer.Option(
            envvar="NATCHAT_PROBE_PORT",
            min=0,
            max=65535,
            show_default="PORT - 1",
            help="Second UDP port for the probes' NAT classification (0: any free port).",
        ),
    ] = None,
) -> None:
    """Run the rendezvous server: clients register, keep alive, and learn who is online."""
    config = ServerConfig(
        host=host, port=port, timeout=timeout, max_clients=max_clients, probe=probe, probe_port=probe_port
    )

    async def main() -> str | None:
        problem = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
                bound = await nursery.start(serve, config, print_event(verbose, json_output))
                print(
                    f"natchat server on UDP {bound}; clients disappear after {timeout:g} s", file=sys.stderr, flush=True
                )
        except* OSError as group:
            first = group.exceptions[0]
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            problem = f"cannot listen on UDP {where}: {getattr(first, 'strerror', first)}"
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
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            envvar="NATCHAT_JSON",
            help="One JSON object per event on standard output instead of the human lines (docs/EVENTS.md).",
        ),
    ] = False,
) -> None:
    """Join the chat. Commands: @show_list, @chat <id> <message>, @all <message>, @help, @exit."""
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
            client_id=client_id,
            server=server_addr,
            bind=bind,
            port=port,
            verbose=verbose,
            json=json_output,
            session=session,
        )
        try:
            return await run_client(config)
        except OSError as exc:
            hint = " (try --port 0 for any free port)" if port else ""
            fail(f"cannot use UDP port {port}: {exc.strerror}{hint}")

    raise typer.Exit(trio.run(main))


# --- issue 5: natchat probe-mapping (natchat/probe.py, natchat/proto/probe.py, docs/PROBE.md) ---


@app.command("probe-mapping")
def probe_mapping_command(
    server: Annotated[
        str,
        typer.Option(
            envvar="NATCHAT_SERVER", help="A natchat server, HOST[:PORT] (port 10080 if omitted), that answers probes."
        ),
    ] = "127.0.0.1",
    max_idle: Annotated[
        float,
        typer.Option(
            "--max",
            envvar="NATCHAT_PROBE_MAX",
            min=0.1,
            max=3600,
            help="Longest idle time to test, in seconds; a mapping that survives it is 'longer than' it.",
        ),
    ] = 300.0,
    resolution: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_PROBE_RESOLUTION",
            min=0.05,
            max=3600,
            help="Seconds between the idle times tested: the width of the answer's bracket.",
        ),
    ] = 1.0,
    kinds: Annotated[
        list[Kind] | None,
        typer.Option(
            "--kind",
            envvar="NATCHAT_PROBE_KINDS",
            show_default="all three",
            help="Which mappings to measure (repeat the option): after one outbound datagram (outbound), after "
            "one request and its answer (reply), after an exchange lasting over 2 s (stream).",
        ),
    ] = None,
    bind: Annotated[
        str | None,
        typer.Option(envvar="NATCHAT_BIND", show_default=False, help="Local address to bind (default: all)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", envvar="NATCHAT_JSON", help="Print one JSON object instead of text.")
    ] = False,
) -> None:
    """Measure how long the NAT in front of you keeps an idle UDP mapping, and classify it (RFC 4787).

    Takes about as long as the longest lifetime found (up to --max seconds): every idle time is tested at
    once, each on a fresh mapping. Progress is shown on a terminal.
    """
    try:
        config = ProbeConfig(kinds=tuple(dict.fromkeys(kinds or list(Kind))), max_idle=max_idle, resolution=resolution)
    except ValueError as exc:
        fail(str(exc), 2)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None

    async def main() -> Report:
        try:
            server_addr = await resolve_udp(server, 10080)
        except EndpointError as exc:
            fail(f"--server: {exc}", 2)
        try:
            return await probe_mapping(
                ProbeClientConfig(server=server_addr, bind=bind, probe=config),
                on_progress=bar.update if bar else None,
            )
        except ProbeFailed as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot use UDP sockets toward {server_addr}: {exc.strerror or exc}")

    try:
        report = trio.run(main)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
    else:
        print("\n".join(report.lines()), flush=True)


def main() -> None:
    app()
