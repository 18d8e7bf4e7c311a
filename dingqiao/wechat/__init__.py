"""The only package that talks to WeChat (and the only one that imports wechatpy).

Callers get plain values and ``WeChatError`` subclasses carrying a Chinese message fit for the page.
``WeChatSettings.base_url`` points every wechatpy client at another host: the fake WeChat server in tests.
"""
import re
from dataclasses import dataclass


REFUND_NOTIFY_PATH = "/wechat/pay/refund-notify"  # the route of blueprints.wechat.refund_notify
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
    mch_key: str = ""
    mch_cert_path: str = ""  # apiclient_cert.pem: refunds and transfers need the merchant certificate
    mch_key_path: str = ""  # apiclient_key.pem
    base_url: str = ""  # empty: WeChat's real hosts
    timeout_seconds: float = 5.0
    server_ip: str = ""  # this server's public address: the spbill_create_ip of transfers (WECHAT_SERVER_IP)
    refund_notify_url: str = ""  # where WeChat posts refund results; empty: no notify (the cron asks instead)

    @classmethod
    def from_config(cls, config) -> "WeChatSettings":
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
            refund_notify_url=config["PUBLIC_BASE_URL"] + REFUND_NOTIFY_PATH if config["PUBLIC_BASE_URL"] else "",
        )


def pay_gateway(config):
    """The WeChat Pay gateway for this app: the real merchant, or in demo mode a local demo merchant whose
    key signs the "模拟支付" notify — so demo and production share the one notify code path."""
    from .pay import DEMO_SETTINGS, PayGateway

    return PayGateway(DEMO_SETTINGS if config["DINGQIAO_DEMO"] else WeChatSettings.from_config(config))


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
