"""Open for business from one file, as a new merchant would (issue 20's "done when"): the single file in an empty
folder with no Python on PATH, production mode against the tests' fake WeChat; the setup link from the console;
the wizard; a region, factory store and outlet whose owners logged in through WeChat OAuth; a product and its stock
from the admin pages; one purchase → pickup → commission → withdrawal confirmed by the member, all through HTTP;
then a backup, a restore into another empty folder, and the three checks pass there. No SQL, no seed-demo.

The executable is ``dist/dingqiao`` built by scripts/build (``single_file`` in conftest.py), so this also proves the
frozen file carries every production path (WeChat Pay v3 signing, notifies, OAuth, migrations, backup)."""
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.gunicorn_server import CSRF_META, ORDER_URL, PICKUP_CODE, USER_AGENT, free_port
from tests.test_single_file import single_file  # noqa: F401 (a fixture: dist/dingqiao, built once)
from tests.conftest import v3_settings, wait_for
from tests.fake_wechat import FakeWeChatUser

pytestmark = pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")),
                                reason="the single file's own database is SQLite in its home folder; the Postgres "
                                       "run of the suite covers the same services")
STARTUP_DEADLINE = 120  # seconds, generous: a busy CI machine unpacks the file and migrates an empty database
PAY_NOTIFY, TRANSFER_NOTIFY = "/wechat/pay/v3/notify", "/wechat/pay/v3/transfer-notify"


class Shop:
    """``dingqiao serve`` started from an empty folder, with its console captured."""

    def __init__(self, binary: Path, home: Path, env: dict):
        self.binary, self.home, self.port = binary, home, free_port()
        self.env = {**env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}"}
        self.url = self.env["PUBLIC_BASE_URL"]
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], cwd=self.home, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self) -> None:
        self.process = subprocess.Popen([str(self.binary), "serve", "--bind", f"127.0.0.1:{self.port}"],
                                        cwd=self.home, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: self._answers(), f"{self.url}/healthz", STARTUP_DEADLINE, step=0.2, explain=self.last_lines)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _answers(self) -> bool:
        assert self.process.poll() is None, "".join(self.lines)
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def last_lines(self) -> str:
        return "".join(self.lines[-80:])

    def setup_link(self) -> str:
        found = []
        wait_for(lambda: found.extend(re.findall(r"https?://\S+/setup/\S+", "".join(self.lines))) or found,
                 "the setup link on the console", 60, step=0.2, explain=self.last_lines)
        return found[-1]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=60)


class Browser:
    """One person's browser against the shop: cookies, the CSRF token of the last page, WeChat's login dance."""

    def __init__(self, shop: Shop):
        self.shop = shop
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        self.token = ""

    def get(self, path: str, **kwargs) -> requests.Response:
        answer = self.http.get(self.shop.url + path, timeout=60, **kwargs)
        if match := CSRF_META.search(answer.text):
            self.token = match.group(1)
        return answer

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        if not self.token:
            self.get("/")
        return self.http.post(self.shop.url + path, data={"csrf_token": self.token, **(data or {})}, timeout=60,
                              allow_redirects=False, **kwargs)

    def wechat_login(self, fake, user: FakeWeChatUser, entry: str = "/me/") -> None:
        """Open a page in WeChat: our login → WeChat's authorize page (the fake answers as ``user``) → back."""
        fake.current_user = user
        landed = self.http.get(self.shop.url + entry, timeout=60)  # follows every redirect, through the fake
        assert urlsplit(landed.url).path == entry, (landed.url, landed.status_code)
        self.get(entry)


