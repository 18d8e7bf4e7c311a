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
        # Each gunicorn worker runs the scheduled jobs (dingqiao/jobs.py; each due run happens once across them).
        # 0: this web server runs none, a `dingqiao worker` elsewhere does.
        "DINGQIAO_JOBS": _flag("DINGQIAO_JOBS", default=True),
        # 1: show "分享赚 ¥x" beside 分享 on the member's own product page (never in what is shared). Off: WeChat's
        # rules treat a reward for sharing as 诱导分享 (docs/wechat-callback.md, "Sharing and WeChat's rules").
        "SHARE_SHOW_REWARD": _flag("SHARE_SHOW_REWARD"),
        # Public origin of the H5, used for OAuth redirect URIs and links in messages.
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "").rstrip("/"),
        "WECHAT_APP_ID": os.environ.get("WECHAT_APP_ID", ""),
        "WECHAT_APP_SECRET": os.environ.get("WECHAT_APP_SECRET", ""),
        "WECHAT_TOKEN": os.environ.get("WECHAT_TOKEN", ""),
        # Safe mode (安全模式) of the server callback: the 43-character EncodingAESKey; empty = plain-text mode.
        "WECHAT_ENCODING_AES_KEY": os.environ.get("WECHAT_ENCODING_AES_KEY", ""),
        # A callback whose signed timestamp is further than this from our clock is refused, and each accepted
        # (timestamp, nonce) is remembered this long: a signed URL seen once cannot be used again.
        "WECHAT_CALLBACK_MAX_SKEW_SECONDS": int(os.environ.get("WECHAT_CALLBACK_MAX_SKEW_SECONDS", "300")),
        # Template messages: JSON object event → template id, e.g. {"order_paid": "TmplId…"}; events without a
        # template stay in the in-app message centre only.
        "WECHAT_TEMPLATE_IDS": os.environ.get("WECHAT_TEMPLATE_IDS", "{}"),
        # Today's messages, per event: the template (or 订阅通知) and which of our values fills each typed key.
        # JSON; see docs/messages.md. Read by services.message_templates; WECHAT_TEMPLATE_IDS is the older form.
        "WECHAT_MESSAGES": os.environ.get("WECHAT_MESSAGES", ""),
        "WECHAT_MCH_ID": os.environ.get("WECHAT_MCH_ID", ""),
        "WECHAT_MCH_KEY": os.environ.get("WECHAT_MCH_KEY", ""),
        # The merchant API certificate (apiclient_cert.pem / apiclient_key.pem): refunds and transfers need it.
        "WECHAT_MCH_CERT_PATH": os.environ.get("WECHAT_MCH_CERT_PATH", ""),
        "WECHAT_MCH_KEY_PATH": os.environ.get("WECHAT_MCH_KEY_PATH", ""),
        # WeChat Pay API: "v3" (what merchants get today) or "v2" (merchants who already run on it). With v3 set up
        # and WECHAT_MCH_KEY kept, orders paid through v2 before the switch are still refunded through v2.
        "WECHAT_PAY_API": os.environ.get("WECHAT_PAY_API", "v3"),
        # API v3: the merchant API certificate's serial number (its private key is WECHAT_MCH_KEY_PATH), the APIv3
        # key, and WeChat Pay's public key (微信支付公钥, pub_key.pem) with its id PUB_KEY_ID_… — or, for merchants
        # still on platform certificates, a folder they are fetched into.
        "WECHAT_MCH_SERIAL_NO": os.environ.get("WECHAT_MCH_SERIAL_NO", ""),
        "WECHAT_APIV3_KEY": os.environ.get("WECHAT_APIV3_KEY", ""),
        "WECHAT_PAY_PUBLIC_KEY_PATH": os.environ.get("WECHAT_PAY_PUBLIC_KEY_PATH", ""),
        "WECHAT_PAY_PUBLIC_KEY_ID": os.environ.get("WECHAT_PAY_PUBLIC_KEY_ID", ""),
        "WECHAT_PAY_PLATFORM_CERT_DIR": os.environ.get("WECHAT_PAY_PLATFORM_CERT_DIR", ""),
        # 商家转账 (payouts the member confirms): the transfer scene the merchant platform shows (1005 佣金报酬, 1000
        # 现金营销, or another granted scene), its 报备 items separated by "|" (1005: 岗位类型|报酬说明; 1000:
        # 活动名称|奖励说明; another scene: 类型=内容 pairs), and the 用户收款感知 (empty: the usual one of 1005 / 1000).
        "WECHAT_TRANSFER_SCENE_ID": os.environ.get("WECHAT_TRANSFER_SCENE_ID", "1005"),
        "WECHAT_TRANSFER_REPORT": tuple(os.environ.get("WECHAT_TRANSFER_REPORT", "推广员|推广佣金").split("|")),
        "WECHAT_TRANSFER_PERCEPTION": os.environ.get("WECHAT_TRANSFER_PERCEPTION", ""),
        # This server's public IPv4 address, sent as the spbill_create_ip of every WeChat transfer (企业付款). It
        # must be the same on every retry of a transfer (WeChat refuses a re-sent number whose parameters changed:
        # FATAL_ERROR), and on the merchant's IP allow-list when that is on.
        "WECHAT_SERVER_IP": os.environ.get("WECHAT_SERVER_IP", ""),
        # `flask backup` deletes the backup folder's archives older than this many days (0 keeps them all).
        "BACKUP_KEEP_DAYS": int(os.environ.get("BACKUP_KEEP_DAYS", "14")),
        # Refunds and payouts whose result has not arrived are asked about after this many minutes (cron).
        "RECONCILE_AFTER_MINUTES": int(os.environ.get("RECONCILE_AFTER_MINUTES", "10")),
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
        # Rate-limit counters: database:// keeps them in the app's own database, redis://… in Redis; both are
        # seen by every worker. memory:// counts per process (gunicorn refuses it with several workers).
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "database://"),
        # Pickup-code lookups and redemptions (shared by the lookup, the scanned link and the redeem button):
        # enough for a busy counter, far too few to guess 10^12 codes. A busy outlet may need more per outlet.
        "REDEEM_RATE_PER_USER": os.environ.get("REDEEM_RATE_PER_USER", "20 per minute"),
        "REDEEM_RATE_PER_OUTLET": os.environ.get("REDEEM_RATE_PER_OUTLET", "60 per minute"),
        # Pay notifies refused unread (not signed with our key, not XML, a DTD, too large) per sender address;
        # past it the sender gets 429 and nothing is recorded. Signed notifies never count, so WeChat's own
        # notifies and retries are never refused.
        "PAY_NOTIFY_JUNK_RATE": os.environ.get("PAY_NOTIFY_JUNK_RATE", "30 per minute"),
        # How many reverse proxies (nginx, a load balancer) stand in front of gunicorn and set X-Forwarded-For
        # and X-Forwarded-Proto. 0 trusts no such header: a client could forge its address and dodge rate
        # limits. Behind nginx set 1, or every client looks like 127.0.0.1 and shares one rate-limit bucket.
        "PROXY_COUNT": int(os.environ.get("PROXY_COUNT", "0")),
        # 0: a referral binding is locked for good. N: a binding that never led to a purchase may be replaced
        # by a new share link after N days.
        "BINDING_PROTECTION_DAYS": int(os.environ.get("BINDING_PROTECTION_DAYS", "0")),
        # How far an operator may move any of a product's prices, in basis points of the current price, either
        # way; beyond it finance or the superadmin must (docs/admin.md, "Who may change what moves money").
        "PRICE_CHANGE_OPERATOR_MAX_BPS": int(os.environ.get("PRICE_CHANGE_OPERATOR_MAX_BPS", "2000")),
        "ORDER_PAYMENT_TIMEOUT_MINUTES": int(os.environ.get("ORDER_PAYMENT_TIMEOUT_MINUTES", "15")),
        "CJK_FONT_PATH": os.environ.get("CJK_FONT_PATH", ""),
        "UPLOAD_MAX_BYTES": int(os.environ.get("UPLOAD_MAX_BYTES", str(5 * 1024 * 1024))),
        # Page caches (Flask-Caching): each worker keeps its own (SimpleCache, at most CACHE_THRESHOLD parts), or
        # all share Redis at CACHE_REDIS_URL (redis://…). An admin's save of a product, price, category or content
        # shows at once in every worker either way (a version in the database is part of every key,
        # services/cache_versions.py); the times below only bound what changes without a save.
        "CACHE_REDIS_URL": os.environ.get("CACHE_REDIS_URL", ""),
        "CACHE_THRESHOLD": int(os.environ.get("CACHE_THRESHOLD", "2000")),
        # Home-page banners and announcements: an announcement's start and end times are honoured this closely.
        "HOME_CONTENT_CACHE_SECONDS": int(os.environ.get("HOME_CONTENT_CACHE_SECONDS", "30")),
        # The shop's product lists and product details (0: not kept at all): stock and sold-out flags may show
        # that much late (checkout re-checks them); an admin's price or product save shows at once.
        "CATALOG_CACHE_SECONDS": int(os.environ.get("CATALOG_CACHE_SECONDS", "5")),
        # Outbox delivery: attempts before a message is marked failed for admins; the first retry waits
        # MESSAGE_RETRY_BASE_SECONDS, each next one twice as long.
        "MESSAGE_MAX_ATTEMPTS": int(os.environ.get("MESSAGE_MAX_ATTEMPTS", "6")),
        "MESSAGE_RETRY_BASE_SECONDS": int(os.environ.get("MESSAGE_RETRY_BASE_SECONDS", "30")),
        "SQLITE_BUSY_TIMEOUT_MS": int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "10000")),
        # Login sessions (docs/security.md): an admin login ends after this long without a request, and this
        # long after it began whatever happens; a member's after this many days without a visit, and at the
        # latest when its remember cookie would expire (MEMBER_SESSION_MAX_DAYS).
        "ADMIN_SESSION_IDLE_MINUTES": int(os.environ.get("ADMIN_SESSION_IDLE_MINUTES", "30")),
        "ADMIN_SESSION_MAX_HOURS": int(os.environ.get("ADMIN_SESSION_MAX_HOURS", "12")),
        "MEMBER_SESSION_IDLE_DAYS": int(os.environ.get("MEMBER_SESSION_IDLE_DAYS", "30")),
        "MEMBER_SESSION_MAX_DAYS": int(os.environ.get("MEMBER_SESSION_MAX_DAYS", "365")),
        # Admin lockout: this many wrong passwords in a row lock the account for ADMIN_LOCKOUT_SECONDS, doubled
        # by each further wrong one up to ADMIN_LOCKOUT_MAX_SECONDS; on top of the per-address ADMIN_LOGIN_RATE.
        "ADMIN_LOCKOUT_FAILURES": int(os.environ.get("ADMIN_LOCKOUT_FAILURES", "5")),
        "ADMIN_LOCKOUT_SECONDS": int(os.environ.get("ADMIN_LOCKOUT_SECONDS", "60")),
        "ADMIN_LOCKOUT_MAX_SECONDS": int(os.environ.get("ADMIN_LOCKOUT_MAX_SECONDS", "3600")),
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
    # A member's 确认收款 / 刷新状态 asks WeChat about their bill: each one a query against the merchant's quota.
    "TRANSFER_CHECK_RATE": "12 per minute",
    "RATELIMIT_HEADERS_ENABLED": True,
}


