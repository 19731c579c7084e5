"""Settings: defaults, file and environment sources, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxstream.engine.config import Profile
from cxstream.errors import ConfigError
from cxstream.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_defaults_build_an_engine_config() -> None:
    cfg = Settings().engine_config()
    assert cfg.profile == Profile()
    assert cfg.allowed_lateness_seconds == 300
    assert cfg.rolling_windows_days == (7, 28)


def test_environment_overrides_file_which_overrides_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "cx.toml"
    conf.write_text('topic_prefix = "fromfile"\nallowed_lateness_seconds = 10\n'
                    '[profile]\ninactivity_min_days = 10\n'
                    '[segments.enterprise]\ninactivity_max_days = 30\n')
    s = Settings.from_env({"CXSTREAM_ALLOWED_LATENESS_SECONDS": "9",
                           "CXSTREAM_METRIC_WINDOWS_SECONDS": "[60, 3600]"}, config_file=conf)
    assert s.topic_prefix == "fromfile"
    assert s.allowed_lateness_seconds == 9
    assert s.metric_windows_seconds == (60, 3600)
    cfg = s.engine_config()
    # A segment overrides the configured profile, not the built-in defaults.
    assert cfg.profile_for("enterprise").inactivity_min_days == 10
    assert cfg.profile_for("enterprise").inactivity_max_days == 30
    assert cfg.profile_for("other").inactivity_max_days == 21


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    conf = tmp_path / "cx.toml"
    conf.write_text("web_port = 7000\n")
    assert Settings.from_env({"CXSTREAM_CONFIG": str(conf)}).web_port == 7000


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CXSTREAM_WEB_PORT": "70000"}, "web_port (from $CXSTREAM_WEB_PORT)"),
        ({"CXSTREAM_ALLOWED_LATENESS_SECONDS": "-1"},
         "allowed_lateness_seconds (from $CXSTREAM_ALLOWED_LATENESS_SECONDS)"),
        ({"CXSTREAM_PROFILE": '{"inactivity_min_days": 40}'}, "inactivity_min_days"),
        ({"CXSTREAM_PROFILE": '{"no_such_knob": 1}'}, "no_such_knob"),
        ({"CXSTREAM_STORE": "redis://"}, "store"),
        ({"CXSTREAM_TOPIC_PREFIX": "bad prefix!"}, "topic_prefix"),
        ({"CXSTREAM_PROFILE": '{"alert_kinds": ["bogus"]}'}, "bogus"),
        ({"CXSTREAM_NO_SUCH_THING": "1"}, "CXSTREAM_NO_SUCH_THING"),
    ],
)
def test_invalid_settings_stop_start_up_naming_the_field(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert needle in str(err.value)


def test_bad_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    conf = tmp_path / "cx.toml"
    conf.write_text("[segments.pro]\ninactivity_min_days = 0\n")
    with pytest.raises(ConfigError) as err:
        Settings.from_env({}, config_file=conf)
    assert "segments.pro" in str(err.value) and "inactivity_min_days" in str(err.value)
    conf.write_text("not toml = = =")
    with pytest.raises(ConfigError, match="config file"):
        Settings.from_env({}, config_file=conf)


def test_every_setting_and_knob_is_in_the_configuration_reference() -> None:
    text = DOCS.read_text()
    names = list(Settings.model_fields) + list(Profile.knob_names())
    missing = [name for name in names if f"`{name}`" not in text]
    assert missing == []


def test_broker_and_test_variables_are_not_unknown_settings() -> None:
    env = {"CXSTREAM_HOME": "/tmp/x", "CXSTREAM_BROKER_PORT": "1", "CXSTREAM_TEST_HOME": "y"}
    assert Settings.from_env(env) == Settings()


def test_settings_survive_the_trip_through_the_environment(tmp_path: Path) -> None:
    original = Settings(api_token="s3cret", include_comments=True, data_dir=tmp_path,
                        metric_windows_seconds=(60, 3600),
                        profile={"inactivity_min_days": 10},
                        segments={"pro": {"inactivity_max_days": 30}})
    assert Settings.from_env(original.to_env()) == original
