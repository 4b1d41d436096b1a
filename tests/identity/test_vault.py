"""The evidence vault: AES-256-GCM under a key id, rotation, tamper refusal, and refusal of unusable keys."""

from __future__ import annotations

import base64
import os
from dataclasses import replace

import pytest
from pydantic import ValidationError

from simkeep.config import Settings
from simkeep.identity.vault import (
    DERIVED_KEY_ID,
    Sealed,
    Vault,
    VaultError,
    VaultMisconfigured,
    check_settings,
    get_vault,
    parse_keys,
)

SECRET = "production-secret-0123456789abcdef0123456789"
PHOTO = b"\xff\xd8\xff\xe0 a cleaned JPEG of a document, byte for byte " * 20


def key_spec(key_id: str, key: bytes | None = None) -> str:
    """``id:base64key`` for ``key`` (a fresh random 32-byte key by default)."""
    return f"{key_id}:{base64.b64encode(key if key is not None else os.urandom(32)).decode()}"


def production(vault_keys: str) -> Settings:
    """Production settings with a real secret key and the given vault keys."""
    return Settings(environment="production", secret_key=SECRET, vault_keys=vault_keys)


def unchecked_production(vault_keys: str) -> Settings:
    """Production settings built without their validators (which would refuse a bad key first)."""
    return Settings.model_construct(environment="production", secret_key=SECRET, vault_keys=vault_keys)


