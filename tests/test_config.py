"""The app refuses unsafe settings at start-up and reads the environment as documented."""
import re

import pytest

from dingqiao import create_app
from dingqiao.config import ConfigError, normalise_database_url
from tests.conftest import make_config

AES_KEY = "k" * 43  # a well-formed EncodingAESKey: production configs with a callback token need safe mode


def test_demo_mode_with_real_wechat_credentials_refuses_to_start(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, DINGQIAO_DEMO=True, TESTING=False,
                         WECHAT_APP_SECRET="a-real-secret")
    with pytest.raises(ConfigError, match="DINGQIAO_DEMO"):
        create_app(config)
    config.update(WECHAT_APP_SECRET="", WECHAT_MCH_KEY="a-real-merchant-key")
    with pytest.raises(ConfigError, match="WECHAT_MCH_KEY"):
        create_app(config)


def test_production_without_secret_key_generates_one_into_the_instance_folder_once(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, TESTING=False, SECRET_KEY=None,
                         WECHAT_ENCODING_AES_KEY=AES_KEY)
    first = create_app(config, instance_path=str(tmp_path / "instance"))
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600  # signs every session: nobody else may read it
    assert re.fullmatch(r"[0-9a-f]{64}", first.config["SECRET_KEY"]) and key_file.read_text() == first.config["SECRET_KEY"]
    assert create_app(config, instance_path=str(tmp_path / "instance")).config["SECRET_KEY"] == first.config["SECRET_KEY"]


def test_a_short_secret_key_given_by_the_operator_still_refuses_to_start(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, TESTING=False, SECRET_KEY="short",
                         WECHAT_ENCODING_AES_KEY=AES_KEY)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(config, instance_path=str(tmp_path / "instance"))


def test_a_demo_folder_keeps_its_old_key(monkeypatch, tmp_path):
    monkeypatch.setenv("DINGQIAO_DEMO", "1")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    for name in ("SECRET_KEY", "WECHAT_APP_SECRET", "WECHAT_MCH_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "demo_secret_key").write_text("d" * 64)
    assert create_app(instance_path=str(tmp_path / "instance")).config["SECRET_KEY"] == "d" * 64


def test_production_without_wechat_app_refuses_to_start(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, TESTING=False, WECHAT_APP_ID="",
                         WECHAT_ENCODING_AES_KEY=AES_KEY)
    with pytest.raises(ConfigError, match="WECHAT_APP_ID"):
        create_app(config)


def test_environment_is_read_and_demo_gets_a_stable_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("DINGQIAO_DEMO", "1")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    for name in ("SECRET_KEY", "WECHAT_APP_SECRET", "WECHAT_MCH_KEY"):
        monkeypatch.delenv(name, raising=False)
    first = create_app(instance_path=str(tmp_path / "instance"))
    second = create_app(instance_path=str(tmp_path / "instance"))
    assert first.config["DINGQIAO_DEMO"] is True
    assert first.config["SQLALCHEMY_DATABASE_URI"].endswith("env.db")
    assert first.config["SESSION_COOKIE_SECURE"] is False  # plain-HTTP demo
    assert first.config["UPLOAD_FOLDER"] == str(tmp_path / "instance" / "uploads")
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0  # not readable by others
    assert len(first.config["SECRET_KEY"]) == 64 and first.config["SECRET_KEY"] == second.config["SECRET_KEY"]


def test_production_cookies_are_secure_by_default(monkeypatch):
    monkeypatch.delenv("DINGQIAO_DEMO", raising=False)
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    from dingqiao.config import from_environment

    assert from_environment("/tmp")["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/shop", "postgresql+psycopg://u:p@db:5432/shop"),
        ("postgresql://u@db/shop", "postgresql+psycopg://u@db/shop"),
        ("postgresql+psycopg://u@db/shop", "postgresql+psycopg://u@db/shop"),
        ("sqlite:////srv/dq.sqlite3", "sqlite:////srv/dq.sqlite3"),
    ],
)
def test_database_urls_are_normalised_to_psycopg3(given, expected):
    assert normalise_database_url(given) == expected


def test_wechat_pay_without_the_merchant_certificate_refuses_to_start(tmp_path):
    config = make_config(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, TESTING=False, WECHAT_MCH_ID="1900000109",
                         WECHAT_MCH_KEY="k" * 32, WECHAT_MCH_CERT_PATH="", WECHAT_MCH_KEY_PATH="",
                         WECHAT_ENCODING_AES_KEY=AES_KEY)
    with pytest.raises(ConfigError, match="WECHAT_MCH_CERT_PATH"):
        create_app(config)


def test_a_malformed_encoding_aes_key_is_refused_at_start(tmp_path):
    """43 characters that are not base64 of 32 bytes would make every safe-mode callback fail later."""
    import base64

    from dingqiao import create_app
    from dingqiao.config import ConfigError

    good = base64.b64encode(b"k" * 32).decode().rstrip("=")
    base = {"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/c.sqlite3"}
    create_app({**base, "WECHAT_ENCODING_AES_KEY": good})
    for bad in ("!" * 43, good[:-1], good + "A", "not json"):
        with pytest.raises(ConfigError, match="EncodingAESKey"):
            create_app({**base, "WECHAT_ENCODING_AES_KEY": bad})
    with pytest.raises(ConfigError, match="WECHAT_TEMPLATE_IDS"):
        create_app({**base, "WECHAT_TEMPLATE_IDS": "[1, 2]"})
