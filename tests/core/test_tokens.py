"""JWT access and refresh tokens: the codec on its own, then the same rules enforced by the API."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
from jwt.utils import base64url_decode, base64url_encode

from bookstore.core.errors import AuthenticationError
from bookstore.core.tokens import ACCESS, AUDIENCE, ISSUER, REFRESH, REQUIRED_CLAIMS, TokenCodec
from tests.conftest import TEST_SECRET
from tests.helpers import ApiClient, assert_problem, bearer

OTHER_SECRET = "another-secret-" + "y" * 40
ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=14)
ME = "/api/v1/users/me"


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(secret=TEST_SECRET, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)


def claims(**overrides: Any) -> dict[str, Any]:
    """A claim set shaped like the service's own tokens; a value of None removes that claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "1",
        "sid": str(uuid4()),
        "jti": uuid4().hex,
        "typ": ACCESS,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def forge(payload: dict[str, Any], *, secret: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def unsigned(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, None, algorithm="none")


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a token, without verifying it."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def expired(payload: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {**payload, "iat": now - 3600, "exp": now - 60}


def flip_char(text: str, index: int) -> str:
    replacement = "B" if text[index] == "A" else "A"
    return text[:index] + replacement + text[index + 1 :]


# --- TokenCodec -----------------------------------------------------------------------------------


def test_access_token_roundtrip_keeps_user_and_session(codec: TokenCodec) -> None:
    session_id = uuid4()
    token = codec.decode(codec.issue(ACCESS, user_id=42, session_id=session_id), ACCESS)
    assert token.sub == "42"
    assert UUID(token.sid) == session_id
    assert token.typ == ACCESS


def test_refresh_token_roundtrip_keeps_user_and_session(codec: TokenCodec) -> None:
    session_id = uuid4()
    token = codec.decode(codec.issue(REFRESH, user_id=7, session_id=session_id), REFRESH)
    assert token.sub == "7"
    assert UUID(token.sid) == session_id
    assert token.typ == REFRESH


def test_issued_token_carries_every_required_claim(codec: TokenCodec) -> None:
    payload = claims_of(codec.issue(ACCESS, user_id=1, session_id=uuid4()))
    assert set(REQUIRED_CLAIMS) <= payload.keys()
    assert payload["iss"] == ISSUER
    assert payload["aud"] == AUDIENCE
    assert payload["typ"] == ACCESS


def test_issued_token_is_signed_with_hs256(codec: TokenCodec) -> None:
    header = jwt.get_unverified_header(codec.issue(ACCESS, user_id=1, session_id=uuid4()))
    assert header["alg"] == "HS256"


def test_decoded_token_has_issuer_audience_and_jti(codec: TokenCodec) -> None:
    token = codec.decode(codec.issue(ACCESS, user_id=1, session_id=uuid4()), ACCESS)
    assert token.iss == ISSUER
    assert token.aud == AUDIENCE
    assert isinstance(token.jti, str)
    assert token.jti


def test_every_token_gets_a_unique_jti(codec: TokenCodec) -> None:
    session_id = uuid4()
    first = claims_of(codec.issue(ACCESS, user_id=1, session_id=session_id))
    second = claims_of(codec.issue(ACCESS, user_id=1, session_id=session_id))
    assert first["jti"] != second["jti"]


def test_access_token_expires_after_the_access_ttl(codec: TokenCodec) -> None:
    before = datetime.now(UTC)
    token = codec.decode(codec.issue(ACCESS, user_id=1, session_id=uuid4()), ACCESS)
    expected = before + ACCESS_TTL
    assert abs((token.exp - expected).total_seconds()) <= 2


def test_refresh_token_expires_after_the_refresh_ttl(codec: TokenCodec) -> None:
    before = datetime.now(UTC)
    token = codec.decode(codec.issue(REFRESH, user_id=1, session_id=uuid4()), REFRESH)
    expected = before + REFRESH_TTL
    assert abs((token.exp - expected).total_seconds()) <= 2


def test_access_token_is_rejected_as_refresh_token(codec: TokenCodec) -> None:
    encoded = codec.issue(ACCESS, user_id=1, session_id=uuid4())
    with pytest.raises(AuthenticationError):
        codec.decode(encoded, REFRESH)


def test_refresh_token_is_rejected_as_access_token_by_codec(codec: TokenCodec) -> None:
    encoded = codec.issue(REFRESH, user_id=1, session_id=uuid4())
    with pytest.raises(AuthenticationError):
        codec.decode(encoded, ACCESS)


def test_token_with_unknown_typ_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(typ="id")), ACCESS)


def test_forged_token_with_the_right_secret_and_claims_is_accepted(codec: TokenCodec) -> None:
    # Control for the forgery tests below: the helper builds tokens the codec accepts.
    token = codec.decode(forge(claims(sub="9")), ACCESS)
    assert token.sub == "9"


def test_expired_token_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(expired(claims())), ACCESS)


def test_token_not_yet_valid_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(nbf=int(time.time()) + 600)), ACCESS)


def test_token_issued_in_the_future_is_rejected(codec: TokenCodec) -> None:
    now = int(time.time())
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(iat=now + 600, exp=now + 1200)), ACCESS)


def test_token_with_tampered_payload_is_rejected(codec: TokenCodec) -> None:
    encoded = codec.issue(ACCESS, user_id=1, session_id=uuid4())
    header, _payload, signature = encoded.split(".")
    # Claim to be user 2 while keeping the signature made for user 1.
    payload = {**claims_of(encoded), "sub": "2"}
    tampered = base64url_encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    with pytest.raises(AuthenticationError):
        codec.decode(f"{header}.{tampered}.{signature}", ACCESS)


