"""Feedback a person gets without a browser test: pages whose state moves are never kept by the browser, the
upload limits every page tells its file inputs, 消息中心 from 我的 with links to what each message is about,
and demo messages dated like the events they tell of."""
import io
import re
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import select
from PIL import Image

from dingqiao.extensions import db
from dingqiao.models import Order, OutboxMessage
from dingqiao.models.base import utcnow
from dingqiao.services.demo_data import seed_demo, seed_demo_history
from dingqiao.services.messages import enqueue_message, inbox, target_label
from dingqiao.uploads import UploadRefused, save_image
from tests.conftest import make_config
from tests.factories import make_user
from tests.money_world import build_world, buy, pay
from tests.test_access import log_in

NO_STORE = "private, no-store"
HISTORY_MARKER = '<div hx-history="false" hidden></div>'


# ------------------------------------------------------------------------------------- Back shows what is

def test_cart_checkout_orders_wallet_and_messages_are_never_kept_by_the_browser(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    # A visitor's cart too (no login: the header of logged-in pages does not cover it), page and fragment.
    visitor = app.test_client()
    for headers in ({}, {"HX-Request": "true"}):
        response = visitor.get("/cart/", headers=headers)
        assert response.status_code == 200 and response.headers["Cache-Control"] == NO_STORE
    assert HISTORY_MARKER in visitor.get("/cart/").get_data(as_text=True)
    shop = visitor.get("/")
    assert "no-store" not in shop.headers.get("Cache-Control", "")
    assert HISTORY_MARKER not in shop.get_data(as_text=True)

    log_in(client, world.buyer)
    for path in ("/cart/", "/orders/", f"/orders/{order_no}", "/wallet/", "/messages/", "/me/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == NO_STORE, path
        # Out of htmx's history cache too, also when the page arrives by a boosted navigation.
        boosted = client.get(path, headers={"HX-Request": "true", "HX-Boosted": "true"}).get_data(as_text=True)
        assert HISTORY_MARKER in boosted[boosted.index("<main"):], path


def test_a_view_that_chose_its_own_cache_header_keeps_it(app, client):
    world = build_world(app)
    log_in(client, world.buyer)
    assert client.get("/messages/badge").headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------------------------------ upload limits

def upload_meta(html: str) -> dict[str, str]:
    tag = re.search(r'<meta name="dq-upload"[^>]*>', html).group(0)
    return {name: unescape(value) for name, value in re.findall(r'([a-z-]+)="([^"]*)"', tag)}


@pytest.mark.parametrize(("max_bytes", "said"), [(5 * 1024 * 1024, "5 MB"), (2 * 1024 * 1024, "2 MB"),
                                                 (300 * 1024, "300 KB")])
def test_every_page_tells_its_file_inputs_the_servers_limit_and_formats(app_config, request, tmp_path, max_bytes,
                                                                         said):
    app_config["UPLOAD_MAX_BYTES"] = max_bytes
    app = request.getfixturevalue("app")
    meta = upload_meta(app.test_client().get("/").get_data(as_text=True))
    assert meta["content"] == str(max_bytes)
    assert meta["data-types"].split(",") == ["image/jpeg", "image/png", "image/webp", "image/gif"]
    assert meta["data-too-large"] == f"图片不能超过 {said}，请压缩后重试。"
    assert meta["data-wrong-type"] == "只支持 JPG、PNG、WEBP、GIF 格式的图片。"
    # … word for word what the server says when a file gets past the browser.
    with pytest.raises(UploadRefused) as refused:
        save_image(io.BytesIO(b"x" * (max_bytes + 1)), str(tmp_path), "test", max_bytes)
    assert refused.value.message == meta["data-too-large"]
    bitmap = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bitmap, "BMP")
    bitmap.seek(0)
    with pytest.raises(UploadRefused) as refused:
        save_image(bitmap, str(tmp_path), "test", max_bytes)
    assert refused.value.message == meta["data-wrong-type"]


# ------------------------------------------------------------------------------------------ 消息中心

def test_me_links_to_the_message_centre_with_the_unread_count(app, client):
    world = build_world(app)
    pay(app, buy(app, world))
    log_in(client, world.buyer)
    me = client.get("/me/").get_data(as_text=True)
    cell = re.search(r'<a class="weui-cell weui-cell_access dq-me-messages" href="/messages/">(.*?)</a>', me, re.S)
    assert cell and "消息中心" in cell.group(1)
    assert re.search(r'<span class="weui-badge"[^>]*>1</span>', cell.group(1))
    client.post("/messages/read-all", headers={"HX-Request": "true", "X-CSRFToken": csrf(client)})
    again = client.get("/me/").get_data(as_text=True)
    assert "dq-me-messages" in again and "weui-badge" not in again


def csrf(client) -> str:
    from tests.conftest import csrf_token

    return csrf_token(client)


def test_each_message_names_what_it_opens(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    with app.app_context():
        enqueue_message(db.session, user_id=world.buyer, event="test_note", object_id=1, title="系统通知",
                        body="没有去处的消息。")
        db.session.commit()
    log_in(client, world.buyer)
    page = client.get("/messages/").get_data(as_text=True)
    cells = re.findall(r'<a class="weui-cell([^"]*) dq-msg[^"]*" href="(/messages/\d+)">(.*?)</a>', page, re.S)
    by_title = {re.search(r'dq-msg__title">([^<]*)<', body).group(1): (classes, href, body)
                for classes, href, body in cells}
    classes, href, body = by_title["支付成功，待自提"]
    assert "weui-cell_access" in classes and '<div class="weui-cell__ft">查看订单</div>' in body
    assert client.get(href).headers["Location"] == f"/orders/{order_no}"
    classes, href, body = by_title["系统通知"]
    assert "weui-cell_access" not in classes and '<div class="weui-cell__ft"></div>' in body
    assert client.get(href).headers["Location"] == "/messages/"


@pytest.mark.parametrize(("link", "label"), [
    ("/orders/DQ1", "查看订单"), ("/wallet/", "查看钱包"), ("/service/3", "查看售后"), ("/restock/4", "查看进货单"),
    ("/me/upgrade", "查看申请"), ("/outlet/staff", "查看店员"), ("/me/", "查看"), ("", ""),
    ("//evil.example/x", ""), ("/\\evil.example", ""), ("https://evil.example/", ""),
])
def test_target_labels(link, label):
    assert target_label(link) == label


def test_the_inbox_is_newest_first_by_time_and_pages_by_it(app):
    with app.app_context():
        user = make_user("读者")
        now = utcnow()
        # written in one order, dated in another (as the demo's weeks are)
        ages = [3, 10, 1, 7, 5, 5, 0]
        for n, days in enumerate(ages):
            enqueue_message(db.session, user_id=user.id, event="note", object_id=n, title=f"第{n}条", body="")
        db.session.commit()
        messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.user_id == user.id)
                                      .order_by(OutboxMessage.id)).all()
        for message, days in zip(messages, ages):
            message.created_at = now - timedelta(days=days)
        db.session.commit()
        newest_first = [m.title for m in inbox(db.session, user.id, limit=100)]
        assert newest_first == ["第6条", "第2条", "第0条", "第5条", "第4条", "第3条", "第1条"]  # 5 and 4: same time
        pages, before = [], None
        while True:
            page = inbox(db.session, user.id, before_id=before, limit=3)
            if not page:
                break
            pages += [m.title for m in page]
            before = page[-1].id
        assert pages == newest_first


