"""Junk pay notifies cannot bury real problems (issue 16, item 4): refused notifies are counted per sender address
and reason, not queued one by one; past PAY_NOTIFY_JUNK_RATE a sender gets 429 and nothing is written, while
a notify signed with our merchant key is always handled; the pay-notify parser refuses a DTD anywhere; every
admin queue is paged, and no page number typed into its URL makes it fail."""
import re

import pytest
from sqlalchemy import func, insert, select, update
from wechatpy.pay.utils import calculate_signature, dict_to_xml

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    Announcement,
    ApplicationStatus,
    Article,
    Banner,
    CaseKind,
    CaseStatus,
    DeliveryStatus,
    IdentityApplication,
    LocationKind,
    Order,
    OrderStatus,
    OutboxMessage,
    PaymentEvent,
    PaymentEventKind,
    RefusedNotify,
    Refund,
    RefundStatus,
    RestockOrder,
    ServiceCase,
    StockLocation,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.paging import PAGE_SIZE
from dingqiao.services.accounts import create_admin
from dingqiao.services.payments import record_refused_notify
from dingqiao.wechat import pay_gateway
from tests.conftest import log_in_admin, run_concurrently
from tests.factories import make_order, make_outlet, make_product, make_region, make_user

FAIL = "<return_code><![CDATA[FAIL]]></return_code>"
SUCCESS = "<return_code><![CDATA[SUCCESS]]></return_code>"


def forged_notify(app, order_no: str = "DQ1", total_fee: int = 100) -> bytes:
    """A notify with every field right but signed with a key that is not ours."""
    settings = pay_gateway(app.config).settings
    fields = {"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": settings.app_id, "mch_id": settings.mch_id,
              "openid": "o-x", "out_trade_no": order_no, "transaction_id": "4200000000000000000001",
              "total_fee": total_fee, "nonce_str": "n"}
    return dict_to_xml(fields, calculate_signature(fields, "0" * 32)).encode()


def post_notify(client, body: bytes, address: str = "198.51.100.7", **headers):
    return client.post("/wechat/pay/notify", data=body, content_type="text/xml", headers=headers,
                       environ_base={"REMOTE_ADDR": address})


def refused_rows(app) -> list[tuple[str, str, int]]:
    with app.app_context():
        rows = db.session.scalars(select(RefusedNotify).order_by(RefusedNotify.id))
        return [(row.source, row.reason, row.count) for row in rows]


def payment_events(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(PaymentEvent))


@pytest.fixture
def unpaid_order(app):
    """An order waiting for its payment, and the notify WeChat would sign for it."""
    with app.app_context():
        buyer = make_user("买家", openid="o-buyer")
        order = make_order(buyer, make_outlet(make_user("店主")), make_product(3990))
        notify = pay_gateway(app.config).signed_notification(
            out_trade_no=order.order_no, transaction_id="4200000000000000000777", total_fee=order.total_fen,
            openid="o-buyer")
        return order.order_no, notify


def order_status(app, order_no: str) -> str:
    with app.app_context():
        return db.session.scalar(select(Order.status).where(Order.order_no == order_no))


# ------------------------------------------------------------------------------------- counted, not queued

def test_three_hundred_unsigned_notifies_are_one_counted_row_and_no_payment_event(app, client):
    app.config["PAY_NOTIFY_JUNK_RATE"] = "1000 per minute"
    body = forged_notify(app)
    answers = {post_notify(client, body).status_code for _ in range(300)}

    assert answers == {400}
    assert refused_rows(app) == [("198.51.100.7", "bad_signature", 300)]
    assert payment_events(app) == 0
    with app.app_context():
        row = db.session.scalar(select(RefusedNotify))
        assert row.first_seen_at <= row.last_seen_at and "DQ1" in row.last_detail


def test_each_sender_and_reason_has_its_own_count(app, client):
    post_notify(client, forged_notify(app), "198.51.100.7")
    post_notify(client, forged_notify(app), "198.51.100.7")
    post_notify(client, b"not xml", "198.51.100.7")
    post_notify(client, forged_notify(app), "203.0.113.9")
    post_notify(client, b"<xml>" + b"x" * 70_000 + b"</xml>", "203.0.113.9")

    assert sorted(refused_rows(app)) == [("198.51.100.7", "bad_signature", 2), ("198.51.100.7", "malformed", 1),
                                         ("203.0.113.9", "bad_signature", 1), ("203.0.113.9", "too_large", 1)]
    assert payment_events(app) == 0


