"""The only package that talks to WeChat (and the only one that imports wechatpy).

Callers get plain values and ``WeChatError`` subclasses carrying a Chinese message fit for the page.
``WeChatSettings.base_url`` points every wechatpy client at another host: the fake WeChat server in tests.
"""
import re
from dataclasses import dataclass


REFUND_NOTIFY_PATH = "/wechat/pay/refund-notify"  # the route of blueprints/wechat/routes.py: refund_notify
# API v3's notify addresses (blueprints/wechat/routes.py): pay, refund and 商家转账 results
V3_PAY_NOTIFY_PATH = "/wechat/pay/v3/notify"
V3_REFUND_NOTIFY_PATH = "/wechat/pay/v3/refund-notify"
TRANSFER_NOTIFY_PATH = "/wechat/pay/v3/transfer-notify"
CREDENTIAL_IN_URL = re.compile(r"((?:secret|access_token|ticket|code|key)=)[^&\s'\"]+")


class WeChatError(Exception):
    """WeChat refused or could not be reached. ``message`` is safe to show to the user."""

    def __init__(self, message: str, *, errcode: int | None = None, detail: str = ""):
        # The detail ends up in logs and in outbox rows an admin reads; a requests error names the whole URL,
        # and WeChat's token URL carries the app secret (and others carry tokens and codes) in its query.
        super().__init__(CREDENTIAL_IN_URL.sub(r"\1…", detail or message))
        self.message = message
        self.errcode = errcode


@dataclass(frozen=True)
class WeChatSettings:
    app_id: str
    app_secret: str
    token: str = ""
    mch_id: str = ""
    mch_key: str = ""  # API v2 key (32 characters): v2 signatures and the v2 refund notify's encryption
    mch_cert_path: str = ""  # apiclient_cert.pem: v2 refunds and transfers need the merchant certificate
    mch_key_path: str = ""  # apiclient_key.pem
    base_url: str = ""  # empty: WeChat's real hosts
    timeout_seconds: float = 5.0
    server_ip: str = ""  # this server's public address: the spbill_create_ip of transfers (WECHAT_SERVER_IP)
    refund_notify_url: str = ""  # where WeChat posts refund results; empty: no notify (the cron asks instead)
    # --- API v3 -----------------------------------------------------------------------------------------
    mch_serial_no: str = ""  # the serial number of the merchant API certificate (商户API证书序列号)
    mch_private_key_pem: str = ""  # the contents of apiclient_key.pem: signs every v3 request
    apiv3_key: str = ""  # APIv3 密钥 (32 characters): decrypts notifies
    pay_public_key_pem: str = ""  # 微信支付公钥 (pub_key.pem): verifies answers and notifies
    pay_public_key_id: str = ""  # its id, PUB_KEY_ID_…
    platform_cert_dir: str = ""  # older merchants: platform certificates are fetched into (and read from) here
    pay_notify_url: str = ""  # v3 pay notifies
    transfer_notify_url: str = ""  # 商家转账 results
    transfer_scene_id: str = "1005"  # 转账场景: 1005 佣金报酬, 1000 现金营销
    transfer_report_values: tuple[str, ...] = ()  # the scene's 报备 items, in its order (1005: 岗位类型, 报酬说明)
    transfer_perception: str = ""  # 用户收款感知; empty: the scene's usual one

    @classmethod
    def from_config(cls, config, api: str = "v2") -> "WeChatSettings":
        """The merchant as ``api`` (v2 or v3) talks to it; notify addresses are the api's own."""
        base = config["PUBLIC_BASE_URL"]
        v3 = api == "v3"
        return cls(
            app_id=config["WECHAT_APP_ID"],
            app_secret=config["WECHAT_APP_SECRET"],
            token=config["WECHAT_TOKEN"],
            mch_id=config["WECHAT_MCH_ID"],
            mch_key=config["WECHAT_MCH_KEY"],
            mch_cert_path=config.get("WECHAT_MCH_CERT_PATH", ""),
            mch_key_path=config.get("WECHAT_MCH_KEY_PATH", ""),
            base_url=config["WECHAT_BASE_URL"],
            server_ip=config["WECHAT_SERVER_IP"],
            refund_notify_url=base + (V3_REFUND_NOTIFY_PATH if v3 else REFUND_NOTIFY_PATH) if base else "",
            mch_serial_no=config.get("WECHAT_MCH_SERIAL_NO", "") if v3 else "",
            mch_private_key_pem=_read(config.get("WECHAT_MCH_KEY_PATH", "")) if v3 else "",
            apiv3_key=config.get("WECHAT_APIV3_KEY", "") if v3 else "",
            pay_public_key_pem=_read(config.get("WECHAT_PAY_PUBLIC_KEY_PATH", "")) if v3 else "",
            pay_public_key_id=config.get("WECHAT_PAY_PUBLIC_KEY_ID", "") if v3 else "",
            platform_cert_dir=config.get("WECHAT_PAY_PLATFORM_CERT_DIR", "") if v3 else "",
            pay_notify_url=base + V3_PAY_NOTIFY_PATH if base and v3 else "",
            transfer_notify_url=base + TRANSFER_NOTIFY_PATH if base and v3 else "",
            transfer_scene_id=config.get("WECHAT_TRANSFER_SCENE_ID", "1005"),
            transfer_report_values=tuple(config.get("WECHAT_TRANSFER_REPORT", ("推广员", "推广佣金"))),
            transfer_perception=config.get("WECHAT_TRANSFER_PERCEPTION", ""),
        )


