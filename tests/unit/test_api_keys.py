"""API_KEYS: its format, its errors, the scopes, and the production rule."""

from __future__ import annotations

import pytest

from sms_dispatch.api.security import Keyring, check_api_keys
from sms_dispatch.api_keys import Scope, parse_api_keys
from sms_dispatch.config import Settings, load_settings
from sms_dispatch.errors import ConfigError


def test_parse_reads_keys_and_scopes() -> None:
    """KEY:SCOPE entries separated by commas, blanks around entries ignored."""
    assert parse_api_keys("ops-key-1:operate, ro-key-1:read") == {
        "ops-key-1": Scope.OPERATE,
        "ro-key-1": Scope.READ,
    }


def test_parse_splits_on_the_last_colon() -> None:
    """A key may itself contain colons: the last one separates the scope."""
    assert parse_api_keys("a:b:c:read") == {"a:b:c": Scope.READ}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("key-without-scope", "not KEY:SCOPE"),
        (":read", "not KEY:SCOPE"),
        ("k1:write", "scope 'write'"),
        ("k1:read,,k2:read", "entry 2 is empty"),
        ("k 1:read", "blanks"),
        ("k1:read,k1:operate", "repeats a key"),
    ],
)
def test_parse_rejects_bad_entries(raw: str, why: str) -> None:
    """Every malformed entry is refused with a reason naming the entry."""
    with pytest.raises(ValueError, match=why):
        parse_api_keys(raw)


def test_bad_api_keys_stop_start_up_naming_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad API_KEYS is a ConfigError naming API_KEYS that does not echo the keys."""
    monkeypatch.setenv("API_KEYS", "very-secret-key:admin")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "API_KEYS" in caught.value.message
    assert "very-secret-key" not in caught.value.message


def test_operate_allows_everything_read_only_reading() -> None:
    """An operate key may read and operate; a read key may only read."""
    assert Scope.OPERATE.allows(Scope.READ) and Scope.OPERATE.allows(Scope.OPERATE)
    assert Scope.READ.allows(Scope.READ) and not Scope.READ.allows(Scope.OPERATE)


def test_keyring_finds_the_scope_of_a_known_key_only() -> None:
    """scope_of answers the key's scope, None for an unknown key or a prefix of a real one."""
    keyring = Keyring({"operate-key-0001": Scope.OPERATE, "read-key-0001": Scope.READ})
    assert keyring.scope_of("operate-key-0001") is Scope.OPERATE
    assert keyring.scope_of("read-key-0001") is Scope.READ
    assert keyring.scope_of("read-key-000") is None
    assert keyring.scope_of("") is None
    assert not keyring.is_open and Keyring({}).is_open


def test_production_without_keys_is_refused() -> None:
    """APP_ENV=production without API_KEYS is a ConfigError naming API_KEYS."""
    with pytest.raises(ConfigError, match="API_KEYS"):
        check_api_keys(Settings(APP_ENV="production"))


def test_production_with_keys_and_development_without_are_allowed() -> None:
    """Production with keys, and development without, both pass the check."""
    check_api_keys(Settings(APP_ENV="production", API_KEYS="k-0123456789abcdef:operate"))
    check_api_keys(Settings(APP_ENV="development"))
