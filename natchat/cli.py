"""The ``natchat`` command line. Each command builds a config and calls ``trio.run``; nothing more."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import trio
import typer

from .client import JoinConfig, run_client
from .console import OutputGone, print_err, print_out
from .identity import IdentityFileError, default_identity_path, load_or_create_identity, open_identity, server_label
from .net import EndpointError, resolve_udp
from .probe import ProbeClientConfig, ProgressBar, probe_mapping
from .proto.client import ClientConfig
from .proto.events import ServerEvent
from .proto.identity_events import OwnIdentity
from .proto.probe import Kind, ProbeConfig, ProbeFailed, Report
from .proto.server import RELAY_BYTES, RELAY_RATE
from .proto.wire import ID_PATTERN
from .server import ServerConfig, print_event, serve
from .terminal import can_edit

app = typer.Typer(
    help="Peer-to-peer chat that gets through NATs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def fail(message: str, status: int = 1) -> NoReturn:
    with contextlib.suppress(OutputGone):
        print_err(f"error: {message}")
    raise typer.Exit(status)


_SECRET = typer.Option(
    envvar="NATCHAT_SECRET",
    show_default=False,
    help="Pre-shared secret: only clients that know it may register (it is never sent). Prefer the "
    "environment variable: a command line is visible to other users.",
)
_RELAY_RATE = typer.Option(
    envvar="NATCHAT_RELAY_RATE", min=1, max=1e6, help="Datagrams per second each client may have relayed."
)
_RELAY_BYTES = typer.Option(
    envvar="NATCHAT_RELAY_BYTES", min=1200, max=1e9, help="Bytes per second each client may have relayed."
)


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
    # --- mapping probes (natchat/probe.py) ---
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
    # --- the midPeer relay ---
    midpeer: Annotated[
        bool,
        typer.Option(
            "--midpeer",
            envvar="NATCHAT_MIDPEER",
            help="Also be a midPeer: relay chat between clients that find no direct path (by client ID only, "
            "rate-limited). The server introduces peers for hole punching either way.",
        ),
    ] = False,
    relay_rate: Annotated[float, _RELAY_RATE] = RELAY_RATE,
    relay_bytes: Annotated[float, _RELAY_BYTES] = RELAY_BYTES,
    secret: Annotated[str | None, _SECRET] = None,
) -> None:
    """Run the rendezvous server: clients register, keep alive, and learn who is online."""
    config = ServerConfig(
        host=host,
        port=port,
        timeout=timeout,
        max_clients=max_clients,
        probe=probe,
        probe_port=probe_port,
        relay=midpeer,
        relay_rate=relay_rate,
        relay_bytes=relay_bytes,
        secret=_secret_bytes(secret),
    )
    what = "natchat server with midPeer relay" if midpeer else "natchat server"
    _run_server(config, what, print_event(verbose, json_output))


@app.command("midpeer")
def midpeer_command(
    host: Annotated[
        str, typer.Option(envvar="NATCHAT_HOST", help="Address to listen on ('::': IPv6 and IPv4).")
    ] = "::",
    port: Annotated[
        int, typer.Option(envvar="NATCHAT_MIDPEER_PORT", min=1, max=65535, help="UDP port to listen on.")
    ] = 10082,
    timeout: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_TIMEOUT", min=0.1, max=86400, help="Seconds of silence after which a client is forgotten."
        ),
    ] = 30.0,
    relay: Annotated[
        bool,
        typer.Option("--relay/--no-relay", envvar="NATCHAT_RELAY", help="Relay when no direct path exists."),
    ] = True,
    relay_rate: Annotated[float, _RELAY_RATE] = RELAY_RATE,
    relay_bytes: Annotated[float, _RELAY_BYTES] = RELAY_BYTES,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", envvar="NATCHAT_VERBOSE", help="Also print every dropped datagram.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", envvar="NATCHAT_JSON", help="One JSON object per event (docs/EVENTS.md).")
    ] = False,
    secret: Annotated[str | None, _SECRET] = None,
) -> None:
    """Run a standalone midPeer: introduces peers for hole punching and relays when no direct path exists.

    Put it where every peer can reach it (a public host, or a forwarded port behind a NAT) and start the
    clients with `natchat join --midpeer HOST:PORT`. It keeps no peer list: that is the server's.
    """
    config = ServerConfig(
        host=host,
        port=port,
        timeout=timeout,
        probe=False,
        relay=relay,
        lists=False,
        relay_rate=relay_rate,
        relay_bytes=relay_bytes,
        secret=_secret_bytes(secret),
    )
    _run_server(
        config, "natchat midPeer" + ("" if relay else " (introducer only, no relay)"), print_event(verbose, json_output)
    )


def _secret_bytes(secret: str | None) -> bytes | None:
    if secret is None:
        return None
    if not secret:
        fail("--secret: the secret is empty", 2)
    return secret.encode()


def _run_server(config: ServerConfig, what: str, emit: Callable[[ServerEvent], None]) -> None:
    async def main() -> str | None:
        problem = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
                bound = await nursery.start(serve, config, emit)
                print_err(f"{what} on UDP {bound}; clients disappear after {config.timeout:g} s")
        except* OutputGone:
            pass  # the terminal hung up or the log's reader left: stop, as SIGHUP would
        except* OSError as group:
            first = group.exceptions[0]
            host, port = config.host, config.port
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
    midpeer: Annotated[
        str | None,
        typer.Option(
            envvar="NATCHAT_MIDPEER",
            show_default="the server",
            help="A standalone midPeer (`natchat midpeer`), HOST[:PORT] (port 10082 if omitted), to introduce "
            "peers and relay when no direct path exists.",
        ),
    ] = None,
    direct_only: Annotated[
        bool,
        typer.Option(
            "--direct-only", envvar="NATCHAT_DIRECT_ONLY", help="Never relay; say when no direct path exists."
        ),
    ] = False,
    relay_only: Annotated[
        bool,
        typer.Option(
            "--relay-only", envvar="NATCHAT_RELAY_ONLY", help="Always relay through the midPeer; never punch."
        ),
    ] = False,
    relay_after: Annotated[
        float,
        typer.Option(
            envvar="NATCHAT_RELAY_AFTER",
            min=0.1,
            max=3600,
            help="Seconds without a direct path before messages go through the midPeer relay.",
        ),
    ] = 3.0,
    no_spray: Annotated[
        bool,
        typer.Option(
            "--no-spray",
            envvar="NATCHAT_NO_SPRAY",
            help="Take no part in birthday punching (no spray of probes, no fan-out of sockets) for networks "
            "where it looks like a scan; pairs with a hard NAT are then relayed.",
        ),
    ] = False,
    secret: Annotated[str | None, _SECRET] = None,
    identity_file: Annotated[str | None, _IDENTITY] = None,
    ephemeral: Annotated[bool, _EPHEMERAL] = False,
) -> None:
    """Join the chat. Commands: @show_list, @chat <id> <message>, @all <message>, @path <id>, @whois <id>,
    @trust <id>, @help, @exit."""
    if direct_only and relay_only:
        fail("--direct-only and --relay-only exclude each other", 2)
    if client_id is None:
        try:
            client_id = input("Enter ID : ").strip()
        except (EOFError, OSError):  # OSError: the terminal hung up
            fail("no ID given", 2)
    if not re.fullmatch(ID_PATTERN, client_id):
        fail(f"invalid ID {client_id!r}: use 1-32 characters of A-Z a-z 0-9 . _ -", 2)
    session = ClientConfig(
        keepalive=keepalive,
        deliver_within=deliver_within,
        register_within=register_within,
        path="direct" if direct_only else "relay" if relay_only else "auto",
        relay_after=relay_after,
        secret=_secret_bytes(secret),
        spray=not no_spray,
    )
    if identity_file is not None and not identity_file.strip() and not ephemeral:
        fail("--identity: the file name is empty", 2)
    try:
        label = server_label(server)  # what pins are kept under
    except EndpointError:
        label = ""  # (resolving it below says what is wrong, as it always did)
    try:
        identity = open_identity(identity_file=identity_file, ephemeral=ephemeral)
    except IdentityFileError as exc:
        fail(str(exc))
    # a person at a terminal gets the line editor; pipes, files, dumb terminals and --json get plain lines
    terminal = not json_output and can_edit(sys.stdin, sys.stdout)

    async def main() -> int:
        try:
            server_addr = await resolve_udp(server, 10080)
        except EndpointError as exc:
            fail(f"--server: {exc}", 2)
        midpeer_addr = None
        if midpeer is not None:
            try:
                midpeer_addr = await resolve_udp(midpeer, 10082)
            except EndpointError as exc:
                fail(f"--midpeer: {exc}", 2)
        config = JoinConfig(
            midpeer=midpeer_addr,
            client_id=client_id,
            server=server_addr,
            bind=bind,
            port=port,
            verbose=verbose,
            json=json_output,
            session=session,
            identity=identity,
            server_label=label,
        )
        try:
            return await run_client(config, terminal=terminal)
        except OSError as exc:
            hint = " (try --port 0 for any free port)" if port else ""
            fail(f"cannot use UDP port {port}: {exc.strerror}{hint}")

    raise typer.Exit(trio.run(main))


# --- natchat probe-mapping (natchat/probe.py, natchat/proto/probe.py, docs/PROBE.md) ---


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
    try:
        print_out(json.dumps(report.to_json()) if as_json else "\n".join(report.lines()))
    except OutputGone:
        fail("the report could not be written: standard output is closed")


# --- natchat id (natchat/identity.py, natchat/proto/identity.py, docs/PROTOCOL.md) ---

_IDENTITY = typer.Option(
    "--identity",
    envvar="NATCHAT_IDENTITY",
    show_default="$XDG_CONFIG_HOME/natchat/identity",
    help="Your long-term identity key (Ed25519, PEM, mode 0600); created on first use.",
)
_EPHEMERAL = typer.Option(
    "--ephemeral",
    envvar="NATCHAT_EPHEMERAL",
    help="Use a throwaway identity: read and write nothing, pin no peer (--identity is ignored).",
)
"""For ``join``: ``open_identity(identity_file=..., ephemeral=...)`` (natchat/identity.py)."""


@app.command("id")
def id_command(
    identity_file: Annotated[str | None, _IDENTITY] = None,
    as_json: Annotated[
        bool, typer.Option("--json", envvar="NATCHAT_JSON", help="Print one JSON object instead of text.")
    ] = False,
) -> None:
    """Print your identity's fingerprint and where its key is (made on first use).

    Peers see the same fingerprint with `@whois YOUR-ID`: compare it with them out of band (in person,
    on the phone) to know that nobody in between swapped your key.
    """
    if identity_file is not None and not identity_file.strip():
        fail("--identity: the file name is empty", 2)
    try:
        path = Path(identity_file) if identity_file is not None else default_identity_path()
        identity, created = load_or_create_identity(path, make_dir=identity_file is None)
    except IdentityFileError as exc:
        fail(str(exc))
    own = OwnIdentity.of(identity.public, os.path.abspath(path), created=created)
    try:
        print_out(json.dumps(own.as_dict()) if as_json else "\n".join(own.lines()))
    except OutputGone:
        fail("the fingerprint could not be written: standard output is closed")


def main() -> None:
    app()
