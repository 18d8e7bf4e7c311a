"""售后与客服: cases with photos, who may see them, how the status follows the thread, refunds from a case,
and the team's queue."""
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminUser,
    AuditLog,
    CaseStatus,
    Order,
    OutboxMessage,
    Refund,
    RefundStatus,
    ServiceCase,
    ServiceMessage,
    ServicePhoto,
)
from dingqiao.services import NotFound
from dingqiao.services import service_cases
from dingqiao.services.accounts import create_admin
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.refunds import request_refund
from tests.conftest import Unexpected, csrf_token, log_in_admin, run_concurrently
from tests.factories import make_order, make_outlet, make_product, make_user
from tests.money_world import build_world, buy, pay, pick_up
from tests.test_access import log_in


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    color = (200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40)
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def noisy_png(side: int = 64) -> bytes:
    """Random pixels: a PNG that does not compress below side² × 3 bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def post_form(client, url: str, fields: dict, photos=(), headers=None):
    data = {"csrf_token": csrf_token(client), **fields,
            "photos": [(io.BytesIO(content), name) for name, content in photos]}
    return client.post(url, data=data, content_type="multipart/form-data", headers=headers or {})


def open_via_form(client, photos=(), headers=None, **fields):
    values = {"kind": "quality", "subject": "洗衣液漏了", "body": "收到时瓶盖裂开，洗衣液漏了一半。", **fields}
    return post_form(client, "/service/", values, photos, headers)


def row_counts(app) -> tuple[int, int, int]:
    with app.app_context():
        return tuple(db.session.scalar(select(func.count()).select_from(model))
                     for model in (ServiceCase, ServiceMessage, ServicePhoto))


def stored_files(app) -> list[Path]:
    return [p for p in Path(app.config["UPLOAD_FOLDER"]).rglob("*") if p.is_file()]


def storage(app) -> dict:
    return {"upload_folder": app.config["UPLOAD_FOLDER"], "max_bytes": app.config["UPLOAD_MAX_BYTES"]}


@dataclass
class People:
    alice: int
    bob: int
    alice_order: str
    bob_order: str
    admin: int


@pytest.fixture
def people(app) -> People:
    with app.app_context():
        alice, bob = make_user("爱丽丝"), make_user("鲍勃")
        outlet, product = make_outlet(make_user("店主")), make_product()
        alice_order, bob_order = make_order(alice, outlet, product), make_order(bob, outlet, product)
        admin = create_admin(db.session, "kefu", "long-enough-pw")
        return People(alice.id, bob.id, alice_order.order_no, bob_order.order_no, admin.id)


def open_directly(app, user_id: int, subject: str = "咨询", body: str = "请问怎么用？", **fields) -> int:
    with app.app_context():
        return service_cases.open_case(db.session, user_id, kind=fields.pop("kind", "other"), subject=subject,
                                       body=body, **fields, **storage(app)).id


def reply_directly(app, admin_id: int, case_id: int, body: str = "您好，已为您处理。") -> None:
    with app.app_context():
        service_cases.add_admin_reply(db.session, db.session.get(AdminUser, admin_id), case_id, body, **storage(app))


def case_row(app, case_id: int) -> ServiceCase:
    with app.app_context():
        case = db.session.get(ServiceCase, case_id)
        db.session.expunge(case)
        return case


# ---------------------------------------------------------------- photos


def test_a_case_with_photos_stores_reencoded_images_that_media_serves(app, client, people):
    log_in(client, people.alice)
    uploads = [("receipt.png", image_bytes("PNG")), ("photo.jpg", image_bytes("JPEG", (30, 50))),
               ("sticker.png", image_bytes("PNG", (20, 20), "RGBA"))]
    response = open_via_form(client, uploads, order_no=people.alice_order)
    assert response.status_code == 303
    case_id = int(re.fullmatch(r"/service/(\d+)", response.headers["Location"]).group(1))

    with app.app_context():
        case = db.session.get(ServiceCase, case_id)
        assert re.fullmatch(r"SV\d{24}", case.case_no)
        assert (case.user_id, case.status, case.kind, case.subject) == (people.alice, "open", "quality", "洗衣液漏了")
        assert db.session.get(Order, case.order_id).order_no == people.alice_order
        [message] = case.messages
        assert message.author_user_id == people.alice and message.body.startswith("收到时瓶盖裂开")
        photos = [(p.path, p.width, p.height) for p in message.photos]
    # An opaque PNG becomes a JPEG; a transparent one stays PNG: what is stored is what we encoded.
    assert [Path(path).suffix for path, _, _ in photos] == [".jpg", ".jpg", ".png"]
    assert [(w, h) for _, w, h in photos] == [(40, 30), (30, 50), (20, 20)]
    assert all(path.startswith("service/") for path, _, _ in photos)

    thread = client.get(f"/service/{case_id}").get_data(as_text=True)
    for (path, width, height), (_, original) in zip(photos, uploads):
        assert f"/media/{path}" in thread
        served = client.get(f"/media/{path}")
        assert served.status_code == 200 and served.mimetype in {"image/jpeg", "image/png"}
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert served.data != original
        with Image.open(io.BytesIO(served.data)) as image:
            assert image.size == (width, height)
            assert image.format == ("PNG" if path.endswith(".png") else "JPEG")


def test_an_oversized_photo_is_refused_and_nothing_is_written(app, client, people):
    app.config["UPLOAD_MAX_BYTES"] = 4096
    log_in(client, people.alice)
    big = noisy_png()
    assert len(big) > 4096
    # The first photo is fine and gets stored before the second is refused: it must be removed again.
    response = open_via_form(client, [("ok.png", image_bytes("PNG", (8, 8))), ("big.png", big)])
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "第 2 张图片" in body and "图片不能超过" in body
    assert row_counts(app) == (0, 0, 0)
    assert stored_files(app) == []


@pytest.mark.parametrize("name, content", [
    ("fake.jpg", b"<html><body><script>alert(document.cookie)</script></body></html>"),
    ("notes.txt", "瓶盖裂开了，请尽快处理".encode()),
])
def test_a_file_that_is_not_an_image_is_refused_with_a_message_in_the_page(app, client, people, name, content):
    log_in(client, people.alice)
    response = open_via_form(client, [(name, content)], headers={"HX-Request": "true"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "无法识别的图片文件" in body and "<html" not in body
    assert response.headers["HX-Retarget"] == "#flash"  # where it goes in a form without a place for it
    assert response.headers["DQ-Field"] == "photos"  # app.js puts it next to the form's photos, which has one
    assert row_counts(app) == (0, 0, 0)
    assert stored_files(app) == []


def test_an_empty_message_is_refused_before_any_photo_is_stored(app, client, people):
    log_in(client, people.alice)
    response = open_via_form(client, [("ok.png", image_bytes())], body="   \n ")
    assert response.status_code == 400 and "请填写留言内容" in response.get_data(as_text=True)
    assert row_counts(app) == (0, 0, 0)
    assert stored_files(app) == []


def test_seven_photos_or_a_long_subject_are_refused(app, people):
    photos = [io.BytesIO(image_bytes()) for _ in range(7)]
    with app.app_context():
        # Each refusal names the field it is about, for the form to show it there.
        with pytest.raises(service_cases.CaseError, match="最多 6 张") as refused:
            service_cases.open_case(db.session, people.alice, kind="quality", subject="", body="七张图",
                                    photos=photos, **storage(app))
        assert refused.value.field == "photos"
        with pytest.raises(service_cases.CaseError, match="标题不能超过 64 个字") as refused:
            service_cases.open_case(db.session, people.alice, kind="other", subject="长" * 65, body="内容",
                                    **storage(app))
        assert refused.value.field == "subject"
        with pytest.raises(service_cases.CaseError, match="请选择问题类型") as refused:
            service_cases.open_case(db.session, people.alice, kind="complaint", subject="", body="内容",
                                    **storage(app))
        assert refused.value.field == "kind"
    assert row_counts(app) == (0, 0, 0)
    assert stored_files(app) == []


def test_a_failed_transaction_leaves_neither_rows_nor_files(app, people):
    with app.app_context():
        with pytest.raises(NotFound):
            service_cases.open_case(db.session, people.alice, kind="quality", subject="", body="别人的订单",
                                    order_no=people.bob_order, photos=[io.BytesIO(image_bytes())], **storage(app))
    assert row_counts(app) == (0, 0, 0)
    assert stored_files(app) == []


def test_a_blank_subject_is_taken_from_the_message(app, people):
    case_id = open_directly(app, people.alice, subject="  ", body="  门店  关门了\n怎么提货？")
    assert case_row(app, case_id).subject == "门店 关门了 怎么提货？"


# ---------------------------------------------------------------- who sees what


def test_another_members_case_and_order_are_404(app, client, people):
    case_id = open_directly(app, people.alice, subject="爱丽丝的问题")
    log_in(client, people.bob)
    assert client.get(f"/service/{case_id}").status_code == 404
    assert post_form(client, f"/service/{case_id}/messages", {"body": "我来捣乱"}).status_code == 404
    assert post_form(client, f"/service/{case_id}/close", {}).status_code == 404
    assert "爱丽丝的问题" not in client.get("/service/").get_data(as_text=True)
    # Alice's order cannot be attached to Bob's case, nor offered to him by the link of her order page.
    assert open_via_form(client, order_no=people.alice_order).status_code == 404
    assert people.alice_order not in client.get(f"/service/?order={people.alice_order}").get_data(as_text=True)
    case = case_row(app, case_id)
    assert case.status == "open" and case.closed_at is None
    assert row_counts(app) == (1, 1, 0)


def test_strangers_go_to_login_and_members_cannot_open_the_admin_queue(app, client, people):
    case_id = open_directly(app, people.alice)
    for path in ("/service/", f"/service/{case_id}"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login?next=")
    assert client.get("/admin/service/").headers["Location"].startswith("/admin/login")
    log_in(client, people.alice)
    for path in ("/admin/service/", f"/admin/service/{case_id}"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    assert post_form(client, f"/admin/service/{case_id}/reply", {"body": "冒充客服"}).status_code == 302
    assert row_counts(app) == (1, 1, 0)
    assert case_row(app, case_id).status == "open"


def test_order_page_and_me_page_lead_to_customer_service(app, client, people):
    log_in(client, people.alice)
    order_page = client.get(f"/orders/{people.alice_order}").get_data(as_text=True)
    assert f'href="/service/?order={people.alice_order}"' in order_page
    assert 'href="/service/"' in client.get("/me/").get_data(as_text=True)
    form = client.get(f"/service/?order={people.alice_order}").get_data(as_text=True)
    assert f'<option value="{people.alice_order}" selected>' in form
    assert 'enctype="multipart/form-data"' in form and 'hx-encoding="multipart/form-data"' in form
    assert 'type="file" name="photos" accept="image/*" multiple' in form


# ---------------------------------------------------------------- the thread


def test_a_closed_case_refuses_messages(app, client, people):
    log_in(client, people.alice)
    case_id = open_directly(app, people.alice)
    assert post_form(client, f"/service/{case_id}/close", {}).status_code == 303
    case = case_row(app, case_id)
    assert case.status == "closed" and case.closed_at is not None
    refused = post_form(client, f"/service/{case_id}/messages", {"body": "还有一个问题"}, [("a.png", image_bytes())])
    assert refused.status_code == 409 and "该服务单已关闭" in refused.get_data(as_text=True)
    assert post_form(client, f"/service/{case_id}/close", {}).status_code == 409
    with app.app_context():
        with pytest.raises(service_cases.CaseClosed):
            service_cases.add_admin_reply(db.session, db.session.get(AdminUser, people.admin), case_id, "迟到的回复",
                                          **storage(app))
    assert row_counts(app) == (1, 1, 0)
    assert stored_files(app) == []
    page = client.get(f"/service/{case_id}").get_data(as_text=True)
    assert "该服务单已于" in page and f"/service/{case_id}/messages" not in page


def test_the_status_follows_the_thread_and_a_reply_notifies_the_member(app, client, people):
    log_in(client, people.alice)
    case_id = int(open_via_form(client).headers["Location"].rsplit("/", 1)[1])
    assert case_row(app, case_id).status == "open"

    team = app.test_client()
    log_in_admin(team, people.admin)
    queue = team.get("/admin/service/").get_data(as_text=True)
    assert case_row(app, case_id).case_no in queue and "爱丽丝" in queue
    reply = post_form(team, f"/admin/service/{case_id}/reply", {"body": "您好，请拍一下瓶底的批次号。"},
                      [("hint.png", image_bytes())])
    assert reply.status_code == 303 and reply.headers["Location"] == f"/admin/service/{case_id}"
    assert case_row(app, case_id).status == "answered"
    with app.app_context():
        answer = db.session.scalar(select(ServiceMessage).where(ServiceMessage.author_admin_id == people.admin))
        assert answer.case_id == case_id and len(answer.photos) == 1
        [notice] = db.session.scalars(select(OutboxMessage)).all()
        assert (notice.user_id, notice.event, notice.dedup_key, notice.link) == (
            people.alice, "service_reply", f"service_reply:{answer.id}", f"/service/{case_id}")
        assert "批次号" in notice.body
        [audit] = db.session.scalars(select(AuditLog).where(AuditLog.action == "service.reply")).all()
        assert (audit.actor_kind, audit.actor_id, audit.target_type) == ("admin", people.admin, "service_case")
    thread = client.get(f"/service/{case_id}").get_data(as_text=True)
    assert "请拍一下瓶底的批次号" in thread and "客服" in thread

    assert post_form(client, f"/service/{case_id}/messages", {"body": "批次号见图"},
                     [("batch.jpg", image_bytes("JPEG"))]).status_code == 303
    assert case_row(app, case_id).status == "open"
    assert post_form(team, f"/admin/service/{case_id}/close", {}).status_code == 303
    assert case_row(app, case_id).status == "closed"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1  # members' words notify no one
        actions = db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
        assert actions == ["admin.create", "service.reply", "service.close"]
        assert verify_audit_chain(db.session) is None
    assert row_counts(app) == (1, 3, 2)


def test_a_reply_racing_a_close_is_either_first_or_refused_and_never_reopens_the_case(app, people):
    case_ids = [open_directly(app, people.alice, subject=f"问题{n}") for n in range(4)]

    def work(action: str, case_id: int) -> str:
        if action == "close":
            service_cases.close_case_by_admin(db.session, db.session.get(AdminUser, people.admin), case_id)
        else:
            service_cases.add_member_message(db.session, people.alice, case_id, "补充一句", **storage(app))
        return action

    for case_id in case_ids:
        results = run_concurrently(app, work, [("reply", case_id), ("close", case_id)])
        assert not [r for r in results if isinstance(r, Unexpected)], results
        assert results[1] == "close"
        assert results[0] == "reply" or isinstance(results[0], service_cases.CaseClosed)
        assert case_row(app, case_id).status == "closed"
        with app.app_context():
            messages = db.session.scalar(select(func.count()).where(ServiceMessage.case_id == case_id))
        assert messages == (2 if results[0] == "reply" else 1)


def test_the_admin_queue_lists_open_cases_first_then_answered_newest_activity_first(app, people):
    first = open_directly(app, people.alice, subject="第一单")
    answered = open_directly(app, people.bob, subject="已回复单")
    third = open_directly(app, people.alice, subject="第三单")
    closed = open_directly(app, people.bob, subject="已关闭单")
    reply_directly(app, people.admin, answered)
    with app.app_context():
        service_cases.close_member_case(db.session, people.bob, closed)
        service_cases.add_member_message(db.session, people.alice, first, "还在等回复", **storage(app))
    # "answered" has newer activity than "third", but cases waiting for the team come first.
    with app.app_context():
        assert [case.id for case, _ in service_cases.admin_queue(db.session).rows] == [first, third, answered]

    team = app.test_client()
    log_in_admin(team, people.admin)
    numbers = {case_id: case_row(app, case_id).case_no for case_id in (first, answered, third, closed)}

    def listed(query: str = "") -> list[int]:
        page = team.get(f"/admin/service/{query}").get_data(as_text=True)
        return sorted((case_id for case_id, no in numbers.items() if no in page), key=lambda c: page.index(numbers[c]))

    assert listed() == [first, third, answered]
    assert listed("?status=answered") == [answered]
    assert listed("?status=closed") == [closed]
    detail = team.get(f"/admin/service/{answered}").get_data(as_text=True)
    assert "鲍勃" in detail and "您好，已为您处理。" in detail and "关闭服务单" in detail


# ---------------------------------------------------------------- refunds from a case


def test_a_refund_case_on_a_paid_order_requests_the_refund(app, client):
    world = build_world(app)
    order_no = buy(app, world)
    pay(app, order_no)
    log_in(client, world.buyer)
    response = open_via_form(client, kind="refund", order_no=order_no, subject="不想要了", body="临时出差，无法自提。")
    assert response.status_code == 303
    case_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        order = db.session.scalar(select(Order).where(Order.order_no == order_no))
        [refund] = db.session.scalars(select(Refund).where(Refund.order_id == order.id)).all()
        assert refund.status == RefundStatus.REQUESTED and refund.amount_fen == order.total_fen
        assert refund.requested_by_user_id == world.buyer and order.after_sales_open
        assert case_row(app, case_id).case_no in refund.reason and "无法自提" in refund.reason
    page = client.get(f"/service/{case_id}").get_data(as_text=True)
    assert f"已为订单 {order_no} 提交退款申请" in page and "退款待审核" in page
    assert case_row(app, case_id).status == "open"


@pytest.mark.parametrize("situation, explanation", [
    ("picked_up", "已提货的订单请在此说明问题"),
    ("unpaid", "只有已支付、未自提的订单可以申请退款"),
    ("already_requested", "该订单已有退款申请在处理中"),
])
def test_a_refund_case_on_an_order_that_cannot_be_refunded_opens_and_says_why(app, client, situation, explanation):
    world = build_world(app)
    order_no = buy(app, world)
    if situation != "unpaid":
        pay(app, order_no)
    if situation == "picked_up":
        pick_up(app, world, order_no)
    if situation == "already_requested":
        with app.app_context():
            request_refund(db.session, world.buyer, order_no, "先申请过一次")
    log_in(client, world.buyer)
    response = open_via_form(client, kind="refund", order_no=order_no, subject="要退款", body="质量有问题。")
    assert response.status_code == 303
    case_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        refunds = db.session.scalars(select(Refund).join(Order).where(Order.order_no == order_no)).all()
        assert len(refunds) == (1 if situation == "already_requested" else 0)
    case = case_row(app, case_id)
    assert (case.kind, case.status) == ("refund", CaseStatus.OPEN)
    page = client.get(f"/service/{case_id}").get_data(as_text=True)
    assert "未能自动提交退款申请" in page and explanation in page and "质量有问题。" in page