def test_behind_a_proxy_the_sender_is_the_forwarded_client(app_config, request):
    app_config["PROXY_COUNT"] = 1
    app = request.getfixturevalue("app")
    client = app.test_client()
    post_notify(client, forged_notify(app), "127.0.0.1", **{"X-Forwarded-For": "198.51.100.23"})
    assert refused_rows(app) == [("198.51.100.23", "bad_signature", 1)]


def test_concurrent_refusals_from_one_sender_are_all_counted_in_one_row(app):
    def refuse(_n: int) -> None:
        record_refused_notify(db.session, "198.51.100.7", "bad_signature", b"<xml/>", "forged")

    results = run_concurrently(app, refuse, [(n,) for n in range(8)])
    assert results == [None] * 8
    assert refused_rows(app) == [("198.51.100.7", "bad_signature", 8)]


# ------------------------------------------------------------------------------------------ the rate limit

def test_past_the_limit_a_sender_gets_429_and_nothing_is_written(app, client):
    app.config["PAY_NOTIFY_JUNK_RATE"] = "5 per minute"
    answers = [post_notify(client, forged_notify(app)) for _ in range(5)]
    assert [a.status_code for a in answers] == [400] * 5
    with app.app_context():
        before = db.session.scalar(select(RefusedNotify)).last_seen_at

    over = post_notify(client, b"<xml>something else</xml>")
    assert over.status_code == 429 and FAIL in over.get_data(as_text=True)
    assert over.mimetype == "application/xml"
    assert refused_rows(app) == [("198.51.100.7", "bad_signature", 5)]
    with app.app_context():
        assert db.session.scalar(select(RefusedNotify)).last_seen_at == before
    assert payment_events(app) == 0
    assert post_notify(client, forged_notify(app), "203.0.113.9").status_code == 400  # another sender is not held


def test_a_signed_notify_from_a_sender_over_its_limit_is_handled_and_so_is_its_retry(app, client, unpaid_order):
    order_no, notify = unpaid_order
    app.config["PAY_NOTIFY_JUNK_RATE"] = "3 per minute"
    for _ in range(3):
        post_notify(client, forged_notify(app))
    assert post_notify(client, forged_notify(app)).status_code == 429

    paid = post_notify(client, notify)
    assert paid.status_code == 200 and SUCCESS in paid.get_data(as_text=True)
    assert order_status(app, order_no) == OrderStatus.PAID
    again = post_notify(client, notify)  # WeChat resends until it reads SUCCESS
    assert again.status_code == 200 and SUCCESS in again.get_data(as_text=True)
    with app.app_context():
        kinds = db.session.scalars(select(PaymentEvent.kind).order_by(PaymentEvent.id)).all()
    assert kinds == [PaymentEventKind.ACCEPTED, PaymentEventKind.DUPLICATE]
    assert refused_rows(app) == [("198.51.100.7", "bad_signature", 3)]


def test_a_signed_notify_that_needs_a_person_is_still_one_payment_event(app, client):
    with app.app_context():
        notify = pay_gateway(app.config).signed_notification(
            out_trade_no="DQ20990101000000123456", transaction_id="4200000000000001", total_fee=3990, openid="o")
    assert post_notify(client, notify).status_code == 400
    with app.app_context():
        assert db.session.scalars(select(PaymentEvent.kind)).all() == [PaymentEventKind.UNKNOWN_ORDER]
    assert refused_rows(app) == []


# ------------------------------------------------------------------------------------------------- DTDs

def _with_dtd_after_padding(notify: bytes) -> bytes:
    # A comment longer than the 1024 bytes the old check looked at, then a DTD whose entity nothing uses: the
    # signed fields are unchanged, so only the DTD check can refuse it.
    return b"<!--" + b"x" * 2000 + b'--><!DOCTYPE xml [<!ENTITY boom "boom">]>' + notify


