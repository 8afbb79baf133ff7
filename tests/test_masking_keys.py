"""Master key: no default, one-line errors that never echo the key, per-consumer HKDF keys."""

from __future__ import annotations

import base64
import pickle
import stat
from pathlib import Path

import pytest

from catalog.errors import MaskingKeyError
from masking.keys import (
    ENV_KEY,
    ENV_KEY_FILE,
    MasterKey,
    create_key_file,
    hkdf_sha256,
    key_by_id,
)

SECRET = bytes(range(100, 132))


def _one_line(err: pytest.ExceptionInfo[MaskingKeyError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_key_says_how_to_provide_one() -> None:
    with pytest.raises(MaskingKeyError) as err:
        MasterKey.from_env({})
    assert _one_line(err) == (
        "no masking key: set YIMEN_MASKING_KEY (hex or base64 of at least 32 random bytes) "
        "or YIMEN_MASKING_KEY_FILE (a file holding one; `lake demo` creates var/masking.key)"
    )


@pytest.mark.parametrize(
    "text",
    [
        SECRET.hex(),
        SECRET.hex().upper(),
        base64.b64encode(SECRET).decode(),
        base64.urlsafe_b64encode(SECRET).decode().rstrip("="),
        f"  {SECRET.hex()}\n",
    ],
)
def test_key_from_hex_or_base64(text: str) -> None:
    assert MasterKey.from_env({ENV_KEY: text}).key_id == MasterKey(SECRET).key_id


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not a key at all!", "is not hex or base64"),
        (SECRET[:16].hex(), "decodes to 24 bytes"),  # 32 hex chars read as base64
        (base64.b64encode(SECRET[:20]).decode(), "decodes to 20 bytes, need at least 32"),
    ],
)
def test_malformed_key_is_one_line_without_the_value(text: str, reason: str) -> None:
    with pytest.raises(MaskingKeyError) as err:
        MasterKey.from_env({ENV_KEY: text})
    message = _one_line(err)
    assert reason in message and ENV_KEY in message
    assert text not in message and text[:8] not in message


def test_both_sources_set_is_an_error() -> None:
    with pytest.raises(MaskingKeyError, match="set only one"):
        MasterKey.from_env({ENV_KEY: SECRET.hex(), ENV_KEY_FILE: "/x"})


def test_key_file_is_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "var" / "masking.key"
    key = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKey.from_env({ENV_KEY_FILE: str(path)}).key_id == key.key_id
    with pytest.raises(MaskingKeyError, match="already exists; not overwritten"):
        create_key_file(path)
    assert MasterKey.from_file(path).key_id == key.key_id  # unchanged


def test_missing_or_bad_key_file(tmp_path: Path) -> None:
    with pytest.raises(MaskingKeyError, match="does not exist"):
        MasterKey.from_env({ENV_KEY_FILE: str(tmp_path / "nope.key")})
    bad = tmp_path / "bad.key"
    bad.write_text("short\n")
    with pytest.raises(MaskingKeyError) as err:
        MasterKey.from_env({ENV_KEY_FILE: str(bad)})
    assert "short" not in _one_line(err) and str(bad) in str(err.value)


def test_key_material_never_in_repr_str_or_pickle() -> None:
    master = MasterKey(SECRET)
    derived = master.token_key("dishui")
    shown = " ".join([repr(master), str(master), repr(derived), str(derived), f"{derived}"])
    for secret in (SECRET, derived.secret):
        for form in (secret.hex(), base64.b64encode(secret).decode(), repr(secret)[2:20]):
            assert form not in shown
    assert master.key_id in repr(master) and "dishui" in repr(derived)
    for obj in (master, derived):
        with pytest.raises(TypeError, match="not serialisable"):
            pickle.dumps(obj)


def test_key_id_is_short_public_and_labelled() -> None:
    import hashlib

    key_id = MasterKey(SECRET).key_id
    assert len(key_id) == 8 and int(key_id, 16) >= 0
    assert key_id != hashlib.sha256(SECRET).hexdigest()[:8]  # a labelled digest, not a bare one
    assert key_id not in SECRET.hex()
    assert MasterKey(bytes(32)).key_id != key_id


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    assert hkdf_sha256(ikm, info, 42, salt).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_derived_keys_differ_per_consumer_and_purpose() -> None:
    master = MasterKey(SECRET)
    keys = {
        master.token_key("dishui").secret,
        master.token_key("renshe").secret,
        master.fake_key("dishui").secret,
        SECRET,
    }
    assert len(keys) == 4
    assert master.token_key("dishui").secret == master.token_key("dishui").secret
    expected = hkdf_sha256(SECRET, b"yimen-lake token v1|dishui")
    assert master.token_key("dishui").secret == expected
    with pytest.raises(MaskingKeyError, match="not a valid code"):
        master.token_key("Dishui; drop")


def test_old_keys_are_found_by_key_id(tmp_path: Path) -> None:
    old = create_key_file(tmp_path / "keys" / "a.key")
    new = create_key_file(tmp_path / "keys" / "b.key")
    assert key_by_id(tmp_path / "keys", old.key_id).key_id == old.key_id
    assert key_by_id(tmp_path / "keys", new.key_id).key_id == new.key_id
    with pytest.raises(MaskingKeyError, match="no masking key with id 00000000"):
        key_by_id(tmp_path / "keys", "00000000")
