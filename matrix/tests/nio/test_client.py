"""Matrix clients on an OpenGuild hub, through matrix-nio (PyPI), against a real `openguild serve`.

The Rust test `server/tests/it/matrix.rs` starts the hub and runs this suite with
OPENGUILD_URL set. What a hub serves so far is listed in docs/MATRIX.md.
"""
import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import nio
import pytest

URL = os.environ["OPENGUILD_URL"]
SERVER = os.environ.get("OPENGUILD_SERVER", "hub.test")


def graphql(query, variables=None, token=None):
    req = urllib.request.Request(
        URL + "/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"content-type": "application/json", **({"authorization": "Bearer " + token} if token else {})},
    )
    with urllib.request.urlopen(req) as r:
        out = json.load(r)
    assert "errors" not in out, out
    return out["data"]


def graphql_refused(query, variables, token):
    """A GraphQL call that must be refused: its first error's code and message."""
    req = urllib.request.Request(
        URL + "/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer " + token},
    )
    with urllib.request.urlopen(req) as r:
        out = json.load(r)
    assert out.get("errors"), out
    return out["errors"][0]["extensions"]["code"], out["errors"][0]["message"]


REGISTER = 'mutation($h: String!) { register(handle: $h, password: "correct horse") { token } }'
POST = 'mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }'


def club(owner, member, name, channel):
    """`owner` and `member` registered (password "correct horse"), `owner`'s guild `name` with a
    text channel `channel`, `member` in it by invite: their tokens and ids."""
    token = graphql(REGISTER, {"h": owner})["register"]["token"]
    other = graphql(REGISTER, {"h": member})["register"]["token"]
    g = graphql('mutation($n: String!) { createGuild(input: {name: $n}) { id } }', {"n": name}, token)["createGuild"]["id"]
    c = graphql(
        'mutation($g: ID!, $n: String!) { createChannel(input: {guildId: $g, name: $n, kind: TEXT}) { id } }',
        {"g": g, "n": channel},
        token,
    )["createChannel"]["id"]
    code = graphql('mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }', {"g": g}, token)
    graphql('mutation($c: String!) { joinGuild(code: $c) { id } }', {"c": code["createInvite"]["code"]}, other)
    return {"guild": g, "channel": c, owner: token, member: other}


@pytest.fixture(scope="module")
def guild():
    """ann's guild with a text channel, bob in it: their ids."""
    return club("ann", "bob", "Book Club", "chat")


def run(coro):
    return asyncio.run(coro)


def test_discovery_and_password_login(guild):
    async def go():
        client = nio.AsyncClient(URL, f"@ann:{SERVER}")
        info = await client.discovery_info()
        assert isinstance(info, nio.DiscoveryInfoResponse), info
        assert info.homeserver_url.rstrip("/") == URL.rstrip("/")
        flows = await client.login_info()
        assert "m.login.password" in flows.flows
        wrong = await client.login("not the password")
        assert isinstance(wrong, nio.LoginError) and wrong.status_code == "M_FORBIDDEN", wrong
        login = await client.login("correct horse")
        assert isinstance(login, nio.LoginResponse), login
        assert login.user_id == f"@ann:{SERVER}" and login.device_id
        me = await client.whoami()
        assert isinstance(me, nio.WhoamiResponse), me
        assert me.user_id == f"@ann:{SERVER}" and me.device_id == login.device_id
        await client.close()

    run(go())


def test_joined_rooms_are_the_guilds_space_and_its_channels(guild):
    async def go():
        client = nio.AsyncClient(URL, "ann")
        assert isinstance(await client.login("correct horse"), nio.LoginResponse)
        joined = await client.joined_rooms()
        assert isinstance(joined, nio.JoinedRoomsResponse), joined
        assert f"!{guild['guild']}:{SERVER}" in joined.rooms
        assert f"!{guild['channel']}:{SERVER}" in joined.rooms
        out = await client.logout()
        assert isinstance(out, nio.LogoutResponse), out
        # The token is gone: whoami is refused.
        again = await client.whoami()
        assert isinstance(again, nio.WhoamiError) and again.status_code == "M_UNKNOWN_TOKEN", again
        await client.close()

    run(go())