def test_a_dtd_after_the_first_kilobyte_of_a_correctly_signed_notify_is_refused(app, client, unpaid_order):
    order_no, notify = unpaid_order
    answer = post_notify(client, _with_dtd_after_padding(notify))

    assert answer.status_code == 400 and FAIL in answer.get_data(as_text=True)
    assert order_status(app, order_no) == OrderStatus.PENDING_PAYMENT
    assert refused_rows(app) == [("198.51.100.7", "dtd", 1)]
    assert payment_events(app) == 0


def test_a_dtd_spelled_in_utf16_is_refused(app, client, unpaid_order):
    order_no, notify = unpaid_order
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE xml [<!ENTITY e "boom">]>' + notify.decode()
    answer = post_notify(client, text.encode("utf-16"))

    assert answer.status_code == 400
    assert order_status(app, order_no) == OrderStatus.PENDING_PAYMENT
    assert refused_rows(app) == [("198.51.100.7", "dtd", 1)]


def test_the_parser_itself_refuses_a_late_dtd(app, unpaid_order):
    from dingqiao.wechat.pay import InvalidNotification

    _order_no, notify = unpaid_order
    with pytest.raises(InvalidNotification) as refused:
        pay_gateway(app.config).parse_notification(_with_dtd_after_padding(notify))
    assert refused.value.reason == "dtd"


# ------------------------------------------------------------------------------------- finance's page

@pytest.fixture
def finance(app, client):
    with app.app_context():
        admin_id = create_admin(db.session, "fin-notify", "long-enough-pw", AdminRole.FINANCE).id
    log_in_admin(client, admin_id)
    return client


def test_finance_sees_the_counted_senders_apart_from_the_queue(app, finance):
    with app.app_context():
        record_refused_notify(db.session, "198.51.100.7", "bad_signature", b"<xml>forged</xml>", "forged")
        record_refused_notify(db.session, "198.51.100.7", "bad_signature", b"<xml>forged</xml>", "forged")
        db.session.add(PaymentEvent(kind=PaymentEventKind.AFTER_CANCEL, out_trade_no="DQ9", amount_fen=100,
                                    needs_attention=True))
        db.session.commit()
    page = finance.get("/admin/payment-events").get_data(as_text=True)
    queue, refused = page.split("被拒收的通知")
    assert "DQ9" in queue and "198.51.100.7" not in queue
    assert re.search(r"<td>198\.51\.100\.7</td><td>签名错误</td><td>2</td>", refused)


# ------------------------------------------------------------------------------------------ admin queues

def many(model, rows: list[dict]) -> None:
    db.session.execute(insert(model), rows)


@pytest.fixture
def full_queues(app):
    """One page and one row more in every admin queue and content list."""
    n = PAGE_SIZE + 1
    with app.app_context():
        buyer = make_user("买家")
        outlet = make_outlet(make_user("店主"))
        order = make_order(buyer, outlet, make_product())
        region = make_region()
        applicants = [make_user(f"申请人{i}") for i in range(n)]
        wallet = Wallet(user_id=buyer.id)
        platform = StockLocation(kind=LocationKind.PLATFORM, name="平台仓")
        factory = StockLocation(kind=LocationKind.FACTORY, name="工厂店仓")
        db.session.add_all([wallet, platform, factory])
        db.session.flush()
        many(Refund, [{"order_id": order.id, "out_refund_no": f"RF{i:08d}", "amount_fen": 1,
                       "status": RefundStatus.REQUESTED} for i in range(n)])
        many(Withdrawal, [{"withdrawal_no": f"W{i:08d}", "user_id": buyer.id, "wallet_id": wallet.id, "amount_fen": 100}
                          for i in range(n)])
        many(PaymentEvent, [{"kind": PaymentEventKind.MISMATCH, "out_trade_no": f"DQ{i:08d}", "amount_fen": 1,
                             "transaction_id": f"42{i:016d}",
                             "needs_attention": True} for i in range(n)])
        many(IdentityApplication, [{"user_id": user.id, "target": "outlet", "status": "review", "region_id": region.id,
                                    "shop_name": f"店{i}", "address": "某路"} for i, user in enumerate(applicants)])
        many(RestockOrder, [{"restock_no": f"RS{i:08d}", "from_location_id": platform.id,
                             "to_location_id": factory.id} for i in range(n)])
        many(OutboxMessage, [{"dedup_key": f"test:{i}", "user_id": buyer.id, "event": "order_paid", "title": f"消息{i}",
                              "status": DeliveryStatus.FAILED} for i in range(n)])
        many(ServiceCase, [{"case_no": f"SC{i:08d}", "user_id": buyer.id, "kind": CaseKind.OTHER,
                            "subject": f"咨询{i}", "status": CaseStatus.OPEN} for i in range(n)])
        many(Banner, [{"title": f"横幅{i}", "image_path": "x.jpg", "target_kind": "product", "target_id": 1}
                      for i in range(n)])
        many(Article, [{"title": f"文章{i}"} for i in range(n)])
        many(Announcement, [{"text": f"公告{i}"} for i in range(n)])
        db.session.commit()
        admin_id = create_admin(db.session, "super-queues", "long-enough-pw", AdminRole.SUPERADMIN).id
    return admin_id