def _read(path: str) -> str:
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def talks_to_wechat(config) -> bool:
    """False only in demo mode without the demo's simulated WeChat (``wechat.simulator``): nothing to sign JS-SDK
    configs with or send messages through. ``config.validate`` lets a demo hold WeChat settings only for the demo's
    own account on this machine, so an app id in demo mode is the simulator's."""
    return not config["DINGQIAO_DEMO"] or bool(config["WECHAT_APP_ID"])


def v3_configured(config) -> bool:
    """Every setting API v3 needs is there (checked for sense at start by ``config.validate``)."""
    keys = config.get("WECHAT_PAY_PUBLIC_KEY_PATH") and config.get("WECHAT_PAY_PUBLIC_KEY_ID")
    return bool(config.get("WECHAT_MCH_ID") and config.get("WECHAT_MCH_SERIAL_NO") and config.get("WECHAT_MCH_KEY_PATH")
                and config.get("WECHAT_APIV3_KEY") and (keys or config.get("WECHAT_PAY_PLATFORM_CERT_DIR")))


@dataclass(frozen=True)
class PayGateways:
    """The merchant's gateways: ``current`` takes new payments and pays out (WECHAT_PAY_API); ``v2`` stays for
    the orders a merchant took through API v2 before switching (refunded through it while its key is set)."""
    current: object  # PayGatewayV3 or PayGateway
    v2: object | None
    v3: object | None

    def for_api(self, api: str | None, *, strict: bool = False):
        """The gateway for money taken through ``api``. When that api is not configured: the current one (a refund
        works through either API at WeChat), or None when ``strict`` (a payout's transfer exists only in its own)."""
        chosen = self.v3 if api == "v3" else self.v2 if api == "v2" else None
        return chosen if chosen is not None or strict else self.current

    def __getattr__(self, name: str):
        return getattr(self.current, name)  # everything else is the current gateway's (api, settings, calls)


