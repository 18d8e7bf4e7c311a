"""消息中心: the outbox rows as the member's messages, with the unread badge and mark-as-read."""
import re

from sqlalchemy import func, select, update

from dingqiao.extensions import db
from dingqiao.models import OutboxMessage
from tests.conftest import csrf_token
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_access import log_in


def badge(html: str) -> str | None:
    match = re.search(r'<span id="dq-unread"([^>]*)>([^<]*)</span>', html)
    return None if match is None or " hidden" in match.group(1) else match.group(2).strip()


def test_events_arrive_as_messages_with_a_badge_and_are_read_by_opening_them(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    log_in(client, world.buyer)
    home = client.get("/").get_data(as_text=True)
    assert badge(home) == "2"  # paid (ready for pickup) and picked up
    page = client.get("/messages/").get_data(as_text=True)
    assert "支付成功，待自提" in page and "已提货" in page and "全部已读（2）" in page
    with app.app_context():
        first = db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.user_id == world.buyer,
                                                                 OutboxMessage.event == "order_paid"))
    opened = client.get(f"/messages/{first}")
    assert opened.status_code == 302 and opened.headers["Location"] == f"/orders/{order_no}"
    assert badge(client.get("/").get_data(as_text=True)) == "1"
    assert badge(client.get("/messages/badge").get_data(as_text=True)) == "1"
    done = client.post("/messages/read-all", headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client)})
    assert done.status_code == 204
    assert badge(client.get("/").get_data(as_text=True)) is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.user_id == world.buyer, OutboxMessage.read_at.is_(None))) == 0


def test_someone_elses_message_is_not_found_and_links_stay_inside_the_site(app, client):
    world = build_world(app)
    pay(app, buy(app, world))
    with app.app_context():
        theirs = db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.user_id == world.buyer))
        mine = db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.user_id == world.parent))
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == mine).values(link="//evil.example/x"))
        db.session.commit()
    log_in(client, world.parent)
    assert client.get(f"/messages/{theirs}").status_code == 404
    with app.app_context():
        assert db.session.get(OutboxMessage, theirs).read_at is None
    assert client.get(f"/messages/{mine}").headers["Location"] == "/messages/"
    stranger = app.test_client()
    assert stranger.get("/messages/").status_code == 302


def test_the_list_pages_with_infinite_scroll(app, client):
    world = build_world(app)
    from dingqiao.services.messages import enqueue_message

    with app.app_context():
        for n in range(35):
            enqueue_message(db.session, user_id=world.buyer, event="test", object_id=n, title=f"第{n}条", body="")
        db.session.commit()
    log_in(client, world.buyer)
    first = client.get("/messages/").get_data(as_text=True)
    assert "第34条" in first and "第5条" in first and "第4条" not in first and 'hx-trigger="revealed"' in first
    next_url = re.search(r'hx-get="(/messages/\?before=\d+)"', first).group(1)
    rest = client.get(next_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in rest and "第4条" in rest and "第0条" in rest and "revealed" not in rest