def flip(data: bytes, index: int) -> bytes:
    """``data`` with one bit of byte ``index`` flipped."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


class TestParseKeys:
    """``SIMKEEP_VAULT_KEYS`` is read as ``id:base64key[,id:base64key...]``, in order."""

    def test_keys_keep_their_order(self) -> None:
        """The first key listed comes first (it is the one that encrypts)."""
        keys = parse_keys(f"{key_spec('new')}, {key_spec('old')}")
        assert list(keys) == ["new", "old"]
        assert all(len(k) == 32 for k in keys.values())

    def test_empty_spec_gives_no_keys(self) -> None:
        """Nothing configured is no keys, not an error (outside production a key is derived)."""
        assert parse_keys("") == {}
        assert parse_keys(" , ") == {}

    @pytest.mark.parametrize(
        ("spec", "fragment"),
        [
            ("no-colon-here", "id:base64key"),
            (":" + base64.b64encode(bytes(range(32))).decode(), "id:base64key"),
            ("k" * 33 + ":" + base64.b64encode(bytes(range(32))).decode(), "at most 32"),
            ("k1:not base64!", "not valid base64"),
            ("k1:" + base64.b64encode(bytes(range(16))).decode(), "32 bytes"),
        ],
        ids=["no-separator", "no-id", "long-id", "bad-base64", "aes-128-key"],
    )
    def test_malformed_keys_are_refused(self, spec: str, fragment: str) -> None:
        """A key without an id, with a long id, not base64 or not 32 bytes is refused, saying which."""
        with pytest.raises(VaultMisconfigured, match=fragment):
            parse_keys(spec)


class TestVault:
    """Sealing and opening one file."""

    def test_sealed_file_opens_to_the_same_bytes(self) -> None:
        """What is sealed opens again, under the current key, with a 96-bit nonce."""
        vault = Vault(parse_keys(key_spec("k1")))
        sealed = vault.seal(PHOTO, reference="EV-ONE")
        assert sealed.key_id == "k1"
        assert len(sealed.nonce) == 12
        assert vault.open(sealed, reference="EV-ONE") == PHOTO

    def test_ciphertext_does_not_contain_the_plaintext(self) -> None:
        """The stored bytes carry none of the photo in clear, and each sealing uses a fresh nonce."""
        vault = Vault(parse_keys(key_spec("k1")))
        first = vault.seal(PHOTO, reference="EV-ONE")
        second = vault.seal(PHOTO, reference="EV-ONE")
        assert PHOTO[:32] not in first.ciphertext
        assert first.nonce != second.nonce
        assert first.ciphertext != second.ciphertext

    def test_old_key_still_opens_after_rotation(self) -> None:
        """A file sealed under an old key opens once a new key is added and made current."""
        old = key_spec("k1")
        sealed = Vault(parse_keys(old)).seal(PHOTO, reference="EV-OLD")
        rotated = Vault(parse_keys(f"{key_spec('k2')},{old}"))
        assert rotated.current_key_id == "k2"
        assert rotated.open(sealed, reference="EV-OLD") == PHOTO

    def test_new_files_use_the_new_key_after_rotation(self) -> None:
        """After rotation new files are sealed under the new key, which the old vault cannot open."""
        old = key_spec("k1")
        rotated = Vault(parse_keys(f"{key_spec('k2')},{old}"))
        sealed = rotated.seal(PHOTO, reference="EV-NEW")
        assert sealed.key_id == "k2"
        with pytest.raises(VaultError, match="no longer configured"):
            Vault(parse_keys(old)).open(sealed, reference="EV-NEW")

    def test_removed_key_is_refused_clearly(self) -> None:
        """A file whose key was dropped from the settings fails with VAULT_ERROR naming the key id."""
        sealed = Vault(parse_keys(key_spec("k1"))).seal(PHOTO, reference="EV-GONE")
        with pytest.raises(VaultError, match="'k1'") as caught:
            Vault(parse_keys(key_spec("k2"))).open(sealed, reference="EV-GONE")
        assert caught.value.code == "VAULT_ERROR"

    @pytest.mark.parametrize("index", [0, 100, -1], ids=["first-byte", "middle-byte", "tag-byte"])
    def test_tampered_ciphertext_is_refused(self, index: int) -> None:
        """One flipped bit anywhere in the ciphertext or its tag fails the integrity check."""
        vault = Vault(parse_keys(key_spec("k1")))
        sealed = vault.seal(PHOTO, reference="EV-ONE")
        tampered = replace(sealed, ciphertext=flip(sealed.ciphertext, index % len(sealed.ciphertext)))
        with pytest.raises(VaultError, match="integrity check"):
            vault.open(tampered, reference="EV-ONE")

    def test_tampered_nonce_is_refused(self) -> None:
        """A changed nonce fails the integrity check."""
        vault = Vault(parse_keys(key_spec("k1")))
        sealed = vault.seal(PHOTO, reference="EV-ONE")
        with pytest.raises(VaultError, match="integrity check"):
            vault.open(replace(sealed, nonce=flip(sealed.nonce, 0)), reference="EV-ONE")

    def test_ciphertext_moved_to_another_reference_is_refused(self) -> None:
        """The reference is bound to the ciphertext: another row's file cannot be swapped in."""
        vault = Vault(parse_keys(key_spec("k1")))
        sealed = vault.seal(PHOTO, reference="EV-ALICE")
        with pytest.raises(VaultError, match="integrity check"):
            vault.open(sealed, reference="EV-MALLORY")

    def test_relabelled_key_id_is_refused(self) -> None:
        """The key id is bound too: relabelling a file to another configured key does not open it."""
        key = os.urandom(32)
        vault = Vault(parse_keys(f"{key_spec('k2', key)},{key_spec('k1', key)}"))
        sealed = vault.seal(PHOTO, reference="EV-ONE")
        with pytest.raises(VaultError, match="integrity check"):
            vault.open(Sealed("k1", sealed.nonce, sealed.ciphertext), reference="EV-ONE")

    def test_vault_without_keys_is_refused(self) -> None:
        """A vault needs at least one key."""
        with pytest.raises(VaultMisconfigured, match="at least one key"):
            Vault({})


