"""Demo mode's merchant on WeChat Pay API v3: a key pair for "the merchant" and one for "WeChat Pay", generated
once into the instance folder (files mode 0600), so the demo's 模拟支付 posts a notify that the real v3 code
verifies and decrypts — the demo runs the path production runs, with keys that can move no real money. The demo's
simulated WeChat (``wechat.simulator``) plays WeChat Pay with the same keys, so they survive its restarts."""
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import WeChatSettings, talks_to_wechat

DEMO_APP_ID = "wxdemo000000000000"  # never a real one: those are "wx" and 16 hex digits
DEMO_MCH_ID = "1900000109"
DEMO_MCH_SERIAL_NO = "DEMO0000000000000000000000000000000000"
DEMO_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092025DEMO00000000"
FOLDER = "demo-wechatpay"


@dataclass(frozen=True)
class DemoKeys:
    folder: Path
    merchant_key_pem: str  # apiclient_key.pem: the demo merchant signs its requests with it
    wechatpay_key_pem: str  # the private half of "WeChat Pay"'s public key: what only WeChat holds
    apiv3_key: str

    @property
    def merchant_key_path(self) -> Path:
        return self.folder / "merchant_key.pem"

    @property
    def wechatpay_public_pem(self) -> str:
        key = serialization.load_pem_private_key(self.wechatpay_key_pem.encode(), None)
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _private_pem(path: Path) -> str:
    """The PEM at ``path``, made first if missing (an RSA-2048 key, written 0600 in one step)."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        _write_private(path, pem)
    return path.read_text(encoding="utf-8")


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    try:
        os.link(temporary, path)  # another worker may have made it meanwhile: theirs stays
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def demo_keys(instance_path: str) -> DemoKeys:
    """The demo merchant's keys in the instance folder, made the first time."""
    folder = Path(instance_path) / FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    merchant_pem = _private_pem(folder / "merchant_key.pem")
    wechatpay_pem = _private_pem(folder / "wechatpay_key.pem")
    apiv3_path = folder / "apiv3_key"
    if not apiv3_path.exists():
        _write_private(apiv3_path, secrets.token_hex(16).encode())
    return DemoKeys(folder, merchant_pem, wechatpay_pem, apiv3_path.read_text().strip())


def demo_settings(instance_path: str) -> tuple[WeChatSettings, str]:
    """(the demo merchant's v3 settings, the private half of its "WeChat Pay" key)."""
    keys = demo_keys(instance_path)
    settings = WeChatSettings(
        app_id=DEMO_APP_ID, app_secret="", mch_id=DEMO_MCH_ID, mch_serial_no=DEMO_MCH_SERIAL_NO,
        mch_private_key_pem=keys.merchant_key_pem, apiv3_key=keys.apiv3_key,
        pay_public_key_pem=keys.wechatpay_public_pem, pay_public_key_id=DEMO_PUBLIC_KEY_ID,
    )
    return settings, keys.wechatpay_key_pem


def demo_gateway(instance_path: str, config=None):
    """The demo merchant's gateway. With the simulated WeChat's settings in ``config`` it talks to the simulator
    (refunds, payouts, queries); without, only 模拟支付's notifies, signed here, go through it."""
    from .pay_v3 import DemoSigner, PayGatewayV3

    settings, wechatpay_pem = demo_settings(instance_path)
    if config is not None and talks_to_wechat(config):
        settings = WeChatSettings.from_config(config, "v3")
    return PayGatewayV3(settings, demo_signer=DemoSigner(wechatpay_pem))