def pay_gateways(app) -> PayGateways:
    """The app's WeChat Pay gateways, built once per process (v3 in platform-certificate mode fetches the
    certificates when built). Demo mode has a local demo merchant on API v3, whose key pair lives in the instance
    folder, so 模拟支付 posts a notify through the same v3 verify-and-decrypt path production runs; with the
    simulated WeChat running, refunds and payouts go to it."""
    key = tuple(str(app.config.get(name, "")) for name in PAY_SETTINGS)
    cached = app.extensions.get("dingqiao_pay")
    if cached is None or cached[0] != key:  # built anew when a setting changed (tests change them)
        cached = app.extensions["dingqiao_pay"] = (key, _build_gateways(app.config, app.instance_path))
    return cached[1]


PAY_SETTINGS = ("DINGQIAO_DEMO", "PUBLIC_BASE_URL", "WECHAT_APP_ID", "WECHAT_MCH_ID", "WECHAT_MCH_KEY",
                "WECHAT_MCH_CERT_PATH", "WECHAT_MCH_KEY_PATH", "WECHAT_BASE_URL", "WECHAT_SERVER_IP", "WECHAT_PAY_API",
                "WECHAT_MCH_SERIAL_NO", "WECHAT_APIV3_KEY", "WECHAT_PAY_PUBLIC_KEY_PATH", "WECHAT_PAY_PUBLIC_KEY_ID",
                "WECHAT_PAY_PLATFORM_CERT_DIR", "WECHAT_TRANSFER_SCENE_ID", "WECHAT_TRANSFER_REPORT",
                "WECHAT_TRANSFER_PERCEPTION")


def _build_gateways(config, instance_path: str) -> PayGateways:
    from .pay import PayGateway
    from .pay_v3 import PayGatewayV3

    if config["DINGQIAO_DEMO"]:
        from .demo import demo_gateway

        v3 = demo_gateway(instance_path, config)
        return PayGateways(current=v3, v2=None, v3=v3)
    has_v2 = config["WECHAT_MCH_KEY"] or not v3_configured(config)  # no merchant at all: v2's calls fail politely
    v2 = PayGateway(WeChatSettings.from_config(config, "v2")) if has_v2 else None
    v3 = PayGatewayV3(WeChatSettings.from_config(config, "v3")) if v3_configured(config) else None
    current = v3 if config.get("WECHAT_PAY_API", "v3") == "v3" and v3 is not None else v2
    return PayGateways(current=current, v2=v2, v3=v3)


def transfer_merchant(config) -> dict[str, str]:
    """The ids ``requestMerchantTransfer`` names on the member's phone (no gateway needed to show the wallet)."""
    if config["DINGQIAO_DEMO"]:
        from .demo import DEMO_APP_ID, DEMO_MCH_ID

        return {"mch_id": DEMO_MCH_ID, "app_id": DEMO_APP_ID}
    return {"mch_id": config["WECHAT_MCH_ID"], "app_id": config["WECHAT_APP_ID"]}


def pay_gateway(app_or_config):
    """The gateway that takes new payments (see ``pay_gateways``). Given a config rather than an app (older tests),
    builds it without caching."""
    if hasattr(app_or_config, "extensions"):
        return pay_gateways(app_or_config).current
    return _build_gateways(app_or_config, app_or_config.get("INSTANCE_PATH", "instance")).current


def js_sdk(app):
    """The app's one JS-SDK signer. Its token/ticket cache is in Redis when WECHAT_SESSION_REDIS_URL is set
    (so gunicorn workers share one token), else in this process's memory."""
    from .jssdk import JsSdk

    signer = app.extensions.get("dingqiao_jssdk")
    if signer is None:
        from wechatpy.session.memorystorage import MemoryStorage

        storage = MemoryStorage()  # one app per worker process: one cache per process
        if app.config["WECHAT_SESSION_REDIS_URL"]:
            import redis
            from wechatpy.session.redisstorage import RedisStorage

            storage = RedisStorage(redis.Redis.from_url(app.config["WECHAT_SESSION_REDIS_URL"]), prefix="dingqiao")
        signer = app.extensions["dingqiao_jssdk"] = JsSdk(WeChatSettings.from_config(app.config), storage)
    return signer
