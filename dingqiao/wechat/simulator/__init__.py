"""A simulated WeChat that ships with the app, so the demo runs every path production runs — the same HTTP clients
(wechatpy, wechatpayv3) against a local endpoint: OAuth, the JS-SDK ticket, template messages, WeChat Pay v3 with
refunds and 商家转账, the server callback. It is the tests' fake of WeChat (official_account.py, pay_v3.py,
server.py), plus what the demo needs and the tests do by hand: results that arrive by themselves
(demo_pay.py) and a console for the person giving the demo (console.py, at the simulator's own address).

Nothing in the app imports this package. Only the demo starts it (``start_demo_wechat``, from ``dingqiao demo``),
and ``config.validate`` takes the demo account's settings only in demo mode, and only on this machine.
"""
import base64
import os
import secrets

from ..demo import DEMO_APP_ID, DEMO_MCH_ID, DEMO_MCH_SERIAL_NO, DEMO_PUBLIC_KEY_ID, demo_keys
from .console import Console
from .demo_pay import DemoPayV3, Notifier
from .message_templates import messages_setting, template_schemas
from .official_account import FakeWeChat
from .pay_v3 import MerchantKeys
from .server import serve


def start_demo_wechat(instance_path: str) -> dict[str, str]:
    """Start the simulated WeChat on 127.0.0.1 (port DEMO_WECHAT_PORT, or a free one) in a daemon thread of this
    process, as WeChat for the demo merchant whose keys are kept in the instance folder (so a restart keeps them),
    and return the settings that point the app at it. The demo command puts them into the environment before the
    app is made, so gunicorn's workers inherit them."""
    keys = demo_keys(instance_path)
    public_key_path = keys.folder / "wechatpay_public.pem"
    public_key_path.write_text(keys.wechatpay_public_pem)
    app_secret, token = secrets.token_hex(16), secrets.token_hex(16)
    encoding_aes_key = base64.b64encode(secrets.token_bytes(32)).decode()[:43]  # 43 characters, as WeChat's
    wechat = FakeWeChat(app_id=DEMO_APP_ID, app_secret=app_secret, mch_id=DEMO_MCH_ID)
    merchant = MerchantKeys(keys.merchant_key_pem, DEMO_MCH_SERIAL_NO, keys.wechatpay_key_pem, DEMO_PUBLIC_KEY_ID,
                            keys.apiv3_key)
    wechat.pay_v3 = DemoPayV3(DEMO_APP_ID, DEMO_MCH_ID, merchant, Notifier())
    wechat.template_schemas.update(template_schemas())
    console = Console(wechat, token, encoding_aes_key)
    serve(wechat, port=int(os.environ.get("DEMO_WECHAT_PORT") or 0), pages=console.pages())
    return {
        "WECHAT_BASE_URL": wechat.base_url,
        "WECHAT_APP_ID": DEMO_APP_ID,
        "WECHAT_APP_SECRET": app_secret,
        "WECHAT_TOKEN": token,
        "WECHAT_ENCODING_AES_KEY": encoding_aes_key,
        "WECHAT_MESSAGES": messages_setting(),
        "WECHAT_MCH_ID": DEMO_MCH_ID,
        "WECHAT_PAY_API": "v3",
        "WECHAT_MCH_KEY_PATH": str(keys.merchant_key_path),
        "WECHAT_MCH_SERIAL_NO": DEMO_MCH_SERIAL_NO,
        "WECHAT_APIV3_KEY": keys.apiv3_key,
        "WECHAT_PAY_PUBLIC_KEY_PATH": str(public_key_path),
        "WECHAT_PAY_PUBLIC_KEY_ID": DEMO_PUBLIC_KEY_ID,
    }
