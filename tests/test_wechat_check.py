"""`flask wechat-check`: the go-live check against the fake WeChat — each wrong setting named, in both languages."""
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def run(app):
    runner = app.test_cli_runner(mix_stderr=False) if _mixes() else app.test_cli_runner()
    return runner.invoke(args=["wechat-check"])


def _mixes() -> bool:
    import inspect

    from click.testing import CliRunner

    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def output(result) -> str:
    return result.output + (getattr(result, "stderr", "") if _mixes() else "")


@pytest.fixture
def live_config(app):
    app.config.update(WECHAT_PAY_API="v3", PUBLIC_BASE_URL="https://shop.example.com")
    return app.config


def test_a_shop_set_up_right_passes(app, live_config):
    result = run(app)
    assert result.exit_code == 0, output(result)
    text = output(result)
    assert "access_token" in text and "JS-SDK ticket" in text
    assert "微信支付 v3：商户号、证书序列号与密钥正确" in text and "WeChat Pay v2" in text
    assert "✗" not in text


def test_a_wrong_app_secret_is_named(app, live_config):
    live_config["WECHAT_APP_SECRET"] = "not-the-secret"
    result = run(app)
    assert result.exit_code == 1
    assert "WECHAT_APP_SECRET 不正确" in output(result) and "WECHAT_APP_SECRET is wrong" in output(result)


def test_a_notify_url_that_is_not_https_is_named(app, live_config):
    live_config.update(PUBLIC_BASE_URL="http://shop.example.com")
    result = run(app)
    assert result.exit_code == 1
    assert "PUBLIC_BASE_URL 必须是 https://" in output(result)


def test_a_private_key_of_another_merchant_is_refused_by_wechat_pay(app, live_config, tmp_path):
    stray = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other_key.pem"
    path.write_bytes(stray.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    live_config["WECHAT_MCH_KEY_PATH"] = str(path)
    result = run(app)
    assert result.exit_code == 1
    assert "签名被拒" in output(result) and "WECHAT_MCH_SERIAL_NO or private key mismatch" in output(result)


def test_a_wrong_wechat_pay_public_key_is_named(app, live_config, tmp_path):
    stray = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path = tmp_path / "wrong_pub_key.pem"
    path.write_bytes(stray.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    live_config["WECHAT_PAY_PUBLIC_KEY_PATH"] = str(path)
    result = run(app)
    assert result.exit_code == 1
    assert "应答无法验证" in output(result)


def test_a_wrong_v2_key_is_named_beside_a_working_v3(app, live_config):
    live_config["WECHAT_MCH_KEY"] = "0" * 32
    result = run(app)
    assert result.exit_code == 1
    text = output(result)
    assert "微信支付 v3：商户号、证书序列号与密钥正确" in text
    assert "微信支付 v2" in text and "✗ 微信支付 v2" in text


def test_no_merchant_is_said_plainly(app, live_config):
    live_config.update(WECHAT_MCH_ID="")
    result = run(app)
    assert result.exit_code == 1
    assert "未设置 WECHAT_MCH_ID" in output(result)
