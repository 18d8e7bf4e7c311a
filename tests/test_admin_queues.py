"""The admin queues as services (services/queues.py): each is bounded, and what the dashboard counts is what the
queue's page lists."""
import re

from dingqiao.extensions import db
from dingqiao.models import AdminRole, IdentityApplication, Refund, RefundStatus
from dingqiao.paging import PAGE_SIZE
from dingqiao.services import dashboards, queues
from dingqiao.services.accounts import create_admin
from tests.conftest import csrf_token, log_in_admin
from tests.factories import make_order, make_outlet, make_product, make_region, make_user


def admin_client(app, client, role=AdminRole.FINANCE):
    with app.app_context():
        admin_id = create_admin(db.session, "queue-admin", "correct-horse-9", role).id
    log_in_admin(client, admin_id)
    return client


def test_the_applications_queue_is_bounded_to_a_page_and_lists_review_before_waiting(app, client):
    """It once had its ``.limit(200)`` inside a comment: every open application was loaded at once."""
    count = PAGE_SIZE + 7
    with app.app_context():
        region = make_region()
        for n in range(count):
            user = make_user()
            db.session.add(IdentityApplication(user_id=user.id, target="outlet", region_id=region.id,
                                               status="waiting" if n % 2 else "review", shop_name=f"小店{n:03d}",
                                               address="杭州市滨江区江南大道 1 号", phone="0571-88001234"))
        db.session.commit()
        first, second = queues.open_applications(db.session, 1), queues.open_applications(db.session, 2)
        assert (len(first.rows), len(second.rows), first.total) == (PAGE_SIZE, count - PAGE_SIZE, count)
        statuses = [row.status for row in first.rows + second.rows]
        assert statuses == sorted(statuses) and statuses[0] == "review"  # review first, then waiting
        assert queues.open_applications_count(db.session) == count

    page = admin_client(app, client).get("/admin/applications").get_data(as_text=True)
    assert len(set(re.findall(r"小店\d{3}", page))) == PAGE_SIZE
    assert f"共 {count} 条" in page


def test_the_dashboard_counts_exactly_the_refunds_the_queue_lists(app, client):
    """One statement (queues.waiting_refunds / waiting_refunds_count) for both, whatever the refunds' states."""
    with app.app_context():
        buyer = make_user()
        order = make_order(buyer, make_outlet(make_user()), make_product())
        for n, status in enumerate(list(RefundStatus) * 2):
            db.session.add(Refund(order_id=order.id, out_refund_no=f"R{n:08d}", amount_fen=100, status=status))
        db.session.commit()
        waiting = [status for status in list(RefundStatus) * 2 if status in {
            RefundStatus.REQUESTED, RefundStatus.FAILED, RefundStatus.APPROVED, RefundStatus.PROCESSING}]
        page = queues.waiting_refunds(db.session, 1)
        assert len(waiting) < 2 * len(RefundStatus)  # some states are not waiting: the test could fail
        assert page.total == len(page.rows) == queues.waiting_refunds_count(db.session) == len(waiting)
        assert dashboards.admin_overview(db.session).refunds_pending == page.total
        assert all(refund.order_id == order.id for refund, _order in page.rows)

    admin_client(app, client)
    home = client.get("/admin/").get_data(as_text=True)
    assert re.search(r'data-stat="refunds">(\d+)<', home).group(1) == str(len(waiting))
    assert f"共 {len(waiting)} 条" in client.get("/admin/refunds").get_data(as_text=True)