def validate(config) -> None:
    """Refuse to start with settings that would be unsafe for real shops and real money."""
    testing = config.get("TESTING", False)
    demo = config.get("DINGQIAO_DEMO", False)
    template_ids(config)  # raises ConfigError when malformed
    from .services.message_templates import check_message_settings

    check_message_settings(config)
    aes_key = config.get("WECHAT_ENCODING_AES_KEY", "")
    if aes_key and not _valid_aes_key(aes_key):
        raise ConfigError("WECHAT_ENCODING_AES_KEY must be the 43-character EncodingAESKey from the WeChat admin.")
    if not (demo or testing):
        _check_secret_key(config.get("SECRET_KEY"))
    redis_url = config.get("CACHE_REDIS_URL", "")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("CACHE_REDIS_URL must be a redis://, rediss:// or unix:// address (or empty: a cache per "
                          "worker).")
    if demo and (real := _real_wechat_settings(config)):
        raise ConfigError(
            "DINGQIAO_DEMO=1 lets anyone log in as any user, so it is refused while a real WeChat setting is "
            f"present: {', '.join(real)}. Unset these, or unset DINGQIAO_DEMO (the demo brings its own simulated "
            "WeChat: `dingqiao demo`)."
        )
    if not demo and not testing:
        if config.get("WECHAT_TOKEN") and not aes_key:
            raise ConfigError(
                "WECHAT_TOKEN is set but WECHAT_ENCODING_AES_KEY is not. In plain mode (明文模式) the server "
                "callback's signature does not cover the message, so one leaked callback URL lets anyone post "
                "follow and scan events. In the WeChat admin (基本配置 → 服务器配置) choose 安全模式 and set "
                "WECHAT_ENCODING_AES_KEY to its 43-character EncodingAESKey (docs/wechat-callback.md)."
            )
        missing = [k for k in ("WECHAT_APP_ID", "WECHAT_APP_SECRET", "PUBLIC_BASE_URL") if not config.get(k)]
        if missing:
            raise ConfigError("Outside demo mode these settings are required: " + ", ".join(missing))
        if config.get("WECHAT_MCH_ID"):
            _check_pay_settings(config)
    if config.get("WECHAT_PAY_API", "v3") not in ("v2", "v3"):
        raise ConfigError('WECHAT_PAY_API must be "v3" or "v2".')
    _check_transfer_settings(config)