def test_initial_sync_shows_the_guild_as_a_space_with_its_rooms(guild):
    space, room = f"!{guild['guild']}:{SERVER}", f"!{guild['channel']}:{SERVER}"

    async def go():
        client = nio.AsyncClient(URL, "ann")
        assert isinstance(await client.login("correct horse"), nio.LoginResponse)
        sync = await client.sync(timeout=0, full_state=True)
        assert isinstance(sync, nio.SyncResponse), sync
        assert sync.next_batch
        state = {r: [e.source for e in sync.rooms.join[r].state] for r in (space, room)}
        create = next(e for e in state[space] if e["type"] == "m.room.create")
        assert create["content"]["type"] == "m.space"
        children = [e["state_key"] for e in state[space] if e["type"] == "m.space.child"]
        assert room in children
        name = next(e for e in state[room] if e["type"] == "m.room.name")
        assert name["content"]["name"] == "chat"
        parent = next(e for e in state[room] if e["type"] == "m.space.parent")
        assert parent["state_key"] == space
        members = {e["state_key"] for e in state[room] if e["type"] == "m.room.member"}
        assert {f"@ann:{SERVER}", f"@bob:{SERVER}"} <= members
        # nio's own view of the rooms agrees.
        assert client.rooms[room].display_name == "chat"
        await client.close()

    run(go())


def test_a_message_sent_by_one_client_reaches_another_within_its_long_poll(guild):
    room = f"!{guild['channel']}:{SERVER}"

    async def go():
        ann = nio.AsyncClient(URL, "ann")
        bob = nio.AsyncClient(URL, "bob")
        assert isinstance(await ann.login("correct horse"), nio.LoginResponse)
        assert isinstance(await bob.login("correct horse"), nio.LoginResponse)
        first = await bob.sync(timeout=0, full_state=True)
        assert isinstance(first, nio.SyncResponse), first
        await ann.sync(timeout=0, full_state=True)
        waiting = asyncio.create_task(bob.sync(timeout=10_000, since=first.next_batch))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "an incremental sync with nothing new waits"
        content = {"msgtype": "m.text", "body": "hello from nio"}
        sent = await ann.room_send(room, "m.room.message", content, tx_id="txn-1")
        assert isinstance(sent, nio.RoomSendResponse), sent
        again = await ann.room_send(room, "m.room.message", content, tx_id="txn-1")
        assert again.event_id == sent.event_id, "a retried transaction is the same message"
        assert sent.event_id.startswith("$") and not sent.event_id.startswith("$$"), sent.event_id
        got = await asyncio.wait_for(waiting, 15)
        assert isinstance(got, nio.SyncResponse), got
        events = got.rooms.join[room].timeline.events
        bodies = [e.source["content"].get("body") for e in events]
        assert bodies == ["hello from nio"], bodies
        assert events[0].event_id == sent.event_id and events[0].sender == f"@ann:{SERVER}"
        await ann.close()
        await bob.close()

    run(go())
    # The same message, through GraphQL.
    messages = graphql(
        "query($c: ID!) { channel(id: $c) { messages(last: 5) { nodes { id body author { id } } } } }",
        {"c": guild["channel"]},
        guild["bob"],
    )["channel"]["messages"]["nodes"]
    assert [m["body"] for m in messages] == ["hello from nio"]


