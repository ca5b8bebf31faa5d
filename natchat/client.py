"""``natchat join``: the Trio shell around :class:`~natchat.proto.client.ClientSession`.

One nursery holds a receiver task per socket, the timer task, the command reader and the signal
watcher. On a terminal the commands come through the line editor of :mod:`natchat.terminal` (which
also prints everything above the line being typed); elsewhere they are plain lines. ``@exit``, end
of input, Ctrl-C, SIGTERM and SIGHUP all do the same: deregister, then cancel the nursery. The shell
moves bytes and prints; every decision is the session's.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import trio

from .console import OutputGone, print_err, print_out, read_stdin_line
from .identity import IdentityFileError, LocalIdentity
from .net import bind_udp, family_of, local_ip_toward, to_addr
from .proto.client import (
    MAIN,
    SHOW_RETRY,
    SHOW_TRIES,
    Blocked,
    ClientConfig,
    ClientSession,
    MessageTooLong,
    NoPeers,
    UnknownPeer,
)
from .proto.events import (
    ChatReceived,
    ClientEvent,
    Joined,
    Json,
    Left,
    ListChanged,
    ListShown,
    Notice,
    PathReport,
    PathUp,
    Refused,
)
from .proto.identity_events import Trusted, WhoisReport
from .proto.wire import Addr
from .shell import SocketsShell
from .terminal import open_terminal

ReadLine = Callable[[], Awaitable[str]]
"""Returns the next line of input with its newline; an empty string at end of input."""

Write = Callable[[str], None]

Peers = Callable[[Iterable[str]], None]
"""Told the peer list (IDs) whenever it may have changed (the terminal completes them)."""

HELP = (  # the one table of commands: @help prints it, the terminal completes its first words
    ("@show_list", "list the registered clients: ID and public address, in registration order"),
    ("@chat <id> <message>", "send a message directly to one client"),
    ("@all <message>", "send a message directly to every other client (they see 'From <you> to all [...]')"),
    ("@path <id>", "how messages to a client go (lan, direct or relay) and the round-trip time"),
    ("@whois <id>", "a client's identity fingerprint, your safety number, and whether it is as pinned"),
    ("@trust <id>", "accept a client's changed identity (compare fingerprints first: @whois)"),
    ("@help", "this list"),
    ("@exit", "deregister and quit (end of input and Ctrl-C do the same)"),
)


@dataclass(frozen=True, slots=True)
class JoinConfig:
    client_id: str
    server: Addr
    bind: str | None = None
    """Local address to bind; None: all addresses of the server's family."""
    port: int = 10081
    verbose: bool = False
    json: bool = False
    """One JSON object per event on standard output instead of the human lines (docs/EVENTS.md)."""
    session: ClientConfig = field(default_factory=ClientConfig)
    midpeer: Addr | None = None
    """A standalone midPeer to introduce and relay (None: the server does)."""
    identity: LocalIdentity | None = None
    """This run's identity and pins (``natchat/identity.py``); None: peers' identities are not checked."""
    server_label: str = ""
    """The server as the user named it, ``host:port``: what pins are kept under."""

    @property
    def bind_host(self) -> str:
        if self.bind is not None:
            return self.bind
        return "::" if family_of(self.server.host) == socket.AF_INET6 else "0.0.0.0"


