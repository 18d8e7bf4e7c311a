"""Demo mode's merchant on WeChat Pay API v3: a key pair for "the merchant" and one for "WeChat Pay", generated
once into the instance folder (files mode 0600), so the demo's 模拟支付 posts a notify that the real v3 code
verifies and decrypts — the demo runs the path production runs, with keys that can move no real money."""
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import WeChatSettings

DEMO_APP_ID = "wxdemo000000000000"
DEMO_MCH_ID = "1900000109"
DEMO_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092025DEMO00000000"
FOLDER = "demo-wechatpay"


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


def demo_settings(instance_path: str) -> tuple[WeChatSettings, str]:
    """(the demo merchant's v3 settings, the private half of its "WeChat Pay" key)."""
    folder = Path(instance_path) / FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    merchant_pem = _private_pem(folder / "merchant_key.pem")
    wechatpay_pem = _private_pem(folder / "wechatpay_key.pem")
    apiv3_path = folder / "apiv3_key"
    if not apiv3_path.exists():
        _write_private(apiv3_path, secrets.token_hex(16).encode())
    public_pem = serialization.load_pem_private_key(wechatpay_pem.encode(), None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    settings = WeChatSettings(
        app_id=DEMO_APP_ID, app_secret="", mch_id=DEMO_MCH_ID, mch_serial_no="DEMO0000000000000000000000000000000000",
        mch_private_key_pem=merchant_pem, apiv3_key=apiv3_path.read_text().strip(), pay_public_key_pem=public_pem,
        pay_public_key_id=DEMO_PUBLIC_KEY_ID,
    )
    return settings, wechatpay_pem


def demo_gateway(instance_path: str):
    from .pay_v3 import DemoSigner, PayGatewayV3

    settings, wechatpay_pem = demo_settings(instance_path)
    return PayGatewayV3(settings, demo_signer=DemoSigner(wechatpay_pem))