V3_SETTINGS = ("WECHAT_MCH_SERIAL_NO", "WECHAT_MCH_KEY_PATH", "WECHAT_APIV3_KEY")


def _check_pay_settings(config) -> None:
    """A merchant is configured whole for the API it uses, or the app does not start."""
    if config.get("WECHAT_PAY_API", "v3") == "v2":
        missing = [k for k in ("WECHAT_MCH_KEY", "WECHAT_MCH_CERT_PATH", "WECHAT_MCH_KEY_PATH", "WECHAT_SERVER_IP")
                   if not config.get(k)]
        if missing:
            raise ConfigError("WeChat Pay API v2 needs the API key, the merchant certificate (refunds, payouts) and "
                              "this server's public address (payouts): " + ", ".join(missing))
        if not any(config.get(k) for k in ("WECHAT_MCH_SERIAL_NO", "WECHAT_APIV3_KEY", "WECHAT_PAY_PUBLIC_KEY_PATH",
                                           "WECHAT_PAY_PUBLIC_KEY_ID", "WECHAT_PAY_PLATFORM_CERT_DIR")):
            return  # a v2 merchant with no v3 settings; any v3 setting present must be whole, or v2 breaks too
    missing = [k for k in (*V3_SETTINGS, "WECHAT_SERVER_IP") if not config.get(k)]
    public_key = config.get("WECHAT_PAY_PUBLIC_KEY_PATH"), config.get("WECHAT_PAY_PUBLIC_KEY_ID")
    if any(public_key) and not all(public_key):
        missing.append("WECHAT_PAY_PUBLIC_KEY_PATH and WECHAT_PAY_PUBLIC_KEY_ID (both)")
    elif not any(public_key) and not config.get("WECHAT_PAY_PLATFORM_CERT_DIR"):
        missing.append("WECHAT_PAY_PUBLIC_KEY_PATH + WECHAT_PAY_PUBLIC_KEY_ID (or WECHAT_PAY_PLATFORM_CERT_DIR)")
    if missing:
        hint = ("remove the v3 settings to stay on v2 alone" if config.get("WECHAT_PAY_API", "v3") == "v2"
                else "set WECHAT_PAY_API=v2 to stay on v2")
        raise ConfigError(f"WeChat Pay API v3 needs ({hint}): " + ", ".join(missing))
    if len(config["WECHAT_APIV3_KEY"].encode()) != 32:
        raise ConfigError("WECHAT_APIV3_KEY must be the 32-character APIv3 key from the merchant platform.")
    if public_key[1] and not public_key[1].startswith("PUB_KEY_ID_"):
        raise ConfigError("WECHAT_PAY_PUBLIC_KEY_ID is the id shown beside WeChat Pay's public key: PUB_KEY_ID_…")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    try:
        with open(config["WECHAT_MCH_KEY_PATH"], "rb") as handle:
            load_pem_private_key(handle.read(), None)
        if public_key[0]:
            with open(public_key[0], "rb") as handle:
                load_pem_public_key(handle.read())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"WeChat Pay API v3: a key file cannot be read ({exc.__class__.__name__}: {exc}). "
                          "WECHAT_MCH_KEY_PATH is apiclient_key.pem; WECHAT_PAY_PUBLIC_KEY_PATH is pub_key.pem.") from None