def test_messages_page_backwards_newest_first(guild):
    room = f"!{guild['channel']}:{SERVER}"

    async def go():
        ann = nio.AsyncClient(URL, "ann")
        assert isinstance(await ann.login("correct horse"), nio.LoginResponse)
        for n in range(3):
            sent = await ann.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"page {n}"})
            assert isinstance(sent, nio.RoomSendResponse), sent
        now = await ann.sync(timeout=0, full_state=True)
        first = await ann.room_messages(room, start=now.next_batch, limit=2)
        assert isinstance(first, nio.RoomMessagesResponse), first
        assert [e.body for e in first.chunk] == ["page 2", "page 1"]
        second = await ann.room_messages(room, start=first.end, limit=2)
        assert [e.body for e in second.chunk] == ["page 0", "hello from nio"]
        forward = await ann.room_messages(room, start=second.end, limit=10, direction=nio.MessageDirection.front)
        # A sync's filter sets how much of a room's timeline comes: inline, or by a filter id.
        short = await ann.sync(timeout=0, full_state=True, sync_filter={"room": {"timeline": {"limit": 2}}})
        assert [e.body for e in short.rooms.join[room].timeline.events] == ["page 1", "page 2"]
        assert short.rooms.join[room].timeline.limited
        made = await ann.upload_filter(room={"timeline": {"limit": 1}})
        assert isinstance(made, nio.UploadFilterResponse), made
        one = await ann.sync(timeout=0, full_state=True, sync_filter=made.filter_id)
        assert [e.body for e in one.rooms.join[room].timeline.events] == ["page 2"]
        # A token lies between messages: forwards from where the backward pages stopped.
        assert [e.body for e in forward.chunk] == ["hello from nio", "page 0", "page 1", "page 2"]
        await ann.close()

    run(go())


def test_edits_reactions_a_moderators_redaction_and_a_kick_reach_the_other_client(guild):
    space, room = f"!{guild['guild']}:{SERVER}", f"!{guild['channel']}:{SERVER}"

    async def go():
        ann = nio.AsyncClient(URL, "ann")
        bob = nio.AsyncClient(URL, "bob")
        assert isinstance(await ann.login("correct horse"), nio.LoginResponse)
        assert isinstance(await bob.login("correct horse"), nio.LoginResponse)
        await ann.sync(timeout=0, full_state=True)
        start = await bob.sync(timeout=0, full_state=True)
        sent = await bob.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "typo mesage"})
        assert isinstance(sent, nio.RoomSendResponse), sent
        edit = {
            "msgtype": "m.text",
            "body": "* typo message",
            "m.new_content": {"msgtype": "m.text", "body": "typo message"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": sent.event_id},
        }
        assert isinstance(await bob.room_send(room, "m.room.message", edit), nio.RoomSendResponse)
        reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": sent.event_id, "key": "👍"}}
        assert isinstance(await ann.room_send(room, "m.reaction", reaction), nio.RoomSendResponse)
        news = await bob.sync(timeout=5_000, since=start.next_batch)
        events = [e.source for e in news.rooms.join[room].timeline.events]
        kinds = [(e["type"], e["content"].get("m.relates_to", {}).get("rel_type")) for e in events]
        assert kinds == [("m.room.message", None), ("m.room.message", "m.replace"), ("m.reaction", "m.annotation")], kinds
        assert events[1]["content"]["m.new_content"]["body"] == "typo message"
        assert events[2]["content"]["m.relates_to"]["key"] == "👍" and events[2]["sender"] == f"@ann:{SERVER}"

        # ann (the owner) may delete bob's words; bob may not delete hers.
        by_mod = await ann.room_redact(room, sent.event_id, reason="spam")
        assert isinstance(by_mod, nio.RoomRedactResponse), by_mod
        again = await ann.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "moderated"})
        denied = await bob.room_redact(room, again.event_id)
        assert isinstance(denied, nio.RoomRedactError) and denied.status_code == "M_FORBIDDEN", denied
        news = await bob.sync(timeout=5_000, since=news.next_batch)
        redaction = news.rooms.join[room].timeline.events[0].source
        assert redaction["type"] == "m.room.redaction" and redaction["redacts"] == sent.event_id, redaction
        assert redaction["sender"] == f"@ann:{SERVER}" and redaction["content"]["reason"] == "spam"

        # A kick: the guild's space and rooms leave bob's sync.
        before_kick = news.next_batch
        kicked = await ann.room_kick(room, f"@bob:{SERVER}", reason="bye")
        assert isinstance(kicked, nio.RoomKickResponse), kicked
        gone = await bob.sync(timeout=5_000, since=before_kick)
        assert isinstance(gone, nio.SyncResponse), gone
        assert room in gone.rooms.leave and space in gone.rooms.leave, gone.rooms.leave
        joined = await bob.joined_rooms()
        assert room not in joined.rooms
        await ann.close()
        await bob.close()

    run(go())
    deleted = graphql(
        "query($c: ID!) { channel(id: $c) { messages(last: 10) { nodes { body deleted author { id } } } } }",
        {"c": guild["channel"]},
        guild["ann"],
    )["channel"]["messages"]["nodes"]
    assert any(m["deleted"] and m["author"]["id"] == f"@bob:{SERVER}" for m in deleted), deleted


