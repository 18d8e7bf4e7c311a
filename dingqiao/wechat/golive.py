"""The go-live check (`flask wechat-check`): call the configured accounts' harmless endpoints and say, in Chinese and
English, which setting is missing or wrong — before the first member meets the mistake.

Nothing here changes anything at WeChat: an access token and a JS-SDK ticket are fetched (and cached as usual),
and each configured WeChat Pay API is asked about an order number that cannot exist. The answer to that query
tells a lot: "no such order" means WeChat accepted our signature (merchant id, serial number and key match) and,
on v3, that the answer verified with the configured WeChat Pay public key or platform certificate.
"""
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import CREDENTIAL_IN_URL, WeChatError, WeChatSettings, js_sdk, pay_gateways
from .pay import PayError


@dataclass(frozen=True)
class Finding:
    ok: bool
    zh: str
    en: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.zh} / {self.en}"


_TOKEN_ERRORS = {
    40013: ("WECHAT_APP_ID 不是有效的公众号 AppID", "WECHAT_APP_ID is not a valid Official Account AppID"),
    40125: ("WECHAT_APP_SECRET 不正确（公众平台 → 设置与开发 → 基本配置 可重置）",
            "WECHAT_APP_SECRET is wrong (reset it under 设置与开发 → 基本配置)"),
    40001: ("WECHAT_APP_SECRET 不正确", "WECHAT_APP_SECRET is wrong"),
    40164: ("本服务器的 IP 不在公众号的 IP 白名单中（基本配置 → IP白名单）",
            "this server's IP is not on the Official Account's IP allow-list (基本配置 → IP白名单)"),
    61004: ("本服务器的 IP 不在公众号的 IP 白名单中", "this server's IP is not on the Official Account's allow-list"),
}


def check(app) -> list[Finding]:
    config = app.config
    findings: list[Finding] = []
    findings += _check_public_url(config)
    findings += _check_official_account(app)
    findings += _check_pay(app)
    return findings


def _check_public_url(config) -> list[Finding]:
    base = config.get("PUBLIC_BASE_URL") or ""
    if not base:
        return [Finding(False, "未设置 PUBLIC_BASE_URL：网页授权回调、支付和转账通知都需要它",
                        "PUBLIC_BASE_URL is not set: OAuth redirects and pay/transfer notifies need it")]
    parts = urlsplit(base)
    found = []
    if parts.scheme != "https":
        found.append(Finding(False, f"PUBLIC_BASE_URL 必须是 https://（现为 {base}）：微信支付只把通知发到 https 地址",
                             f"PUBLIC_BASE_URL must be https:// (now {base}): WeChat Pay notifies only https URLs"))
    else:
        found.append(Finding(True, f"通知地址为 https：{base}/wechat/pay/v3/notify 等",
                             f"notify URLs are https: {base}/wechat/pay/v3/notify and others"))
    found.append(Finding(True, f"请确认：公众平台「网页授权域名」和「JS接口安全域名」填写 {parts.hostname}，"
                               f"商户平台「JSAPI支付授权目录」填写 {base}/orders/",
                         f"check by hand: the OAuth and JS-SDK domains are {parts.hostname}, the JSAPI pay "
                         f"directory is {base}/orders/"))
    return found


def _check_official_account(app) -> list[Finding]:
    config = app.config
    if not (config.get("WECHAT_APP_ID") and config.get("WECHAT_APP_SECRET")):
        return [Finding(False, "未设置 WECHAT_APP_ID / WECHAT_APP_SECRET", "WECHAT_APP_ID / WECHAT_APP_SECRET not set")]
    signer = js_sdk(app)
    try:
        signer._client.fetch_access_token()
    except Exception as exc:  # noqa: BLE001 - every way this fails is a finding, never a crash
        code = getattr(exc, "errcode", None)
        zh, en = _TOKEN_ERRORS.get(code, (f"无法取得 access_token（{_short(exc)}）", f"no access token ({_short(exc)})"))
        return [Finding(False, zh, en)]
    found = [Finding(True, "AppID 与 AppSecret 正确，已取得 access_token", "AppID and AppSecret work: access token fetched")]
    try:
        signer._jsapi_ticket()
        found.append(Finding(True, "已取得 JS-SDK ticket（扫码、定位、分享、确认收款可用）",
                             "JS-SDK ticket fetched (scan, location, share, transfer confirmation)"))
    except Exception as exc:  # noqa: BLE001
        found.append(Finding(False, f"无法取得 JS-SDK ticket（{_short(exc)}）", f"no JS-SDK ticket ({_short(exc)})"))
    return found


def _check_pay(app) -> list[Finding]:
    config = app.config
    if not config.get("WECHAT_MCH_ID"):
        return [Finding(False, "未设置 WECHAT_MCH_ID：不能收款，提现只能线下打款",
                        "WECHAT_MCH_ID not set: no payments; withdrawals can only be paid offline")]
    gateways = pay_gateways(app)
    found = []
    if config.get("WECHAT_PAY_API", "v3") == "v3" and gateways.v3 is None:
        found.append(Finding(False, "WECHAT_PAY_API=v3，但 v3 的设置不全",
                             "WECHAT_PAY_API=v3 but the v3 settings are incomplete"))
    if gateways.v3 is not None:
        found += _check_local_keys(gateways.v3.settings, config)
        found.append(_probe(gateways.v3, "v3"))
        if found[-1].ok:
            found.append(_probe_signed_answer(gateways.v3))
    if gateways.v2 is not None and config.get("WECHAT_MCH_KEY"):
        found.append(_probe(gateways.v2, "v2"))
    return found