def test_token_with_a_flipped_payload_character_is_rejected(codec: TokenCodec) -> None:
    header, payload, signature = codec.issue(ACCESS, user_id=1, session_id=uuid4()).split(".")
    with pytest.raises(AuthenticationError):
        codec.decode(f"{header}.{flip_char(payload, 10)}.{signature}", ACCESS)


def test_token_with_a_flipped_signature_character_is_rejected(codec: TokenCodec) -> None:
    header, payload, signature = codec.issue(ACCESS, user_id=1, session_id=uuid4()).split(".")
    # The first character: all six of its bits are part of the signature (the last one's are not).
    tampered = flip_char(signature, 0)
    assert base64url_decode(tampered) != base64url_decode(signature)
    with pytest.raises(AuthenticationError):
        codec.decode(f"{header}.{payload}.{tampered}", ACCESS)


def test_token_without_signature_is_rejected(codec: TokenCodec) -> None:
    header, payload, _signature = codec.issue(ACCESS, user_id=1, session_id=uuid4()).split(".")
    with pytest.raises(AuthenticationError):
        codec.decode(f"{header}.{payload}.", ACCESS)


def test_token_signed_with_another_secret_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(), secret=OTHER_SECRET), ACCESS)


def test_token_issued_by_a_codec_with_another_secret_is_rejected(codec: TokenCodec) -> None:
    other = TokenCodec(secret=OTHER_SECRET, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)
    with pytest.raises(AuthenticationError):
        codec.decode(other.issue(ACCESS, user_id=1, session_id=uuid4()), ACCESS)


def test_unsigned_alg_none_token_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(unsigned(claims()), ACCESS)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_hs512_token_with_the_same_secret_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(), algorithm="HS512"), ACCESS)


def test_hs384_token_with_the_same_secret_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(), algorithm="HS384"), ACCESS)


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_token_missing_a_required_claim_is_rejected(codec: TokenCodec, claim: str) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(**{claim: None})), ACCESS)


def test_token_from_another_issuer_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(iss="someone-else")), ACCESS)


def test_token_for_another_audience_is_rejected(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(forge(claims(aud="another-api")), ACCESS)


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.e30."])
def test_malformed_token_is_rejected(codec: TokenCodec, garbage: str) -> None:
    with pytest.raises(AuthenticationError):
        codec.decode(garbage, ACCESS)


def test_rejection_message_does_not_reveal_the_reason(codec: TokenCodec) -> None:
    with pytest.raises(AuthenticationError) as expired_error:
        codec.decode(forge(expired(claims())), ACCESS)
    with pytest.raises(AuthenticationError) as forged_error:
        codec.decode(forge(claims(), secret=OTHER_SECRET), ACCESS)
    assert expired_error.value.detail == forged_error.value.detail


# --- GET /api/v1/users/me -------------------------------------------------------------------------


async def test_me_with_a_valid_access_token_returns_the_account(client: ApiClient) -> None:
    account = await client.account()
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["email"] == account.email


async def test_me_with_the_real_claims_re_signed_with_the_secret_is_accepted(client: ApiClient) -> None:
    # Control for the forgery tests below: re-signing unchanged claims properly still works.
    account = await client.account()
    token = forge(claims_of(account.access_token))
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_me_without_a_token_is_unauthorized(client: ApiClient) -> None:
    assert_problem(await client.get(ME), 401)


async def test_unauthorized_response_names_the_bearer_scheme(client: ApiClient) -> None:
    response = await client.get(ME)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_me_with_a_garbage_bearer_token_is_unauthorized(client: ApiClient) -> None:
    assert_problem(await client.get(ME, headers={"Authorization": "Bearer garbage"}), 401)


async def test_me_with_an_empty_bearer_token_is_unauthorized(client: ApiClient) -> None:
    assert_problem(await client.get(ME, headers={"Authorization": "Bearer "}), 401)


async def test_me_with_a_non_bearer_scheme_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    response = await client.get(ME, headers={"Authorization": f"Basic {account.access_token}"})
    assert_problem(response, 401)


async def test_refresh_token_is_rejected_as_access_token(client: ApiClient) -> None:
    account = await client.account()
    assert_problem(await client.get(ME, headers=bearer(account.refresh_token)), 401)


async def test_me_with_an_expired_access_token_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge(expired(claims_of(account.access_token)))
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_an_alg_none_token_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = unsigned(claims_of(account.access_token))
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_a_token_signed_with_another_secret_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge(claims_of(account.access_token), secret=OTHER_SECRET)
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_me_with_an_hs512_token_signed_with_the_secret_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge(claims_of(account.access_token), algorithm="HS512")
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_a_token_missing_jti_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    payload = claims_of(account.access_token)
    del payload["jti"]
    assert_problem(await client.get(ME, headers=bearer(forge(payload))), 401)


async def test_me_with_a_token_for_another_audience_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge({**claims_of(account.access_token), "aud": "another-api"})
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_a_token_for_an_unknown_session_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge({**claims_of(account.access_token), "sid": str(uuid4())})
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_a_token_for_another_user_of_the_session_is_unauthorized(client: ApiClient) -> None:
    first = await client.account()
    second = await client.account()
    # The first user's session id with the second user's id: the pair must match.
    token = forge({**claims_of(first.access_token), "sub": str(second.id)})
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_a_signed_token_whose_session_id_is_not_a_uuid_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge({**claims_of(account.access_token), "sid": "not-a-uuid"})
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


async def test_me_with_a_signed_token_whose_subject_is_not_a_number_is_unauthorized(client: ApiClient) -> None:
    account = await client.account()
    token = forge({**claims_of(account.access_token), "sub": "admin"})
    assert_problem(await client.get(ME, headers=bearer(token)), 401)