QUEUES = ["/admin/refunds", "/admin/withdrawals", "/admin/payment-events", "/admin/applications", "/admin/restocks",
          "/admin/messages", "/admin/service/", "/admin/service/?status=open", "/admin/content/banners",
          "/admin/content/articles", "/admin/content/announcements"]


def rows_shown(page: str) -> int:
    table = page.split("<tbody>")[1].split("</tbody>")[0]
    return table.count("<tr")


@pytest.mark.parametrize("url", QUEUES)
def test_every_admin_queue_shows_one_page_and_links_the_next(app, client, full_queues, url):
    log_in_admin(client, full_queues)
    first = client.get(url)
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert rows_shown(page) == PAGE_SIZE
    assert f"共 {PAGE_SIZE + 1} 条" in page and 'rel="next"' in page and 'rel="prev"' not in page
    next_link = re.search(r'href="(\?[^"]*)" rel="next"', page).group(1).replace("&amp;", "&")
    assert "page=2" in next_link and ("status=open" in next_link) == ("status=open" in url)

    second = client.get(url.split("?")[0] + next_link).get_data(as_text=True)
    assert rows_shown(second) == 1 and 'rel="prev"' in second and 'rel="next"' not in second


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5", "99999999999999999999999", "999999999999999999", "2"])
@pytest.mark.parametrize("url", QUEUES)
def test_no_page_number_makes_a_queue_fail(app, client, full_queues, url, page):
    log_in_admin(client, full_queues)
    answer = client.get(f"{url}{'&' if '?' in url else '?'}page={page}")
    assert answer.status_code in (200, 404)
    if answer.status_code == 200:
        assert rows_shown(answer.get_data(as_text=True)) in (1, PAGE_SIZE)


@pytest.mark.parametrize("page", ["abc", "0", "-1", "99999999999999999999999", "999999999999999999"])
def test_flask_admin_lists_answer_any_page_number(app, client, full_queues, page):
    log_in_admin(client, full_queues)
    for url in ("/admin/data/orders/", "/admin/data/users/", "/admin/data/withdrawals/"):
        answer = client.get(url, query_string={"page": page})
        assert answer.status_code in (200, 404), url


def test_the_dashboard_counts_what_the_queues_list(app, client, full_queues):
    with app.app_context():  # rows that wait for someone without waiting for a first review
        db.session.execute(update(Withdrawal).where(Withdrawal.id <= 2).values(status=WithdrawalStatus.APPROVED))
        db.session.execute(update(Refund).where(Refund.id <= 2).values(status=RefundStatus.FAILED))
        db.session.execute(update(IdentityApplication).where(IdentityApplication.id <= 2)
                           .values(status=ApplicationStatus.WAITING))
        db.session.commit()
    log_in_admin(client, full_queues)
    home = client.get("/admin/").get_data(as_text=True)
    for stat, url in (("withdrawals", "/admin/withdrawals"), ("refunds", "/admin/refunds"),
                      ("cases", "/admin/service/?status=open"), ("applications", "/admin/applications")):
        shown = re.search(rf'data-stat="{stat}">(\d+)<', home).group(1)
        assert f"共 {shown} 条" in client.get(url).get_data(as_text=True), stat
