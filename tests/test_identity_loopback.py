"""Identities with the real CLI over loopback: client2 exits, an impostor registers ``client2`` with its own
identity, and client1, which pinned the real one, refuses to chat with it and says why.

Each process has its own ``XDG_CONFIG_HOME`` (``tests/procs.py``): its own identity and pins.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import trio

from .procs import Proc, ProcGroup
from .test_cli_loopback import Chat, show_list

FINGERPRINT = r"\d{5}(?: \d{5}){5}"


@pytest.fixture
def chat(procs: ProcGroup) -> Chat:
    return Chat(procs)


async def listed(client: Proc, peer: str) -> None:
    """Poll ``@show_list`` (a few times a second, at most 50 times) until ``peer`` is listed."""
    for _ in range(50):
        if peer in [cid for cid, _ in await show_list(client)]:
            return
        await trio.sleep(0.2)
    raise AssertionError(f"{peer} never listed by {client.name}\n{client.group.transcript()}")


def pinned(config_root: str | None, client: str) -> str:
    """The text of ``client``'s known_peers file ("" if there is none yet)."""
    path = pathlib.Path(config_root or "", client, "natchat", "known_peers")
    return path.read_text() if path.exists() else ""


def config_written(config_root: str | None, client: str) -> bool:
    return pathlib.Path(config_root or "", client).exists()


