"""Settings: defaults, file and environment sources, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxstream.errors import ConfigError
from cxstream.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_defaults_build_an_engine_config() -> None:
    cfg = Settings().engine_config()
    assert cfg.inactivity.days == 14 and cfg.inactivity.escalate_days == 28
    assert cfg.allowed_lateness_seconds == 300


def test_environment_overrides_file_which_overrides_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "cx.toml"
    conf.write_text('topic_prefix = "fromfile"\ninactivity_days = 10\n'
                    '[segments.enterprise]\ninactivity_days = 21\n')
    s = Settings.from_env({"CXSTREAM_INACTIVITY_DAYS": "9",
                           "CXSTREAM_METRIC_WINDOWS_SECONDS": "[60, 3600]"}, config_file=conf)
    assert s.topic_prefix == "fromfile"
    assert s.inactivity_days == 9
    assert s.metric_windows_seconds == (60, 3600)
    assert s.engine_config().inactivity_for("enterprise").days == 21
    assert s.engine_config().inactivity_for("enterprise").escalate_days == 42
    assert s.engine_config().inactivity_for("other").days == 9


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    conf = tmp_path / "cx.toml"
    conf.write_text("web_port = 7000\n")
    assert Settings.from_env({"CXSTREAM_CONFIG": str(conf)}).web_port == 7000


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CXSTREAM_WEB_PORT": "70000"}, "web_port (from $CXSTREAM_WEB_PORT)"),
        ({"CXSTREAM_INACTIVITY_DAYS": "-1"}, "inactivity_days (from $CXSTREAM_INACTIVITY_DAYS)"),
        ({"CXSTREAM_STORE": "redis://"}, "store"),
        ({"CXSTREAM_TOPIC_PREFIX": "bad prefix!"}, "topic_prefix"),
        ({"CXSTREAM_INACTIVITY_DAYS": "30"}, "escalate_days"),
        ({"CXSTREAM_NO_SUCH_THING": "1"}, "CXSTREAM_NO_SUCH_THING"),
    ],
)
def test_invalid_settings_stop_start_up_naming_the_field(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert needle in str(err.value)


def test_bad_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    conf = tmp_path / "cx.toml"
    conf.write_text("[segments.pro]\ninactivity_days = 0\n")
    with pytest.raises(ConfigError) as err:
        Settings.from_env({}, config_file=conf)
    assert "segments.pro.inactivity_days" in str(err.value) and str(conf) in str(err.value)
    conf.write_text("not toml = = =")
    with pytest.raises(ConfigError, match="config file"):
        Settings.from_env({}, config_file=conf)


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = DOCS.read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert missing == []