class _Shell:
    """The chat client's I/O: sockets through a :class:`SocketsShell`, commands in, events out."""

    def __init__(
        self,
        config: JoinConfig,
        session: ClientSession,
        nursery: trio.Nursery,
        out: Write,
        err: Write,
        peers: Peers | None = None,
    ) -> None:
        self.config = config
        self.peers = peers
        self.session = session
        self.nursery = nursery
        self.out = self._unless_gone(out)
        self.err = self._unless_gone(err)
        self.sockets = SocketsShell(
            session, nursery, bind_host=config.bind_host, local_ip=session.priv.host, after_flush=self.show_events
        )
        self.registered = trio.Event()
        self.listing: trio.Event | None = None
        """Set once the ``@show_list`` being answered is shown."""
        self.exit_code = 0
        self.output_gone = False
        self.saving = False
        self.save_failed = False

    def _unless_gone(self, write: Write) -> Write:
        def guarded(text: str) -> None:
            try:
                write(text)
            except OutputGone:  # the terminal hung up or the pipe's reader left: leave as at end of input
                if not self.output_gone:
                    self.output_gone = True
                    self.nursery.start_soon(self.leave)

        return guarded

    async def flush(self) -> None:
        await self.sockets.flush()

    def show_events(self) -> None:
        while (event := self.session.next_event()) is not None:
            self.show(event)
        self.pins_changed()

    def emit(self, obj: Json, human: str | list[str] | None, *, to_err: bool = False) -> None:
        """Show one event: its JSON object with ``--json``, else its human line or lines (if it has any;
        each line printed as one, so that the terminal shows them as lines)."""
        if self.config.json:
            self.out(json.dumps(obj, ensure_ascii=False))
        elif human is not None:
            for line in [human] if isinstance(human, str) else human:
                (self.err if to_err else self.out)(line)

    def error(self, code: str, message: str) -> None:
        human = message if code == "usage" else f"error: {message}"
        self.emit({"event": "error", "code": code, "message": message}, human, to_err=True)

    def show(self, event: ClientEvent) -> None:
        match event:
            case ListChanged():
                self.emit(event.as_dict(), None)  # no human line: the list is shown when asked
                if self.peers is not None:
                    self.peers(self.session.peers())
            case ChatReceived() | PathReport():
                self.emit(event.as_dict(), event.line())
            case ListShown():
                if self.config.json:
                    self.emit(event.as_dict(), None)
                else:
                    for line in event.lines():
                        self.out(line)
                if self.listing is not None:
                    self.listing.set()
            case Notice(code="list_unavailable"):
                self.emit(event.as_dict(), event.line(), to_err=True)
                if self.listing is not None:
                    self.listing.set()
            case Left():
                self.emit(event.as_dict(), None)
                self.nursery.cancel_scope.cancel()
            case Refused():
                self.emit(event.as_dict(), event.line(), to_err=True)
                self.exit_code = 1
                self.nursery.cancel_scope.cancel()
            case WhoisReport():
                self.emit(event.as_dict(), event.lines())
            case Trusted():
                self.emit(event.as_dict(), event.line())
            case PathUp() if not self.config.verbose:
                pass
            case Joined():
                self.emit(event.as_dict(), event.line(), to_err=True)
                self.registered.set()
                if self.peers is not None:
                    self.peers(self.session.peers())
            case _:
                self.emit(event.as_dict(), event.line(), to_err=True)

    async def commands(self, read_line: ReadLine) -> None:
        await self.registered.wait()
        while True:
            line = await read_line()
            if not line:  # end of input: leave as @exit would
                break
            if not self.command(line.strip()):
                break
            if self.listing is not None:  # @show_list: its lines come before the next command's
                with trio.move_on_after(SHOW_TRIES * SHOW_RETRY + 1):
                    await self.listing.wait()
                self.listing = None
        await self.leave()

    def command(self, line: str) -> bool:
        """Run one command line; False means leave."""
        now = trio.current_time()
        word, _, rest = line.partition(" ")
        if not line:
            return True
        if word == "@show_list" and not rest.strip():
            self.listing = trio.Event()  # set when the answer is shown (the addresses are looked up)
            self.send(lambda: self.session.show_list(now), None)
        elif word == "@exit" and not rest.strip():
            return False
        elif word == "@help" and not rest.strip():
            if self.config.json:
                self.emit({"event": "help", "commands": dict(HELP)}, None)
            else:
                for usage, what in HELP:
                    self.out(f"{usage:<22}  {what}")
        elif word == "@chat":
            peer, _, text = rest.strip().partition(" ")
            text = text.strip()
            if not peer or not text:
                self.error("usage", "usage: @chat <client id> <message>")
            elif peer == self.session.id:
                self.error("to_self", f"{peer} is you; chat with another client")
            else:
                self.send(lambda: self.session.chat(peer, text, now), peer)
        elif word == "@path":
            peer = rest.strip()
            if not peer or " " in peer:
                self.error("usage", "usage: @path <client id>")
            elif peer == self.session.id:
                self.error("to_self", f"{peer} is you; ask about another client")
            else:
                self.send(lambda: self.session.measure_path(peer, now), peer)
        elif word in ("@whois", "@trust"):
            peer = rest.strip()
            if not peer or " " in peer:
                self.error("usage", f"usage: {word} <client id>")
            elif peer == self.session.id:
                self.error("to_self", f"{peer} is you; natchat id prints your fingerprint")
            else:
                call = self.session.whois if word == "@whois" else self.session.trust
                self.send(lambda: call(peer, now), peer)
        elif word == "@all":
            if not (text := rest.strip()):
                self.error("usage", "usage: @all <message>")
            else:
                self.send(lambda: self.session.chat_all(text, now), None)
        else:
            self.emit(
                {"event": "error", "code": "wrong_instruction", "message": "wrong instruction retype"},
                "wrong instruction retype",
            )
        return True

    def send(self, queue: Callable[[], object], peer: str | None) -> None:
        """Queue a message with ``queue()`` (a session call), reporting what the session refused."""
        try:
            queue()
        except UnknownPeer:
            self.error("unknown_peer", f"{peer} is not in the list (see @show_list)")
        except Blocked as exc:
            self.emit(exc.event.as_dict(), exc.event.line(), to_err=True)
        except NoPeers:
            self.error("no_peers", "nobody else is online")
        except MessageTooLong as exc:
            limit = self.session.max_text_bytes  # sealed, and wrapped for the relay if one may carry it
            self.error("too_long", f"message too long ({exc}); at most {limit} bytes (UTF-8) fit in one datagram")
        else:
            self.nursery.start_soon(self.flush)

    def pins_changed(self) -> None:
        """After each flush: pins that changed are saved in a thread (one save at a time)."""
        me = self.config.identity
        if me is None or me.pins is None or self.nursery.cancel_scope.cancel_called:
            return  # (at exit, run_client saves what is left)
        if me.pins.dirty and not self.saving and not self.save_failed:
            self.saving = True
            self.nursery.start_soon(self.save_pins)

    async def save_pins(self) -> None:
        me = self.config.identity
        try:
            if me is not None and me.pins is not None and me.known_peers is not None and me.pins.dirty:
                snapshot = me.pins.snapshot()  # the thread writes a copy; the session goes on pinning
                await trio.to_thread.run_sync(me.known_peers.save, snapshot)
                me.pins.saved(snapshot)
        except (IdentityFileError, OSError) as exc:
            if not self.save_failed:  # said once; tried again only at exit
                self.save_failed = True
                self.error(
                    "pins_not_saved", str(exc) if isinstance(exc, IdentityFileError) else f"pins not saved: {exc}"
                )
        finally:
            self.saving = False

    async def leave(self) -> None:
        self.session.close(trio.current_time())
        await self.flush()

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for _ in signals:
                await self.leave()