def form_token(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def option_value(page: str, label: str) -> str:
    match = re.search(rf'<option value="(\d+)"[^>]*>[^<]*{re.escape(label)}', page)
    assert match, f"no option {label!r}"
    return match.group(1)


@pytest.fixture
def production_env(tmp_path, fake_wechat) -> dict:
    """Production mode against the fake WeChat; no SECRET_KEY (the file makes one), no Python on PATH."""
    return {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "WECHAT_BASE_URL": fake_wechat.base_url, "WECHAT_APP_ID": fake_wechat.app_id,
        "WECHAT_APP_SECRET": fake_wechat.app_secret, "WECHAT_MCH_ID": fake_wechat.mch_id, "WECHAT_PAY_API": "v3",
        **v3_settings(tmp_path, fake_wechat), "SESSION_COOKIE_SECURE": "0", "GUNICORN_WORKERS": "2", "WECHAT_SERVER_IP": "127.0.0.1",
    }


@pytest.mark.single_file
def test_a_merchant_opens_a_shop_from_one_file_and_money_goes_round(single_file, tmp_path, fake_wechat,  # noqa: F811
                                                                   production_env):
    home = tmp_path / "shop"
    home.mkdir()
    shop = Shop(single_file, home, production_env)
    shop.start()
    try:
        loop(shop, fake_wechat)
        archive = backup(shop)
    finally:
        shop.stop()
    assert (home / "instance" / "secret_key").stat().st_mode & 0o777 == 0o600

    restored_home = tmp_path / "restored"
    restored_home.mkdir()
    restored = Shop(single_file, restored_home, production_env)
    answer = restored.run("restore", str(archive))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    for check in ("check-money", "check-stock", "audit-verify"):
        answer = restored.run(check)
        assert answer.returncode == 0, (check, answer.stdout + answer.stderr)
    assert (restored_home / "instance" / "dingqiao.sqlite3").exists()


def loop(shop: Shop, fake) -> None:
    v3 = fake.pay_v3
    # -- the console's link: the superadmin and the shop's name
    link = urlsplit(shop.setup_link()).path
    boss = Browser(shop)
    page = boss.get(link).text
    made = boss.http.post(shop.url + link, allow_redirects=False, timeout=60, data={
        "csrf_token": form_token(page), "shop_name": "街坊洗护", "username": "boss",
        "password": "correct-horse-9", "password_again": "correct-horse-9"})
    assert made.status_code == 302 and made.headers["Location"].endswith("/admin/setup/"), made.text[:2000]
    assert boss.get("/admin/setup/").status_code == 200
    assert boss.get(link).status_code == 404  # used up

    # -- the members who will own the sites, and a referrer and a buyer, log in through WeChat
    people = {name: Browser(shop) for name in ("factory", "outlet", "referrer", "buyer")}
    for name in ("factory", "outlet", "referrer"):
        people[name].wechat_login(fake, FakeWeChatUser(f"o-{name}", {"factory": "厂长", "outlet": "店长",
                                                                      "referrer": "推荐人"}[name]))
    assert "暂未开业" in people["referrer"].get("/").text  # no commission rule yet: no sale

    # -- the wizard: warehouse, region, factory store, outlet, commission rule, identity rules
    assert boss.post("/admin/setup/warehouse", {"name": "平台总仓"}).status_code == 302
    assert boss.post("/admin/setup/region", {"code": "SH01", "name": "上海浦东"}).status_code == 302
    page = boss.get("/admin/setup/").text
    region = option_value(page, "上海浦东")
    assert boss.post("/admin/setup/factory-store", {
        "region_id": region, "owner_user_id": option_value(page, "厂长"), "name": "浦东工厂店",
        "address": "浦东大道 1 号", "phone": "13900000001"}).status_code == 302
    assert boss.post("/admin/setup/outlet", {
        "region_id": region, "owner_user_id": option_value(page, "店长"), "name": "东方网点",
        "address": "世纪大道 2 号", "phone": "13900000002", "opening_hours": "08:00-20:00",
        "latitude": "31.23", "longitude": "121.47"}).status_code == 302
    assert boss.post("/admin/setup/commission-rule", {
        "action": "publish", "referral_depth": "2", "direct": "10", "team": "3", "third_level": "0",
        "service_fee": "5", "regional": "2", "payout_cap": "30", "cooling_days": "0"}).status_code == 302
    assert boss.post("/admin/setup/identity-rules", {"outlet_threshold": "299", "factory_threshold": "20000",
                                                     "grant_mode": "review"}).status_code == 302
    assert boss.post("/admin/setup/finish").status_code == 302

    # -- a product and its stock at the outlet, from the admin pages
    assert boss.post("/admin/data/categories/new/", {"name": "洗衣液", "sort_order": "0",
                                                     "is_active": "y"}).status_code == 302
    page = boss.get("/admin/data/products/new/").text
    assert boss.post("/admin/data/products/new/", {
        "category": option_value(page, "洗衣液"), "name": "浓缩洗衣液", "subtitle": "", "member_price": "100.00",
        "outlet_price": "80.00", "factory_price": "60.00", "description": "", "unit": "瓶", "is_on_sale": "y",
        "sort_order": "0"}).status_code == 302
    page = boss.get("/admin/stock/").text
    product_id = option_value(page, "浓缩洗衣液")
    adjusted = boss.post("/admin/stock/adjust", {"location_id": option_value(page, "东方网点"),
                                                 "product_id": product_id, "delta": "10", "note": "首批到货"})
    assert adjusted.status_code in (302, 303), adjusted.text[:2000]

    # -- the buyer comes through the referrer's share link, logs in, buys and pays
    referrer = people["referrer"]
    code = re.search(r"[?&]ref=([A-Za-z0-9]+)", referrer.get(f"/products/{product_id}").text).group(1)
    buyer = people["buyer"]
    buyer.get(f"/products/{product_id}?ref={code}")
    buyer.wechat_login(fake, FakeWeChatUser("o-buyer", "买家"))
    assert buyer.post("/cart/items", {"product_id": product_id, "quantity": "1"}).status_code in (302, 303)
    checkout = buyer.get("/checkout/").text
    outlet_id = re.search(r'name="outlet_id" value="(\d+)"', checkout).group(1)
    placed = buyer.post("/checkout/", {"outlet_id": outlet_id, "phone": "13800138000"})
    order_no = ORDER_URL.search(placed.headers.get("Location", "")).group(1)
    paying = buyer.post(f"/orders/{order_no}/pay", headers={"HX-Request": "true"})
    assert paying.status_code == 200 and "data-wechat-pay" in paying.text, paying.text[:2000]
    headers, body = v3.pay(order_no)  # the buyer pays in WeChat; WeChat Pay tells the shop
    assert requests.post(shop.url + PAY_NOTIFY, data=body, headers=headers, timeout=60).status_code == 204
    pickup = PICKUP_CODE.search(buyer.get(f"/orders/{order_no}").text).group(1).replace(" ", "")

    # -- the outlet hands the goods over: the commissions settle (no cooling period in this rule)
    handed = people["outlet"].post(f"/outlet/redeem/{pickup}", headers={"HX-Request": "true"})
    assert handed.status_code == 200, handed.text[:2000]
    wallet = referrer.get("/wallet/").text
    assert "¥10.00" in wallet, wallet  # 10% of ¥100 to the direct upline

    # -- the referrer withdraws; the superadmin approves; the member confirms in WeChat; paid
    asked = referrer.post("/wallet/withdrawals", {"amount": "10", "phone": "13700137000"})
    assert asked.status_code in (302, 303, 204), asked.text[:2000]
    queue = boss.get("/admin/withdrawals").text
    withdrawal_id = re.search(r'name="withdrawal_id" value="(\d+)"', queue).group(1)
    approved = boss.post("/admin/withdrawals/review", {"action": "approve", "withdrawal_id": withdrawal_id})
    assert approved.status_code in (302, 303)
    assert "待用户确认收款" in boss.get("/admin/withdrawals").text
    [withdrawal_no] = [no for no, bill in v3.bills.items() if bill["state"] == "WAIT_USER_CONFIRM"]
    headers, body = v3.confirm_bill(withdrawal_no)
    assert requests.post(shop.url + TRANSFER_NOTIFY, data=body, headers=headers, timeout=60).status_code == 204
    assert "已到账" in referrer.get("/wallet/").text


def backup(shop: Shop) -> Path:
    answer = shop.run("backup")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    [archive] = (shop.home / "instance" / "backups").glob("dingqiao-*.tar.gz")
    return archive