def test_the_same_rules_hold_as_on_graphql_and_state_shows_who_may_do_what():
    ids = club("cat", "dan", "Slow Club", "slow")
    g, c, cat = ids["guild"], ids["channel"], ids["cat"]
    graphql('mutation($c: ID!) { setSlowMode(channelId: $c, seconds: 60) { id } }', {"c": c}, cat)
    room, space = f"!{c}:{SERVER}", f"!{g}:{SERVER}"

    async def go():
        client = nio.AsyncClient(URL, "dan")
        assert isinstance(await client.login("correct horse"), nio.LoginResponse)
        first = await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "one"})
        assert isinstance(first, nio.RoomSendResponse), first
        # nio waits out a 429 by itself: the second post is sent over plain HTTP to see it.
        req = urllib.request.Request(
            f"{URL}/_matrix/client/v3/rooms/{room}/send/m.room.message/raw-1",
            data=json.dumps({"msgtype": "m.text", "body": "two"}).encode(),
            headers={"authorization": "Bearer " + client.access_token, "content-type": "application/json"},
            method="PUT",
        )
        try:
            urllib.request.urlopen(req)
            raise AssertionError("slow mode let a second post through")
        except urllib.error.HTTPError as e:
            body = json.load(e)
            assert e.code == 429 and body["errcode"] == "M_LIMIT_EXCEEDED", body
            assert 0 < body["retry_after_ms"] <= 60_000, body

        state = await client.room_get_state(room)
        assert isinstance(state, nio.RoomGetStateResponse), state
        levels = next(e for e in state.events if e["type"] == "m.room.power_levels")["content"]
        assert levels["users"][f"@cat:{SERVER}"] == 100 and f"@dan:{SERVER}" not in levels["users"]
        assert levels["events_default"] == 0 and levels["kick"] == 50
        name = await client.room_get_state_event(room, "m.room.name")
        assert isinstance(name, nio.RoomGetStateEventResponse) and name.content["name"] == "slow", name
        members = {e["state_key"] for e in state.events if e["type"] == "m.room.member"}
        assert members == {f"@cat:{SERVER}", f"@dan:{SERVER}"}
        profile = await client.get_profile(f"@cat:{SERVER}")
        assert isinstance(profile, nio.ProfileGetResponse) and profile.displayname == "cat", profile

        # dan cannot kick the owner; the owner times him out, and he can no longer post.
        kick = await client.room_kick(room, f"@cat:{SERVER}")
        assert isinstance(kick, nio.RoomKickError) and kick.status_code == "M_FORBIDDEN", kick
        graphql(
            'mutation($g: ID!, $u: ID!) { timeoutMember(guildId: $g, userId: $u, seconds: 600) }',
            {"g": g, "u": f"@dan:{SERVER}"},
            cat,
        )
        muted = await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "three"})
        assert isinstance(muted, nio.RoomSendError) and muted.status_code == "M_FORBIDDEN", muted
        assert "timed out" in muted.message

        # Leaving a room leaves its guild.
        left = await client.room_leave(room)
        assert isinstance(left, nio.RoomLeaveResponse), left
        joined = await client.joined_rooms()
        assert room not in joined.rooms and space not in joined.rooms
        await client.close()

    run(go())