async def run_client(
    config: JoinConfig,
    read_line: ReadLine = read_stdin_line,
    out: Write = print_out,
    err: Write = print_err,
    *,
    handle_signals: bool = True,
    terminal: bool = False,
) -> int:
    """Join, run commands until ``@exit``/end of input/a signal, deregister; returns the exit status.

    ``terminal``: read commands with the line editor on standard input and output (both a terminal)
    instead of ``read_line``, and print above its line instead of with ``out`` and ``err``.
    """
    main = await bind_udp(config.bind_host, config.port)
    with main:
        bound = to_addr(main.getsockname())
        local_ip = bound.host if bound.host not in ("0.0.0.0", "::") else local_ip_toward(config.server)
        me, label = config.identity, config.server_label or str(config.server)
        session = ClientSession(
            config.client_id,
            config.server,
            Addr(local_ip, bound.port),
            config=config.session,
            midpeer=config.midpeer,
            identity=None if me is None else me.identity,
            issued=0 if me is None else me.issued,
            peer_ids=None if me is None else me.peers(label),
        )
        async with contextlib.AsyncExitStack() as stack:
            peers: Peers | None = None
            if terminal:  # the editor outlives the nursery: what the client prints last goes through it
                editor = await stack.enter_async_context(open_terminal(config.client_id, HELP))
                read_line, out, err, peers = editor.read_line, editor.out, editor.err, editor.set_peers
            async with trio.open_nursery() as nursery:
                shell = _Shell(config, session, nursery, out, err, peers)
                await shell.sockets.add_socket(MAIN, main)
                nursery.start_soon(shell.commands, read_line)
                if handle_signals:
                    nursery.start_soon(shell.watch_signals)
                session.start(trio.current_time())
                await shell.sockets.start()
            shell.sockets.close_all()
            await shell.save_pins()  # at exit, whatever is left
        return shell.exit_code
