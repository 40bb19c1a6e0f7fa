"""Connection auth with real clients: JWT (HS256, RS256, ES256) and shared sessions
written by real express-session + connect-redis."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import quote, unquote

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import NodeClients, run_node_json, wait_until
from harness.push_suite import API_TOKEN

SECRET = "e2e-jwt-secret-with-enough-bytes-32"


def hs256(claims: dict, secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def hs256_by_hand(claims_: dict, key: bytes) -> str:
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")  # noqa: E731
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims_).encode())
    return (signing_input + b"." + b64(hmac.new(key, signing_input, hashlib.sha256).digest())).decode()


def claims(sub="u1", ttl=300, **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + ttl, **extra}


@pytest.fixture
def jwt_node(start_node):
    return start_node(JWT_SECRET=SECRET)


def test_valid_token_joins_user_room_and_rooms_claim_limits_subscribe(jwt_node, py_clients):
    client = py_clients()
    assert client.connect(jwt_node.url, hs256(claims(rooms=["news.*", "team-7"]))), client.error_message()
    ack = client.subscribe("news.eu", "team-7", "sports", "user:someone-else")
    assert ack["joined"] == ["news.eu", "team-7"]
    assert {r["room"]: r["reason"] for r in ack["refused"]} == {
        "sports": "not allowed by the token's rooms claim",
        "user:someone-else": "user rooms are joined from the token, not by subscribing",
    }
    for body in ({"event": "dm", "data": 1, "user": "u1"}, {"event": "news", "data": 2, "room": "news.eu"},
                 {"event": "news", "data": 3, "room": "sports"}):
        assert jwt_node.publish(body, API_TOKEN).status_code == 202
    # Sentinel last: everything published before it has been delivered when it arrives.
    assert jwt_node.publish({"event": "end", "user": "u1"}, API_TOKEN).status_code == 202
    wait_until(lambda: client.received("end"), 10, "sentinel")
    assert client.received("dm") == [1]
    assert client.received("news") == [2]


# Tokens are made when the test runs, not at collection: a suite that runs longer than a
# token's lifetime before reaching this test turned "not yet valid" into "expired" (CI saw it).
@pytest.mark.parametrize("case,make_token,message", [
    ("expired", lambda: hs256(claims(ttl=-3600)), "token expired"),
    ("wrong key", lambda: hs256(claims(), "another-secret-another-secret-xx"), "invalid token"),
    ("not yet valid", lambda: hs256(claims(nbf=int(time.time()) + 600, ttl=3600)), "token not yet valid"),
    ("garbage", lambda: "not-a-jwt", "invalid token"),
    ("missing", lambda: None, "authentication required"),
], ids=["expired", "wrong key", "not yet valid", "garbage", "missing"])
def test_bad_tokens_are_refused_with_a_clear_message(jwt_node, py_clients, case, make_token, message):
    token = make_token()
    client = py_clients()
    assert not client.connect(jwt_node.url, token), f"{case}: accepted"
    assert message in client.error_message(), (case, client.connect_error)


def test_official_js_client_sees_the_refusal_reason(processes, jwt_node):
    client = NodeClients(processes, {"url": jwt_node.url, "auth": {"token": hs256(claims(ttl=-3600))}})
    [error] = client.wait("connect_error")
    assert error["message"] == "token expired"
    assert not client.of("connected")


def _write_key(tmp_path, private_key, name):
    path = tmp_path / name
    path.write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_tokens(start_node, py_clients, tmp_path, algorithm):
    if algorithm == "RS256":
        key, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    else:
        key, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    node = start_node(JWT_PUBLIC_KEY_FILE=_write_key(tmp_path, key, "key.pem"))
    good = py_clients()
    assert good.connect(node.url, jwt.encode(claims(), key, algorithm=algorithm)), good.error_message()
    forged = py_clients()
    assert not forged.connect(node.url, jwt.encode(claims(), other, algorithm=algorithm))
    assert "invalid token" in forged.error_message()
    # Algorithm confusion: an HS256 token "signed" with the public key must not pass.
    # (signed by hand: PyJWT itself refuses to do it)
    confused = py_clients()
    assert not confused.connect(node.url, hs256_by_hand(claims(), (tmp_path / "key.pem").read_bytes()))
    assert "invalid token" in confused.error_message()


SESSION_SECRET = "keyboard cat"


@pytest.fixture
def session_node(redis_server, start_node):
    return start_node(redis_server.url, SESSION_SECRET=SESSION_SECRET)


def test_express_session_cookie_is_accepted_as_its_user(processes, redis_server, session_node):
    written = run_node_json("session.js", {"redisUrl": redis_server.url, "secret": SESSION_SECRET,
                                           "user": "alice"})
    client = NodeClients(processes, {"url": session_node.url, "transports": ["websocket"],
                                     "headers": {"Cookie": written["cookie"]}})
    client.wait_ready()
    assert session_node.publish({"event": "dm", "data": "hi alice", "user": "alice"},
                                API_TOKEN).status_code == 202
    assert [e["data"] for e in client.settle("dm", 1)] == ["hi alice"]


@pytest.mark.parametrize("case", ["forged signature", "undecodable value", "signed by another secret",
                                  "deleted session", "no cookie"])
def test_forged_or_unknown_sessions_are_refused(processes, redis_server, session_node, case):
    secret = "another secret" if case == "signed by another secret" else SESSION_SECRET
    written = run_node_json("session.js", {"redisUrl": redis_server.url, "secret": secret, "user": "mallory"})
    cookie = written["cookie"]
    name, value = cookie.split("=", 1)
    if case == "forged signature":
        # Another signature, validly encoded (cutting the encoded value could split a %XX).
        signed, signature = unquote(value).rsplit(".", 1)
        forged = ("B" if signature[0] == "A" else "A") + signature[1:]
        cookie = f"{name}={quote(signed + '.' + forged, safe='')}"
    if case == "undecodable value":
        cookie = f"{name}={value}%AA"
    if case == "deleted session":
        assert redis_server.cli("DEL", f"sess:{written['sid']}") == "1"
    headers = {} if case == "no cookie" else {"Cookie": cookie}
    client = NodeClients(processes, {"url": session_node.url, "transports": ["websocket"], "headers": headers})
    [error] = client.wait("connect_error")
    expected = {
        "forged signature": "bad signature",
        "undecodable value": "bad signature",
        "signed by another secret": "bad signature",
        "deleted session": "unknown or expired session",
        "no cookie": "no session cookie",
    }[case]
    assert expected in error["message"], error


def test_user_publish_reaches_every_connection_of_that_user_on_every_node(processes, redis_server,
                                                                          start_node, py_clients):
    a = start_node(redis_server.url, node_id="a", JWT_SECRET=SECRET)
    b = start_node(redis_server.url, node_id="b", JWT_SECRET=SECRET)
    token = hs256(claims(sub="u9"))
    on_a = py_clients()
    assert on_a.connect(a.url, token), on_a.error_message()
    on_b = NodeClients(processes, {"url": b.url, "auth": {"token": token}})
    someone_else = NodeClients(processes, {"url": b.url, "auth": {"token": hs256(claims(sub="u10"))}})
    on_b.wait_ready()
    someone_else.wait_ready()
    assert a.publish({"event": "dm", "data": "for u9", "user": "u9"}, API_TOKEN).status_code == 202
    assert [e["data"] for e in on_b.settle("dm", 1)] == ["for u9"]
    wait_until(lambda: on_a.received("dm"), 10, "the python client on node a")
    assert on_a.received("dm") == ["for u9"]
    assert someone_else.events("dm") == []
