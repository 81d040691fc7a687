"""Config.from_env: the only reader of the environment."""
from pathlib import Path

import pytest

from videoflix.platform.config import ENV_VARS, Config, ConfigError


def test_defaults_derive_public_and_frontend_urls():
    config = Config.from_env({"VIDEOFLIX_PORT": "9000"})
    assert config.public_url == "http://127.0.0.1:9000"
    assert config.frontend_url == config.public_url
    assert config.access_token_minutes == 30 and config.refresh_token_days == 7


def test_values_are_parsed():
    config = Config.from_env({"VIDEOFLIX_COOKIE_SECURE": "yes", "VIDEOFLIX_CORS_ORIGINS": "http://a.b, http://c.d/",
                              "FRONTEND_URL": "http://127.0.0.1:5500/", "MAX_UPLOAD_BYTES": "1000"})
    assert config.cookie_secure is True
    assert config.cors_origins == ("http://a.b", "http://c.d")
    assert config.frontend_url == "http://127.0.0.1:5500"
    assert config.max_upload_bytes == 1000


@pytest.mark.parametrize("var, value", [("VIDEOFLIX_PORT", "eighty"), ("VIDEOFLIX_PORT", "70000"),
                                        ("VIDEOFLIX_COOKIE_SECURE", "maybe"), ("MAX_UPLOAD_BYTES", "-1"),
                                        ("FRONTEND_URL", "not a url"), ("TRANSCODE_WORKERS", "0"),
                                        ("VIDEOFLIX_X264_PRESET", "turbo")])
def test_bad_value_names_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        Config.from_env({var: value})


def test_x264_preset_is_one_of_x264s_names():
    assert Config().x264_preset == "veryfast"
    assert Config.from_env({"VIDEOFLIX_X264_PRESET": " UltraFast "}).x264_preset == "ultrafast"


def test_readme_documents_every_variable():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [var for _, var, _, _ in ENV_VARS if f"`{var}`" not in readme]
    assert missing == []