def test_unread_counts_receipts_and_typing():
    ids = club("eve", "fay", "Read Club", "news")
    c, eve, fay = ids["channel"], ids["eve"], ids["fay"]
    post = 'mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }'
    graphql(post, {"c": c, "b": "first"}, fay)
    last = graphql(post, {"c": c, "b": f"second, @eve:{SERVER}"}, fay)["sendMessage"]["id"]
    room = f"!{c}:{SERVER}"

    async def go():
        client = nio.AsyncClient(URL, "eve")
        assert isinstance(await client.login("correct horse"), nio.LoginResponse)
        first = await client.sync(timeout=0, full_state=True)
        counts = first.rooms.join[room].unread_notifications
        assert (counts.notification_count, counts.highlight_count) == (2, 1), counts
        # fay, long-polling, hears eve typing.
        other = nio.AsyncClient(URL, "fay")
        assert isinstance(await other.login("correct horse"), nio.LoginResponse)
        theirs = await other.sync(timeout=0, full_state=True)
        waiting = asyncio.create_task(other.sync(timeout=5000, since=theirs.next_batch))
        await asyncio.sleep(0.3)
        typing = await client.room_typing(room, True, timeout=5000)
        assert isinstance(typing, nio.RoomTypingResponse), typing
        heard = await asyncio.wait_for(waiting, 10)
        notices = [e.users for e in heard.rooms.join[room].ephemeral if isinstance(e, nio.TypingNoticeEvent)]
        assert notices == [[f"@eve:{SERVER}"]], heard.rooms.join[room].ephemeral
        await other.close()
        marked = await client.room_read_markers(room, fully_read_event=last, read_event=last)
        assert isinstance(marked, nio.RoomReadMarkersResponse), marked
        news = await client.sync(timeout=5000, since=first.next_batch)
        receipts = [
            (r.event_id, r.user_id)
            for e in news.rooms.join[room].ephemeral
            if isinstance(e, nio.ReceiptEvent)
            for r in e.receipts
        ]
        assert receipts == [(last, f"@eve:{SERVER}")], news.rooms.join[room].ephemeral
        again = await client.sync(timeout=0, full_state=True)
        assert again.rooms.join[room].unread_notifications.notification_count == 0
        await client.close()

    run(go())
    unread = graphql("query($c: ID!) { channel(id: $c) { unreadCount lastReadMessageId } }", {"c": c}, eve)["channel"]
    assert unread == {"unreadCount": 0, "lastReadMessageId": last}, unread


def test_register_create_a_room_and_a_space_and_walk_the_hierarchy():
    async def go():
        client = nio.AsyncClient(URL, "gus")
        reg = await client.register("gus", "correct horse")
        assert isinstance(reg, nio.RegisterResponse), reg
        assert reg.user_id == f"@gus:{SERVER}" and client.access_token
        taken = await nio.AsyncClient(URL, "gus").register("gus", "correct horse")
        assert isinstance(taken, nio.ErrorResponse) and taken.status_code == "M_USER_IN_USE", taken

        room = await client.room_create(name="Garden Talk", topic="plants")
        assert isinstance(room, nio.RoomCreateResponse), room
        space = await client.room_create(name="Gardeners", space=True)
        assert isinstance(space, nio.RoomCreateResponse), space
        joined = await client.joined_rooms()
        assert room.room_id in joined.rooms and space.room_id in joined.rooms
        name = await client.room_get_state_event(room.room_id, "m.room.name")
        assert name.content["name"] == "garden-talk", name

        # The room's guild is a space whose child the room is.
        state = await client.room_get_state(room.room_id)
        parent = next(e for e in state.events if e["type"] == "m.space.parent")["state_key"]
        r = urllib.request.Request(
            f"{URL}/_matrix/client/v1/rooms/{parent}/hierarchy",
            headers={"authorization": "Bearer " + client.access_token},
        )
        with urllib.request.urlopen(r) as resp:
            tree = json.load(resp)
        assert [x["room_id"] for x in tree["rooms"]] == [parent, room.room_id], tree
        assert tree["rooms"][0]["room_type"] == "m.space" and tree["rooms"][0]["name"] == "Garden Talk"
        assert tree["rooms"][1]["topic"] == "plants"
        await client.close()

    run(go())


