"""WeChat Pay as the demo needs it, where nobody drives the fake by hand as the tests do: a refund is done a moment
after WeChat accepts it, the member confirms a transfer on the simulator's 确认收款 page, and each result is posted
to the notify_url its request carried — from a background thread, as WeChat posts from its own servers."""
import threading
import time
from collections import deque
from dataclasses import dataclass

import requests

from .pay_v3 import FakeV3Order, FakeWeChatPayV3, MerchantKeys, random_digits, rfc3339

REFUND_SECONDS = 1.0  # how long WeChat takes to move a refund's money (a refund to 零钱 is that quick)
RESEND_AFTER_SECONDS = (2, 10, 30)  # a notify our server did not take is sent again (WeChat waits longer)


@dataclass(frozen=True)
class SentNotify:
    at: str
    event: str
    url: str
    answer: str  # our server's HTTP status, or why it could not be reached


class Notifier:
    """Posts notifies in the background and keeps the last ones (the console lists them)."""

    def __init__(self):
        self.sent: deque[SentNotify] = deque(maxlen=100)

    def post(self, url: str, event: str, notify: tuple[dict, bytes]) -> None:
        threading.Thread(target=self._deliver, args=(url, event, notify), daemon=True,
                         name="simulated-wechat-notify").start()

    def _deliver(self, url: str, event: str, notify: tuple[dict, bytes]) -> None:
        headers, body = notify
        for wait in (0, *RESEND_AFTER_SECONDS):
            time.sleep(wait)
            try:
                answer = str(requests.post(url, data=body, headers=headers, timeout=10).status_code)
            except requests.RequestException as exc:
                answer = type(exc).__name__
            self.sent.appendleft(SentNotify(rfc3339(), event, url, answer))
            if answer in ("200", "204"):
                return


class DemoPayV3(FakeWeChatPayV3):
    """The demo merchant's WeChat Pay. Its memory is this process's, and the demo's orders were paid before it
    started (the seeded weeks of trade, anything before a restart) or through 模拟支付, which signs its notify in the
    app: a refund of an order it never saw is taken as one of a paid order of the refund's total."""

    def __init__(self, app_id: str, mch_id: str, keys: MerchantKeys, notifier: Notifier):
        self.notifier = notifier
        super().__init__(app_id, mch_id, keys)

    def _refund(self, payload: dict) -> dict:
        number, amount = payload.get("out_trade_no"), payload.get("amount")
        if number and number not in self.orders and isinstance(amount, dict) and isinstance(amount.get("total"), int):
            self.orders[number] = FakeV3Order(
                out_trade_no=number, appid=self.app_id, description="", total=amount["total"], openid="",
                notify_url="", prepay_id="", trade_state="SUCCESS", transaction_id="4200" + random_digits(24),
                success_time=rfc3339())
        new = payload.get("out_refund_no") not in self.refunds
        # Accepted now and notified REFUND_SECONDS later; with no address to notify, done at once, so the query our
        # server makes right after finds it.
        self.refund_outcome = "PROCESSING" if payload.get("notify_url") else "SUCCESS"
        answer = super()._refund(payload)
        if new and answer["status"] == "PROCESSING":
            timer = threading.Timer(REFUND_SECONDS, self._finish_refund, args=(answer["out_refund_no"],))
            timer.daemon = True
            timer.start()
        return answer

    def _finish_refund(self, out_refund_no: str) -> None:
        self.notifier.post(self.refunds[out_refund_no]["notify_url"], "REFUND.SUCCESS",
                           self.finish_refund(out_refund_no, "SUCCESS"))

    def held(self) -> tuple[list[dict], list[dict]]:
        """Copies of the transfer bills and the refunds it holds, newest first."""
        with self._lock:
            bills, refunds = [dict(b) for b in self.bills.values()], [dict(r) for r in self.refunds.values()]
        return (sorted(bills, key=lambda b: b["create_time"], reverse=True),
                sorted(refunds, key=lambda r: r["create_time"], reverse=True))

    def bill_for_package(self, package: str) -> dict | None:
        """The bill whose ``package_info`` the member's 确认收款 opened (a copy)."""
        with self._lock:
            return next((dict(bill) for bill in self.bills.values() if bill["package_info"] == package), None)

    def confirm(self, out_bill_no: str) -> bool:
        """The member confirms: the bill is paid, and its result notified. False when it no longer waits."""
        return self._finish_bill(out_bill_no, self.confirm_bill)

    def expire(self, out_bill_no: str) -> bool:
        """Nobody confirmed within 24 hours: WeChat closes the bill (FAIL, OVERDUE_CLOSE), and notifies."""
        return self._finish_bill(out_bill_no, self.expire_bill)

    def _finish_bill(self, out_bill_no: str, finish) -> bool:
        try:
            notify = finish(out_bill_no)
        except (KeyError, ValueError):  # no such bill, or it was confirmed, closed or cancelled meanwhile
            return False
        if url := self.bills[out_bill_no]["notify_url"]:
            self.notifier.post(url, "MCHTRANSFER.BILL.FINISHED", notify)
        return True