class TestCheckSettings:
    """The check of the vault settings that production must pass."""

    def test_real_key_passes_in_production(self) -> None:
        """A random 32-byte key (and a second, older one) is accepted."""
        check_settings(production(f"{key_spec('k2')},{key_spec('k1')}"))

    @pytest.mark.parametrize(
        "key",
        [bytes(32), b"0" * 32, b"changeme" * 4, b"abcd" * 8],
        ids=["zero-bytes", "zeros", "changeme", "repeated-pattern"],
    )
    def test_placeholder_key_is_refused_in_production(self, key: bytes) -> None:
        """A well-formed key that is plainly not random is refused in production, naming the key."""
        with pytest.raises(VaultMisconfigured, match="'k1' is a placeholder"):
            check_settings(unchecked_production(f"{key_spec('k2')},{key_spec('k1', key)}"))

    @pytest.mark.parametrize("spec", ["changeme", "k1:changeme", "k1:base64key"])
    def test_malformed_key_is_refused_in_production(self, spec: str) -> None:
        """A key copied from an example without filling it in is refused."""
        with pytest.raises(VaultMisconfigured):
            check_settings(unchecked_production(spec))

    def test_placeholder_key_is_tolerated_outside_production(self) -> None:
        """A fixed key is fine for development and tests."""
        check_settings(Settings(environment="development", vault_keys=key_spec("dev", bytes(32))))

    def test_malformed_key_is_refused_outside_production_too(self) -> None:
        """A key that cannot be used at all is refused in every environment."""
        with pytest.raises(VaultMisconfigured, match="32 bytes"):
            check_settings(Settings(environment="development", vault_keys="dev:AAAA"))


class TestSettings:
    """The settings themselves refuse to start production without vault keys."""

    def test_production_without_vault_keys_is_refused(self) -> None:
        """No SIMKEEP_VAULT_KEYS in production: the settings do not load."""
        with pytest.raises(ValidationError, match="SIMKEEP_VAULT_KEYS"):
            production("")

    def test_production_with_blank_vault_keys_is_refused(self) -> None:
        """Only blanks is no key."""
        with pytest.raises(ValidationError, match="SIMKEEP_VAULT_KEYS"):
            production("   ")

    def test_production_with_a_real_key_loads(self) -> None:
        """A real key and a real secret: production settings load."""
        assert production(key_spec("k1")).environment == "production"

    def test_production_with_a_placeholder_key_is_refused(self) -> None:
        """A placeholder vault key stops production settings from loading, like the placeholder secret."""
        with pytest.raises((ValidationError, VaultMisconfigured)):
            production("k1:changeme")


class TestGetVault:
    """The process's vault for given settings."""

    def test_derived_key_outside_production(self) -> None:
        """With no keys configured outside production, a key is derived from the secret key."""
        settings = Settings(environment="test", secret_key="s" * 40, vault_keys="")
        vault = get_vault(settings)
        assert vault.current_key_id == DERIVED_KEY_ID
        assert vault.open(vault.seal(PHOTO, reference="EV-D"), reference="EV-D") == PHOTO

    def test_derived_key_depends_on_the_secret(self) -> None:
        """Another secret derives another key: its files do not open."""
        one = get_vault(Settings(environment="test", secret_key="a" * 40))
        other = get_vault(Settings(environment="test", secret_key="b" * 40))
        with pytest.raises(VaultError, match="integrity check"):
            other.open(one.seal(PHOTO, reference="EV-D"), reference="EV-D")

    def test_configured_keys_are_used(self) -> None:
        """Configured keys replace the derived one; the first encrypts."""
        vault = get_vault(Settings(environment="test", vault_keys=f"{key_spec('k9')},{key_spec('k8')}"))
        assert vault.current_key_id == "k9"

    def test_production_never_derives_a_key(self) -> None:
        """Production settings built past validation still get no derived key."""
        settings = production(key_spec("k1")).model_copy(update={"vault_keys": ""})
        with pytest.raises(VaultMisconfigured, match="production"):
            get_vault(settings)
