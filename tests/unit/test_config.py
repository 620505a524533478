"""Settings.from_env: every setting read from a plain mapping (the environment is never touched)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iii_stream.config import (
    AUTH_FAIL_OPEN,
    AUTH_FUNCTION,
    BROADCAST_CONCURRENCY,
    CONNECTIONS_ENDPOINT,
    CONNECTIONS_TABLE,
    ITEMS_TABLE,
    JOIN_FAIL_OPEN,
    MAX_MESSAGE_BYTES,
    TRIGGER_CACHE_SECONDS,
    TRIGGERS_TABLE,
    Settings,
    SettingsError,
)

BASE = {ITEMS_TABLE: "items"}
FLAGS = [(AUTH_FAIL_OPEN, "auth_fail_open"), (JOIN_FAIL_OPEN, "join_fail_open")]
TRUE_WORDS = ["1", "true", "yes", "on"]
FALSE_WORDS = ["0", "false", "no", "off", ""]
# (variable, field, default, minimum)
WHOLE_NUMBERS = [
    (TRIGGER_CACHE_SECONDS, "trigger_cache_seconds", 10, 0),
    (BROADCAST_CONCURRENCY, "broadcast_concurrency", 128, 1),
    (MAX_MESSAGE_BYTES, "max_message_bytes", 131072, 1),
]
TEXT_SETTINGS = [
    (CONNECTIONS_TABLE, "connections_table"),
    (CONNECTIONS_ENDPOINT, "connections_endpoint"),
    (AUTH_FUNCTION, "auth_function"),
    (TRIGGERS_TABLE, "triggers_table"),
]
FEW = settings(max_examples=50, deadline=None)
PADDING = st.text(alphabet=" \t\n\r\x0b\x0c", max_size=3)


def env(**values: str) -> dict[str, str]:
    return {**BASE, **values}


# --- the required items table ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mapping",
    [
        {},
        {CONNECTIONS_TABLE: "c", TRIGGERS_TABLE: "t", AUTH_FAIL_OPEN: "true"},
        {"items_table": "lower-case is another variable"},
    ],
)
def test_missing_items_table_is_a_settings_error_naming_it(mapping: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(mapping)
    assert ITEMS_TABLE in str(raised.value)
    assert "is not set" in str(raised.value)


def test_the_missing_table_is_reported_before_a_malformed_setting() -> None:
    with pytest.raises(SettingsError, match=ITEMS_TABLE):
        Settings.from_env({AUTH_FAIL_OPEN: "maybe", BROADCAST_CONCURRENCY: "-1"})


def test_settings_error_reads_as_its_message_not_as_a_quoted_key() -> None:
    assert str(SettingsError("A plain message.")) == "A plain message."


# --- every setting ----------------------------------------------------------------------------------------------------


def test_only_the_items_table_gives_every_default() -> None:
    assert Settings.from_env({ITEMS_TABLE: "items"}) == Settings(
        items_table="items",
        connections_table="",
        connections_endpoint="",
        auth_function="",
        auth_fail_open=False,
        triggers_table="",
        join_fail_open=False,
        trigger_cache_seconds=10,
        broadcast_concurrency=128,
        max_message_bytes=131072,
    )


def test_every_setting_is_read_from_the_mapping() -> None:
    mapping = {
        ITEMS_TABLE: "stack-ItemsTable-1",
        CONNECTIONS_TABLE: "stack-ConnectionsTable-2",
        CONNECTIONS_ENDPOINT: "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
        AUTH_FUNCTION: "arn:aws:lambda:us-east-1:123456789012:function:auth",
        AUTH_FAIL_OPEN: "true",
        TRIGGERS_TABLE: "stack-TriggersTable-3",
        JOIN_FAIL_OPEN: "yes",
        TRIGGER_CACHE_SECONDS: "0",
        BROADCAST_CONCURRENCY: "16",
        MAX_MESSAGE_BYTES: "1024",
        "UNRELATED": "ignored",
    }
    assert Settings.from_env(mapping) == Settings(
        items_table="stack-ItemsTable-1",
        connections_table="stack-ConnectionsTable-2",
        connections_endpoint="https://abc123.execute-api.us-east-1.amazonaws.com/prod",
        auth_function="arn:aws:lambda:us-east-1:123456789012:function:auth",
        auth_fail_open=True,
        triggers_table="stack-TriggersTable-3",
        join_fail_open=True,
        trigger_cache_seconds=0,
        broadcast_concurrency=16,
        max_message_bytes=1024,
    )


@pytest.mark.parametrize(("name", "field"), [(ITEMS_TABLE, "items_table"), *TEXT_SETTINGS])
@FEW
@given(value=st.text())
def test_text_settings_are_taken_verbatim(name: str, field: str, value: str) -> None:
    assert getattr(Settings.from_env(env(**{name: value})), field) == value


def test_the_mapping_is_only_read() -> None:
    mapping = env(AUTH_FAIL_OPEN=" On ", BROADCAST_CONCURRENCY="4")
    before = dict(mapping)
    Settings.from_env(mapping)
    assert mapping == before


# --- flags ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "field"), FLAGS)
def test_a_missing_flag_is_false(name: str, field: str) -> None:
    assert getattr(Settings.from_env(BASE), field) is False


@pytest.mark.parametrize(("name", "field"), FLAGS)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *((word, True) for word in TRUE_WORDS),
        *((word, False) for word in FALSE_WORDS),
        ("TRUE", True),
        ("True", True),
        (" Yes ", True),
        ("ON\n", True),
        ("\t1", True),
        ("FALSE", False),
        ("No", False),
        (" off ", False),
        ("  ", False),
        ("\n", False),
    ],
)
def test_flag_words(name: str, field: str, raw: str, expected: bool) -> None:
    assert getattr(Settings.from_env(env(**{name: raw})), field) is expected


def _any_case(word: str, upper: list[bool]) -> str:
    return "".join(c.upper() if up else c for c, up in zip(word, upper + [False] * len(word), strict=False))


@pytest.mark.parametrize(("name", "field"), FLAGS)
@FEW
@given(
    word_expected=st.sampled_from([(w, True) for w in TRUE_WORDS] + [(w, False) for w in FALSE_WORDS]),
    upper=st.lists(st.booleans(), max_size=5),
    before=PADDING,
    after=PADDING,
)
def test_flags_ignore_case_and_surrounding_whitespace(
    name: str, field: str, word_expected: tuple[str, bool], upper: list[bool], before: str, after: str
) -> None:
    word, expected = word_expected
    raw = before + _any_case(word, upper) + after
    assert getattr(Settings.from_env(env(**{name: raw})), field) is expected


@pytest.mark.parametrize(("name", "field"), FLAGS)
@pytest.mark.parametrize(
    "raw", ["maybe", "2", "-1", "t", "f", "y", "n", "enabled", "none", "null", "0.0", "true!", "o n"]
)
def test_a_bad_flag_is_a_settings_error_naming_the_variable_and_the_value(name: str, field: str, raw: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env(**{name: raw}))
    message = str(raised.value)
    assert name in message
    assert repr(raw) in message
    assert "true or false" in message


@pytest.mark.parametrize(("name", "field"), FLAGS)
@FEW
@given(raw=st.text().filter(lambda raw: raw.strip().lower() not in {*TRUE_WORDS, *FALSE_WORDS}))
def test_anything_but_a_flag_word_is_a_settings_error(name: str, field: str, raw: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env(**{name: raw}))
    # The message quotes the value as compared: stripped and lower-cased.
    assert name in str(raised.value)
    assert repr(raw.strip().lower()) in str(raised.value)


# --- whole numbers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
def test_a_missing_whole_number_takes_its_default(name: str, field: str, default: int, minimum: int) -> None:
    assert getattr(Settings.from_env(BASE), field) == default
    assert getattr(Settings(items_table="items"), field) == default  # the dataclass agrees with from_env


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
def test_the_minimum_itself_is_accepted(name: str, field: str, default: int, minimum: int) -> None:
    assert getattr(Settings.from_env(env(**{name: str(minimum)})), field) == minimum


def test_the_trigger_cache_may_be_switched_off_with_zero() -> None:
    assert Settings.from_env(env(TRIGGER_CACHE_SECONDS="0")).trigger_cache_seconds == 0


@pytest.mark.parametrize("name", [BROADCAST_CONCURRENCY, MAX_MESSAGE_BYTES])
@pytest.mark.parametrize("raw", ["0", "00"])
def test_zero_is_below_the_minimum_of_the_others(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env(**{name: raw}))
    assert str(raised.value) == f"{name} must be a whole number of at least 1, got {raw!r}."


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
@pytest.mark.parametrize(("raw", "expected"), [("7", 7), ("007", 7), ("65536", 65536), ("10" * 12, int("10" * 12))])
def test_whole_numbers_are_parsed(name: str, field: str, default: int, minimum: int, raw: str, expected: int) -> None:
    assert getattr(Settings.from_env(env(**{name: raw})), field) == expected


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
@FEW
@given(data=st.data())
def test_any_whole_number_from_the_minimum_up_is_read_back(
    name: str, field: str, default: int, minimum: int, data: st.DataObject
) -> None:
    value = data.draw(st.integers(min_value=minimum, max_value=10**30))
    assert getattr(Settings.from_env(env(**{name: str(value)})), field) == value


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
@pytest.mark.parametrize(
    "raw",
    [
        "",  # set but empty is not the default (unlike a flag, where empty is false)
        " ",
        " 5",
        "5 ",
        "5\n",
        "-1",
        "-0",
        "+5",
        "1.5",
        "1e3",
        "ten",
        "0x10",
        "1_000",
        "1,000",
        "²",  # a Unicode digit that int() refuses
        "1²",
        "①",
        "1" * 5000,  # more digits than int() converts
    ],
)
def test_a_malformed_whole_number_is_a_settings_error_naming_the_variable_and_the_value(
    name: str, field: str, default: int, minimum: int, raw: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env(**{name: raw}))
    assert str(raised.value) == f"{name} must be a whole number of at least {minimum}, got {raw!r}."


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
@FEW
@given(value=st.integers(max_value=-1))
def test_negative_numbers_are_settings_errors(name: str, field: str, default: int, minimum: int, value: int) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env(**{name: str(value)}))


@pytest.mark.parametrize(("name", "field", "default", "minimum"), WHOLE_NUMBERS)
@FEW
@given(raw=st.text().filter(lambda raw: not raw.isdecimal()))
def test_anything_that_is_not_all_digits_is_a_settings_error(
    name: str, field: str, default: int, minimum: int, raw: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env(**{name: raw}))
    assert name in str(raised.value)
    assert repr(raw) in str(raised.value)


# --- require ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "field"), [(ITEMS_TABLE, "items_table"), *TEXT_SETTINGS])
def test_require_returns_a_present_setting(name: str, field: str) -> None:
    settings_ = Settings.from_env({**BASE, name: f"value-of-{field}"})
    assert settings_.require(name) == f"value-of-{field}"


@pytest.mark.parametrize(("name", "field"), TEXT_SETTINGS)
@pytest.mark.parametrize("mapping", [BASE, env(**{"CONNECTIONS_TABLE": ""}), env(**{"AUTH_FUNCTION": ""})])
def test_require_of_a_missing_or_empty_setting_is_a_settings_error_naming_it(
    name: str, field: str, mapping: dict[str, str]
) -> None:
    settings_ = Settings.from_env(mapping)
    with pytest.raises(SettingsError) as raised:
        settings_.require(name)
    assert str(raised.value) == f"The environment variable {name} is not set."