def _check_local_keys(settings: WeChatSettings, config) -> list[Finding]:
    """What can be checked without WeChat: the APIv3 key's length, and — given the merchant certificate — that its
    serial number and public key belong to the configured serial and private key."""
    found = []
    if len(settings.apiv3_key.encode()) != 32:
        found.append(Finding(False, "WECHAT_APIV3_KEY 应为 32 个字符", "WECHAT_APIV3_KEY must be 32 characters"))
    cert_path = config.get("WECHAT_MCH_CERT_PATH")
    if not cert_path:
        return found
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        with open(cert_path, "rb") as handle:
            certificate = x509.load_pem_x509_certificate(handle.read())
        private = serialization.load_pem_private_key(settings.mch_private_key_pem.encode(), None)
    except (OSError, ValueError) as exc:
        return [*found, Finding(False, f"商户证书无法读取（{_short(exc)}）", f"merchant certificate unreadable ({_short(exc)})")]
    if f"{certificate.serial_number:X}".upper() != settings.mch_serial_no.upper().lstrip("0"):
        found.append(Finding(False, f"WECHAT_MCH_SERIAL_NO 与证书序列号 {certificate.serial_number:X} 不符",
                             f"WECHAT_MCH_SERIAL_NO differs from the certificate's serial "
                             f"{certificate.serial_number:X}"))
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if (certificate.public_key().public_bytes(serialization.Encoding.PEM, raw)
            != private.public_key().public_bytes(serialization.Encoding.PEM, raw)):
        found.append(Finding(False, "WECHAT_MCH_KEY_PATH 的私钥与商户证书不配对（key mismatch）",
                             "the private key (WECHAT_MCH_KEY_PATH) does not belong to the merchant certificate"))
    return found


def _probe(gateway, api: str) -> Finding:
    """Ask about an order that cannot exist: "no such order" proves the credentials both ways."""
    number = "DQCHECK" + secrets.token_hex(8).upper()
    try:
        gateway.query_order(number)
    except PayError as exc:
        if exc.err_code == "ORDERNOTEXIST":
            how = "签名被接受" if api == "v3" else "签名被接受，应答签名正确"
            return Finding(True, f"微信支付 {api}：商户号、证书序列号与密钥正确（{how}）",
                           f"WeChat Pay {api}: merchant id, serial number and keys work")
        if exc.err_code in ("SIGN_ERROR", "SIGNERROR"):
            return Finding(False, f"微信支付 {api}：签名被拒（商户号、证书序列号 WECHAT_MCH_SERIAL_NO 或私钥不匹配）",
                           f"WeChat Pay {api}: signature refused "
                           "(merchant id, WECHAT_MCH_SERIAL_NO or private key mismatch)")
        if "无法验证" in exc.message:
            return Finding(False, f"微信支付 {api}：应答无法验证（WECHAT_PAY_PUBLIC_KEY_PATH / _ID 或平台证书不对）",
                           f"WeChat Pay {api}: answers do not verify "
                           "(wrong WeChat Pay public key, its id, or certificates)")
        return Finding(False, f"微信支付 {api}：{exc.message}（{exc.err_code or _short(exc)}）",
                       f"WeChat Pay {api}: {exc.err_code or _short(exc)}")
    except WeChatError as exc:
        return Finding(False, f"微信支付 {api}：{exc.message}", f"WeChat Pay {api}: {_short(exc)}")
    return Finding(False, f"微信支付 {api}：查询不存在的订单竟有结果，请检查 WECHAT_BASE_URL",
                   f"WeChat Pay {api}: a made-up order was found; check WECHAT_BASE_URL")


def _probe_signed_answer(gateway) -> Finding:
    """v3 signs every answer, but the library verifies only 2xx ones (an unknown order is a 404): closing an order
    number that never existed answers 204, signed — which proves the WeChat Pay public key (or certificates)."""
    number = "DQCHECK" + secrets.token_hex(8).upper()
    try:
        gateway._call(lambda: gateway._pay.close(number), ok=(200, 204))
    except PayError as exc:
        if "无法验证" in exc.message:
            return Finding(False, "微信支付 v3：应答无法验证（WECHAT_PAY_PUBLIC_KEY_PATH / _ID 或平台证书不对）",
                           "WeChat Pay v3: answers do not verify "
                           "(wrong WeChat Pay public key, its id, or certificates)")
        return Finding(False, f"微信支付 v3：无法验证应答签名（{exc.err_code or _short(exc)}）",
                       f"WeChat Pay v3: could not check the answer signature ({exc.err_code or _short(exc)})")
    return Finding(True, "微信支付 v3：应答签名已用微信支付公钥/平台证书验证",
                   "WeChat Pay v3: answers verify with the configured public key or certificates")


def _short(exc: Exception) -> str:
    """The start of an error, without the secret, token or code a WeChat URL in it may carry."""
    return CREDENTIAL_IN_URL.sub(r"\1…", str(exc))[:160]