def test_content_keys_a_client_sends_come_back_as_sent(guild):
    room = f"!{guild['channel']}:{SERVER}"
    content = {
        "msgtype": "m.notice",
        "body": "**bold** news",
        "format": "org.matrix.custom.html",
        "formatted_body": "<strong>bold</strong> news",
        "org.example.mood": {"level": 3, "tags": ["happy"]},
    }

    async def go():
        ann = nio.AsyncClient(URL, "ann")
        assert isinstance(await ann.login("correct horse"), nio.LoginResponse)
        start = await ann.sync(timeout=0, full_state=True)
        sent = await ann.room_send(room, "m.room.message", content)
        assert isinstance(sent, nio.RoomSendResponse), sent
        news = await ann.sync(timeout=5000, since=start.next_batch)
        live = [e.source["content"] for e in news.rooms.join[room].timeline.events if e.event_id == sent.event_id]
        assert live == [content], live
        page = await ann.room_messages(room, start=news.next_batch, limit=1)
        assert page.chunk[0].source["content"] == content, page.chunk[0].source
        await ann.close()

    run(go())
    body = graphql(
        "query($c: ID!) { channel(id: $c) { messages(last: 1) { nodes { body } } } }", {"c": guild["channel"]}, guild["ann"]
    )["channel"]["messages"]["nodes"][0]["body"]
    assert body == "**bold** news"


def test_a_new_channel_a_rename_and_a_new_member_reach_an_incremental_sync():
    hal = graphql(REGISTER, {"h": "hal"})["register"]["token"]
    ivy = graphql(REGISTER, {"h": "ivy"})["register"]["token"]
    jay = graphql(REGISTER, {"h": "jay"})["register"]["token"]
    g = graphql('mutation { createGuild(input: {name: "Growing Club"}) { id } }', token=hal)["createGuild"]["id"]
    code = graphql('mutation($g: ID!) { createInvite(input: {guildId: $g, maxUses: 5}) { code } }', {"g": g}, hal)
    code = code["createInvite"]["code"]
    graphql('mutation($c: String!) { joinGuild(code: $c) { id } }', {"c": code}, ivy)
    space = f"!{g}:{SERVER}"

    async def go():
        client = nio.AsyncClient(URL, "ivy")
        assert isinstance(await client.login("correct horse"), nio.LoginResponse)
        first = await client.sync(timeout=0, full_state=True)
        waiting = asyncio.create_task(client.sync(timeout=5000, since=first.next_batch))
        await asyncio.sleep(0.3)
        c = graphql(
            'mutation($g: ID!) { createChannel(input: {guildId: $g, name: "seeds", kind: TEXT}) { id } }', {"g": g}, hal
        )["createChannel"]["id"]
        room = f"!{c}:{SERVER}"
        news = await asyncio.wait_for(waiting, 10)
        assert room in news.rooms.join, list(news.rooms.join)
        name = next(e.source for e in news.rooms.join[room].state if e.source["type"] == "m.room.name")
        assert name["content"]["name"] == "seeds"
        children = [e.source["state_key"] for e in news.rooms.join[space].state if e.source["type"] == "m.space.child"]
        assert room in children

        # A rename, then someone joining: the room's state, sent again as it now stands.
        graphql('mutation($c: ID!) { updateChannel(channelId: $c, name: "sprouts") { id } }', {"c": c}, hal)
        graphql('mutation($c: String!) { joinGuild(code: $c) { id } }', {"c": code}, jay)
        later = await client.sync(timeout=5000, since=news.next_batch)
        state = [e.source for e in later.rooms.join[room].state]
        assert next(e for e in state if e["type"] == "m.room.name")["content"]["name"] == "sprouts"
        assert f"@jay:{SERVER}" in {e["state_key"] for e in state if e["type"] == "m.room.member"}
        await client.close()

    run(go())