# ------------------------------------------------------------------------------------------ demo data

def test_demo_messages_are_dated_like_their_events_over_the_past_weeks(database_url, tmp_path):
    from dingqiao import create_app

    config = make_config(database_url, tmp_path, DINGQIAO_DEMO=True, WECHAT_APP_ID="", WECHAT_APP_SECRET="",
                         WECHAT_MCH_ID="", WECHAT_MCH_KEY="")
    app = create_app(config)
    with app.app_context():
        db.create_all()
        try:
            seed_demo(db.session, config["UPLOAD_FOLDER"], None)
            seed_demo_history(db.session)
            now = utcnow()
            messages = db.session.scalars(select(OutboxMessage)).all()
            assert len(messages) > 100
            days = {(now - m.created_at).days for m in messages}
            assert max(days) >= 14 and len(days) >= 10, sorted(days)  # spread over weeks, many different days
            assert all(m.created_at <= now for m in messages)
            orders = {o.id: o for o in db.session.scalars(select(Order))}
            for m in messages:
                event, _, rest = m.dedup_key.partition(":")
                if event in ("order_paid", "commission_frozen"):
                    assert m.created_at == orders[int(rest.split(":")[0])].paid_at, m.dedup_key
                elif event in ("order_redeemed", "commission_settled"):
                    order = orders[int(rest.split(":")[0])]
                    assert m.created_at == order.redeemed_at > order.paid_at, m.dedup_key
            # the one member who may now apply to be an outlet heard it after what made her eligible
            eligible = [m for m in messages if m.event == "identity_eligible"]
            for m in eligible:
                earlier = [o.created_at for o in messages if o.user_id == m.user_id and o.id < m.id]
                assert earlier and m.created_at > max(earlier) and now - m.created_at > timedelta(minutes=1)
        finally:
            db.session.remove()
            from tests.conftest import empty_database

            empty_database(app)