def _check_transfer_settings(config) -> None:
    from .wechat.pay_v3 import transfer_report

    try:
        transfer_report(str(config.get("WECHAT_TRANSFER_SCENE_ID", "1005")),
                        tuple(config.get("WECHAT_TRANSFER_REPORT", ())), config.get("WECHAT_TRANSFER_PERCEPTION", ""))
    except ValueError as exc:
        raise ConfigError(f"WECHAT_TRANSFER_SCENE_ID / WECHAT_TRANSFER_REPORT / WECHAT_TRANSFER_PERCEPTION: {exc}. "
                          "1005 (佣金报酬) takes 岗位类型|报酬说明, 1000 (现金营销) 活动名称|奖励说明; another scene "
                          "takes 类型=内容 pairs and its 用户收款感知.") from None


MIN_SECRET_KEY_BYTES = 32
# Settings that only a real Official Account or merchant has; the demo runs without any of them, or with those of
# its simulated WeChat (dingqiao/wechat/simulator).
REAL_WECHAT_SETTINGS = ("WECHAT_APP_ID", "WECHAT_APP_SECRET", "WECHAT_MCH_ID", "WECHAT_MCH_KEY")  # v3's need MCH_ID too


def _check_secret_key(secret_key) -> None:
    if not secret_key:
        raise ConfigError("SECRET_KEY must be set outside demo mode and tests, e.g. to the output of "
                          "python -c \"import secrets; print(secrets.token_hex(32))\".")
    size = len(secret_key.encode() if isinstance(secret_key, str) else secret_key)
    if size < MIN_SECRET_KEY_BYTES:
        raise ConfigError(f"SECRET_KEY has {size} bytes; it signs every session and CSRF token and needs at least "
                          f"{MIN_SECRET_KEY_BYTES}, e.g. the output of "
                          "python -c \"import secrets; print(secrets.token_hex(32))\".")


