"""Settings read from the environment.

Every setting has one source: an environment variable of the same name (or a test mapping passed to
``create_app``). ``validate`` refuses combinations that would be unsafe in production.
"""
import os
from pathlib import Path


class ConfigError(RuntimeError):
    """The configuration is unsafe or incomplete; the app refuses to start."""


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str) -> str:
    """Accept the URL forms hosting providers hand out and point them at psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def from_environment(instance_path: str) -> dict:
    demo = _flag("DINGQIAO_DEMO")
    default_db = "sqlite:///" + str(Path(instance_path) / "dingqiao.sqlite3")
    return {
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(os.environ.get("DATABASE_URL") or default_db),
        "DINGQIAO_DEMO": demo,
        # Public origin of the H5, used for OAuth redirect URIs and links in messages.
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "").rstrip("/"),
        "WECHAT_APP_ID": os.environ.get("WECHAT_APP_ID", ""),
        "WECHAT_APP_SECRET": os.environ.get("WECHAT_APP_SECRET", ""),
        "WECHAT_TOKEN": os.environ.get("WECHAT_TOKEN", ""),
        # Safe mode (安全模式) of the server callback: the 43-character EncodingAESKey; empty = plain-text mode.
        "WECHAT_ENCODING_AES_KEY": os.environ.get("WECHAT_ENCODING_AES_KEY", ""),
        # Template messages: JSON object event → template id, e.g. {"order_paid": "TmplId…"}; events without a
        # template stay in the in-app message centre only.
        "WECHAT_TEMPLATE_IDS": os.environ.get("WECHAT_TEMPLATE_IDS", "{}"),
        "WECHAT_MCH_ID": os.environ.get("WECHAT_MCH_ID", ""),
        "WECHAT_MCH_KEY": os.environ.get("WECHAT_MCH_KEY", ""),
        # The merchant API certificate (apiclient_cert.pem / apiclient_key.pem): refunds and transfers need it.
        "WECHAT_MCH_CERT_PATH": os.environ.get("WECHAT_MCH_CERT_PATH", ""),
        "WECHAT_MCH_KEY_PATH": os.environ.get("WECHAT_MCH_KEY_PATH", ""),
        # Points wechatpy at another host (the fake WeChat server in tests). Empty: WeChat's real hosts.
        "WECHAT_BASE_URL": os.environ.get("WECHAT_BASE_URL", "").rstrip("/"),
        # Shared cache for WeChat's access token and jsapi ticket across gunicorn workers (redis://…).
        "WECHAT_SESSION_REDIS_URL": os.environ.get("WECHAT_SESSION_REDIS_URL", ""),
        # Where pages load the JS-SDK from; empty: our vendored copy (WeChat's own res.wx.qq.com URL also works).
        "WECHAT_JSSDK_URL": os.environ.get("WECHAT_JSSDK_URL", ""),
        "WECHAT_OAUTH_SCOPE": os.environ.get("WECHAT_OAUTH_SCOPE", "snsapi_userinfo"),
        # Cookies are Secure unless explicitly turned off (plain-HTTP demo on a laptop).
        "SESSION_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", default=not demo),
        "WITHDRAWAL_MIN_FEN": int(os.environ.get("WITHDRAWAL_MIN_FEN", "100")),
        "WITHDRAWAL_FEE_BPS": int(os.environ.get("WITHDRAWAL_FEE_BPS", "0")),
        "WITHDRAWAL_DAILY_CAP_FEN": int(os.environ.get("WITHDRAWAL_DAILY_CAP_FEN", "500000")),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        # Pickup-code lookups and redemptions (shared by the lookup, the scanned link and the redeem button):
        # enough for a busy counter, far too few to guess 10^12 codes. A busy outlet may need more per outlet.
        "REDEEM_RATE_PER_USER": os.environ.get("REDEEM_RATE_PER_USER", "20 per minute"),
        "REDEEM_RATE_PER_OUTLET": os.environ.get("REDEEM_RATE_PER_OUTLET", "60 per minute"),
        # How many reverse proxies (nginx, a load balancer) stand in front of gunicorn and set X-Forwarded-For
        # and X-Forwarded-Proto. 0 trusts no such header: a client could forge its address and dodge rate
        # limits. Behind nginx set 1, or every client looks like 127.0.0.1 and shares one rate-limit bucket.
        "PROXY_COUNT": int(os.environ.get("PROXY_COUNT", "0")),
        # 0: a referral binding is locked for good. N: a binding that never led to a purchase may be replaced
        # by a new share link after N days.
        "BINDING_PROTECTION_DAYS": int(os.environ.get("BINDING_PROTECTION_DAYS", "0")),
        "ORDER_PAYMENT_TIMEOUT_MINUTES": int(os.environ.get("ORDER_PAYMENT_TIMEOUT_MINUTES", "15")),
        "CJK_FONT_PATH": os.environ.get("CJK_FONT_PATH", ""),
        "UPLOAD_MAX_BYTES": int(os.environ.get("UPLOAD_MAX_BYTES", str(5 * 1024 * 1024))),
        # Home-page banners and announcements are cached this long per worker process (saves clear it at once
        # in the saving process).
        "HOME_CONTENT_CACHE_SECONDS": int(os.environ.get("HOME_CONTENT_CACHE_SECONDS", "30")),
        # The shop's product lists and product details are kept this long per worker process (0: not at all):
        # prices and sold-out flags may show that much late; checkout re-checks both.
        "CATALOG_CACHE_SECONDS": int(os.environ.get("CATALOG_CACHE_SECONDS", "5")),
        # Outbox delivery: attempts before a message is marked failed for admins; the first retry waits
        # MESSAGE_RETRY_BASE_SECONDS, each next one twice as long.
        "MESSAGE_MAX_ATTEMPTS": int(os.environ.get("MESSAGE_MAX_ATTEMPTS", "6")),
        "MESSAGE_RETRY_BASE_SECONDS": int(os.environ.get("MESSAGE_RETRY_BASE_SECONDS", "30")),
        "SQLITE_BUSY_TIMEOUT_MS": int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "10000")),
    }


DEFAULTS = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_NAME": "dq_session",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": 30 * 24 * 3600,
    # The cookie is signed and sent again only when the session changes, not on every response (0.1 ms a
    # request): a session then lasts 30 days from its last change. Members log in with remember=True, so
    # their remember cookie carries them on; an admin signs in again after 30 days.
    "SESSION_REFRESH_EACH_REQUEST": False,
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session; WeChat tabs stay open for days
    "WTF_CSRF_SSL_STRICT": False,  # the Referer is often stripped inside WeChat's webview
    "MAX_CONTENT_LENGTH": 32 * 1024 * 1024,  # a message with up to six phone photos (each ≤ UPLOAD_MAX_BYTES)
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "TESTING": False,
    "ADMIN_LOGIN_RATE": "10 per minute",
    "RATELIMIT_HEADERS_ENABLED": True,
}


def validate(config) -> None:
    """Refuse to start with settings that would be unsafe for real shops and real money."""
    testing = config.get("TESTING", False)
    demo = config.get("DINGQIAO_DEMO", False)
    template_ids(config)  # raises ConfigError when malformed
    aes_key = config.get("WECHAT_ENCODING_AES_KEY", "")
    if aes_key and not _valid_aes_key(aes_key):
        raise ConfigError("WECHAT_ENCODING_AES_KEY must be the 43-character EncodingAESKey from the WeChat admin.")
    if not config.get("SECRET_KEY"):
        if not (demo or testing):
            raise ConfigError("SECRET_KEY must be set outside demo mode and tests.")
    if demo and (config.get("WECHAT_APP_SECRET") or config.get("WECHAT_MCH_KEY")):
        raise ConfigError(
            "DINGQIAO_DEMO=1 together with real WeChat credentials (WECHAT_APP_SECRET / WECHAT_MCH_KEY) "
            "would let anyone log in as any user of a real account. Turn one of them off."
        )
    if not demo and not testing:
        missing = [k for k in ("WECHAT_APP_ID", "WECHAT_APP_SECRET", "PUBLIC_BASE_URL") if not config.get(k)]
        if missing:
            raise ConfigError("Outside demo mode these settings are required: " + ", ".join(missing))
        if config.get("WECHAT_MCH_ID"):
            pem = [k for k in ("WECHAT_MCH_KEY", "WECHAT_MCH_CERT_PATH", "WECHAT_MCH_KEY_PATH") if not config.get(k)]
            if pem:
                raise ConfigError("WeChat Pay needs the API key and the merchant certificate (refunds, payouts): "
                                  + ", ".join(pem))


def template_ids(config) -> dict[str, str]:
    """WECHAT_TEMPLATE_IDS as a dict event → template id."""
    import json

    raw = config.get("WECHAT_TEMPLATE_IDS") or "{}"
    try:
        mapping = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ConfigError("WECHAT_TEMPLATE_IDS must be a JSON object, e.g. {\"order_paid\": \"TEMPLATE_ID\"}.") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ConfigError("WECHAT_TEMPLATE_IDS must map event names to template id strings.")
    return mapping


def _valid_aes_key(key: str) -> bool:
    """43 base64 characters that decode (with the "=" WeChat leaves off) to a 32-byte AES key."""
    import base64
    import binascii

    if len(key) != 43:
        return False
    try:
        return len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