async def test_impostor_is_refused_and_whois_shows_the_change(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    client1, client2 = await chat.join(["client1", "client2"])
    server = f"127.0.0.1:{chat.port}"

    await client1.send("@chat client2 hello")
    await client2.expect_line("From client1 [hello]", within=10)
    await client1.send("@whois client2")
    first = await client1.expect_line(
        re.compile(rf"client2: identity ({FINGERPRINT}) \(new: first contact on {re.escape(server)}, pinned now\)"),
        within=10,
    )
    await client1.expect_line(re.compile(r"safety number with client2: \d{5}(?: \d{5}){11}"), within=5)
    await client2.send("@exit")
    assert await client2.wait(within=10) == 0
    for _ in range(100):  # saved in a thread soon after it was pinned, while client1 runs
        if " client2 " in pinned(procs.config_root, "client1"):
            break
        await trio.sleep(0.1)
    assert " client2 " in pinned(procs.config_root, "client1"), procs.transcript()

    impostor = await chat.start_client("client2", name="impostor")  # its own XDG_CONFIG_HOME: its own identity
    await impostor.expect_line(re.compile(r"registered; public address \S+"), "err", within=10)
    await listed(client1, "client2")

    await client1.send("@chat client2 is that you?")
    await client1.expect_line(
        re.compile(
            rf"warning: client2's identity on {re.escape(server)} changed: pinned {first[1]}, now ({FINGERPRINT}); "
            r"nothing is sent to or shown from client2\. If its owner confirms the new fingerprint "
            r"\(@whois client2\), type @trust client2"
        ),
        "err",
        within=10,
    )
    await client1.expect_line(re.compile(r"could not deliver to client2: client2's identity changed.*"), "err")
    await client1.send("@chat client2 hello again")
    await client1.expect_line(
        "error: client2's identity changed; nothing sent. Compare fingerprints (@whois client2), "
        "then @trust client2 to accept it",
        "err",
    )
    await client1.send("@whois client2")
    changed = await client1.expect_line(
        re.compile(
            rf"client2: identity ({FINGERPRINT}) \(CHANGED on {re.escape(server)}, blocked until @trust client2\)"
        )
    )
    await client1.expect_line(f"client2: pinned identity was {first[1]}")
    await client1.expect_line(re.compile(r"safety number with client2: \d{5}(?: \d{5}){11}"))
    assert changed[1] != first[1]
    await impostor.send("@chat client1 I am client2, honest")
    await impostor.send("@chat client1 really")
    start = client1.mark()
    await client1.send("@show_list")
    await client1.send("@end_of_list")
    await client1.expect_line("wrong instruction retype")
    listing = client1.lines()[start : client1.position() - 1]
    assert [line.split(" ")[0] for line in listing] == ["client1", "client2"], procs.transcript()
    assert listing[0] == f"client1 {chat.pub['client1']}"  # the assignment's line, for a peer as pinned
    assert re.fullmatch(r"client2 \S+:\d+ \[identity changed\]", listing[1]), procs.transcript()
    assert not [line for line in client1.lines() if line.startswith("From client2")], procs.transcript()
    assert not [line for line in impostor.lines() if line.startswith("From client1")], procs.transcript()

    before = [line for line in pinned(procs.config_root, "client1").splitlines() if " client2 " in line]
    assert len(before) == 1  # still the first identity: nothing was trusted yet

    await client1.send("@trust client2")
    await client1.expect_line(
        f"client2 on {server} is now pinned as {changed[1]}; messages to and from it flow again", within=5
    )
    await client1.send("@chat client2 welcome")
    await impostor.expect_line("From client1 [welcome]", within=10)
    await client1.send("@exit")
    assert await client1.wait(within=10) == 0
    after = [line for line in pinned(procs.config_root, "client1").splitlines() if " client2 " in line]
    assert len(after) == 1 and after != before  # the new identity is pinned now


async def test_ephemeral_writes_nothing_and_chat_is_unchanged(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    client1 = (await chat.join(["client1"], "--ephemeral"))[0]
    (client2,) = await chat.join(["client2"])
    await client1.send("@chat client2 hi")
    await client2.expect_line("From client1 [hi]", within=10)
    await client2.send("@chat client1 hello")
    await client1.expect_line("From client2 [hello]", within=10)
    await client1.send("@whois client2")
    await client1.expect_line(re.compile(rf"client2: identity {FINGERPRINT} \(not pinned \(--ephemeral\)\)"))
    for proc in (client1, client2):
        await proc.send("@exit")
        assert await proc.wait(within=10) == 0
    assert not config_written(procs.config_root, "client1")  # nothing read or written
    assert " client1 " in pinned(procs.config_root, "client2")  # the other side pins as usual
    assert not [line for line in client1.lines("err") + client2.lines("err") if "warning" in line]


async def test_json_says_the_change_as_one_object_and_whois_as_another(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    client1 = await chat.start_client("client1", "--json")
    await client1.expect_line(re.compile(r'\{"event": "registered", "id": "client1".*'), within=10)
    (client2,) = await chat.join(["client2"])
    await client1.send("@chat client2 hello")
    await client2.expect_line("From client1 [hello]", within=10)
    await client2.send("@exit")
    assert await client2.wait(within=10) == 0
    impostor = await chat.start_client("client2", name="impostor")
    await impostor.expect_line(re.compile(r"registered; public address \S+"), "err", within=10)

    def events(kind: str, code: str | None = None) -> list[dict[str, object]]:
        found = [json.loads(line) for line in client1.lines() if line.startswith("{")]
        return [e for e in found if e.get("event") == kind and (code is None or e.get("code") == code)]

    for _ in range(50):  # until client1's list has the newcomer and its details are judged
        if events("warning", "identity_changed"):
            break
        await client1.send("@chat client2 is that you?")
        await trio.sleep(0.2)
    (warning,) = events("warning", "identity_changed")  # said once, however often it was asked
    assert warning["peer"] == "client2" and warning["pinned"] != warning["seen"]
    assert re.fullmatch(FINGERPRINT, str(warning["pinned"])) and re.fullmatch(FINGERPRINT, str(warning["seen"]))
    await client1.send("@whois client2")
    for _ in range(50):
        if events("whois"):
            break
        await trio.sleep(0.1)
    (whois,) = events("whois")
    assert whois["status"] == "changed" and whois["pinned"] == warning["pinned"]
    assert whois["fingerprint"] == warning["seen"]
    assert all(line.startswith("{") for line in client1.lines()), "--json: one object a line, nothing else"
    await client1.send("@exit")
    assert await client1.wait(within=10) == 0