def _real_wechat_settings(config) -> list[str]:
    """The names of the real WeChat settings present: an https public URL counts, a deployment has one. WeChat
    settings are not real when they are the simulated WeChat's: the demo's own account, on this machine."""
    present = [] if _simulated_wechat(config) else [name for name in REAL_WECHAT_SETTINGS if config.get(name)]
    if (config.get("PUBLIC_BASE_URL") or "").lower().startswith("https://"):
        present.append("PUBLIC_BASE_URL (https://…)")
    return present


def _simulated_wechat(config) -> bool:
    """The demo's app id (which no real account can have) and WECHAT_BASE_URL on the loopback interface."""
    import ipaddress
    from urllib.parse import urlsplit

    from .wechat.demo import DEMO_APP_ID

    host = urlsplit(config.get("WECHAT_BASE_URL") or "").hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return config.get("WECHAT_APP_ID") == DEMO_APP_ID and loopback


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


def cache_settings(config) -> dict:
    """Flask-Caching's settings from ours: Redis shared by every worker when CACHE_REDIS_URL is set, else a
    cache in each worker process. Keys carry the data's version (services/cache_versions.py), so neither
    serves a saved change late."""
    if config.get("CACHE_REDIS_URL"):
        return {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": config["CACHE_REDIS_URL"],
                "CACHE_KEY_PREFIX": config.get("CACHE_KEY_PREFIX", "dingqiao:")}
    return {"CACHE_TYPE": "dingqiao.extensions.InProcessCache", "CACHE_THRESHOLD": config.get("CACHE_THRESHOLD", 2000)}