def test_a_ban_on_either_api_holds_on_both():
    ids = club("kim", "lee", "Strict Club", "rules")
    g, c, kim, lee = ids["guild"], ids["channel"], ids["kim"], ids["lee"]
    mo = graphql(REGISTER, {"h": "mo"})["register"]["token"]
    code = graphql('mutation($g: ID!) { createInvite(input: {guildId: $g}) { code } }', {"g": g}, kim)
    code = code["createInvite"]["code"]
    graphql('mutation($c: String!) { joinGuild(code: $c) { id } }', {"c": code}, mo)
    room, space = f"!{c}:{SERVER}", f"!{g}:{SERVER}"

    async def go():
        owner = nio.AsyncClient(URL, "kim")
        banned = nio.AsyncClient(URL, "mo")
        assert isinstance(await owner.login("correct horse"), nio.LoginResponse)
        assert isinstance(await banned.login("correct horse"), nio.LoginResponse)

        # Banned over Matrix: lee can neither post over GraphQL nor join again.
        ban = await owner.room_ban(room, f"@lee:{SERVER}", reason="spam")
        assert isinstance(ban, nio.RoomBanResponse), ban
        code_, message = graphql_refused(POST, {"c": c, "b": "still here?"}, lee)
        assert code_ == "FORBIDDEN", (code_, message)
        code_, message = graphql_refused('mutation($c: String!) { joinGuild(code: $c) { id } }', {"c": code}, lee)
        assert code_ == "FORBIDDEN" and "banned" in message, (code_, message)
        bans = graphql("query($g: ID!) { guild(id: $g) { bans { user { id } reason } } }", {"g": g}, kim)
        assert bans["guild"]["bans"] == [{"user": {"id": f"@lee:{SERVER}"}, "reason": "spam"}], bans

        # Banned over GraphQL: mo's Matrix send is refused and the rooms leave mo's sync.
        before = await banned.sync(timeout=0, full_state=True)
        assert room in before.rooms.join
        graphql('mutation($g: ID!, $u: ID!) { banMember(guildId: $g, userId: $u) }', {"g": g, "u": f"@mo:{SERVER}"}, kim)
        refused = await banned.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "let me in"})
        assert isinstance(refused, nio.RoomSendError) and refused.status_code == "M_FORBIDDEN", refused
        gone = await banned.sync(timeout=5_000, since=before.next_batch)
        assert room in gone.rooms.leave and space in gone.rooms.leave, gone.rooms.leave

        # Unbanned over Matrix: lee may join again by invite.
        unban = await owner.room_unban(room, f"@lee:{SERVER}")
        assert isinstance(unban, nio.RoomUnbanResponse), unban
        graphql('mutation($c: String!) { joinGuild(code: $c) { id } }', {"c": code}, lee)
        await owner.close()
        await banned.close()

    run(go())


CLIENT = "http://client.example/after-login"


class Arrived(Exception):
    """The provider's and the hub's redirects ended at the client, with this URL."""


class StopAtClient(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if newurl.startswith(CLIENT):
            raise Arrived(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def test_sso_login_through_the_openid_provider():
    idp = os.environ["OPENGUILD_SSO_IDP"]

    async def go():
        client = nio.AsyncClient(URL)
        flows = await client.login_info()
        assert "m.login.sso" in flows.flows and "m.login.token" in flows.flows, flows.flows
        # A browser's trip: the hub, the real OpenID provider (it signs its default user in),
        # the hub's callback, then the client's redirectUrl with a login token.
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(), StopAtClient())
        start = f"{URL}/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl={urllib.parse.quote(CLIENT, safe='')}"
        try:
            browser.open(start)
            raise AssertionError("the sign-on did not come back to the client")
        except Arrived as arrived:
            back = urllib.parse.urlparse(str(arrived))
        token = urllib.parse.parse_qs(back.query)["loginToken"][0]
        login = await client.login(token=token)
        assert isinstance(login, nio.LoginResponse), login
        assert login.user_id == f"@alice:{SERVER}", login
        me = await client.whoami()
        assert isinstance(me, nio.WhoamiResponse) and me.user_id == f"@alice:{SERVER}", me
        # A login token is good once.
        again = await nio.AsyncClient(URL).login(token=token)
        assert isinstance(again, nio.LoginError) and again.status_code == "M_FORBIDDEN", again
        await client.close()

    run(go())
