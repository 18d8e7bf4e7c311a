"""Members in the admin: the detail page, the audited correction of who brought whom (the whole team moves,
the closure table stays exact, no cycle even under a race), and disabling an account (logged out at once,
refused at login, money untouched)."""
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from dingqiao.extensions import db
from dingqiao.models import (
    AdminRole,
    AdminUser,
    AuditLog,
    BindingAttempt,
    BindingSource,
    ReferralBinding,
    TeamPath,
    User,
    Wallet,
    Withdrawal,
    WithdrawalStatus,
)
from dingqiao.services import DomainError
from dingqiao.services.accounts import (
    AccountDisabled,
    create_admin,
    record_member_login,
    set_member_active,
)
from dingqiao.services.audit import verify_audit_chain
from dingqiao.services.referrals import CorrectionRefused, bind_upline, correct_upline
from dingqiao.web import domain_error_status
from tests.conftest import csrf_token, log_in_admin, run_concurrently
from tests.factories import make_order, make_outlet, make_product, make_user, team_paths_from_bindings
from tests.fake_wechat import FakeWeChatUser
from tests.test_access import log_in
from tests.test_wechat_login import wechat_round_trip

REASON = "会员反映推荐人填错，已电话核实。"


@dataclass
class Tree:
    """top ← upper ← member ← child ← grandchild ← great (a three-level team under the member), member ←
    sibling, and a separate branch other_top ← other; ``admin`` is finance (who may correct an upline)."""
    top: int
    upper: int
    member: int
    child: int
    grandchild: int
    great: int
    sibling: int
    other_top: int
    other: int
    admin: int


@pytest.fixture
def tree(app) -> Tree:
    with app.app_context():
        ids = {name: make_user(name).id for name in
               ("top", "upper", "member", "child", "grandchild", "great", "sibling", "other_top", "other")}
        for child, upline in (("upper", "top"), ("member", "upper"), ("child", "member"), ("grandchild", "child"),
                              ("great", "grandchild"), ("sibling", "member"), ("other", "other_top")):
            bind_upline(db.session, ids[child], code(ids[upline]), BindingSource.LINK)
        admin = create_admin(db.session, "caiwu", "long-enough-pw", AdminRole.FINANCE)
        return Tree(**ids, admin=admin.id)


def code(user_id: int) -> str:
    return db.session.get(User, user_id).referral_code


def admin_of(tree: Tree) -> AdminUser:
    return db.session.get(AdminUser, tree.admin)


def closure() -> set[tuple[int, int, int]]:
    return {(p.ancestor_id, p.descendant_id, p.depth) for p in db.session.scalars(select(TeamPath))}


def uplines() -> dict[int, int]:
    return {b.user_id: b.upline_id for b in db.session.scalars(select(ReferralBinding))}


def audit_rows(action: str | None = None) -> list[AuditLog]:
    statement = select(AuditLog).order_by(AuditLog.id)
    if action:
        statement = statement.where(AuditLog.action == action)
    return list(db.session.scalars(statement))


def row_count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def snapshot() -> tuple:
    """Everything a refused correction or disable must leave as it was."""
    return (closure(), uplines(), row_count(BindingAttempt), row_count(AuditLog),
            {u.id: u.is_active for u in db.session.scalars(select(User))})


def assert_no_cycle() -> None:
    links = uplines()
    for start in links:
        seen, current = {start}, links[start]
        while current is not None:
            assert current not in seen, f"cycle through {current}"
            seen.add(current)
            current = links.get(current)


# --- the correction, at the service ---------------------------------------------------------------------------

def test_a_correction_moves_the_member_with_their_whole_team_and_is_audited(session, tree):
    before_attempts = row_count(BindingAttempt)
    binding = correct_upline(session, admin_of(tree), tree.member, code(tree.other).lower(), REASON)

    assert (binding.user_id, binding.upline_id) == (tree.member, tree.other)
    assert binding.source == BindingSource.ADMIN and binding.locked_until is None
    assert closure() == team_paths_from_bindings(session)
    assert {(tree.other_top, tree.great, 5), (tree.other, tree.sibling, 2), (tree.member, tree.great, 3)} <= closure()
    assert {row for row in closure() if row[0] in (tree.top, tree.upper)} == {(tree.top, tree.upper, 1)}
    attempt = session.scalars(select(BindingAttempt).order_by(BindingAttempt.id.desc())).first()
    assert row_count(BindingAttempt) == before_attempts + 1
    assert (attempt.user_id, attempt.upline_id, attempt.source, attempt.accepted) == (
        tree.member, tree.other, BindingSource.ADMIN, True)
    [audit] = audit_rows("member.upline_corrected")
    assert (audit.actor_kind, audit.actor_id, audit.target_type, audit.target_id) == (
        "admin", tree.admin, "user", str(tree.member))
    assert f'"old_upline_id":{tree.upper}' in audit.detail and f'"new_upline_id":{tree.other}' in audit.detail
    assert REASON in audit.detail
    assert verify_audit_chain(session) is None


def test_a_correction_overrides_a_binding_still_in_its_protection_period(session, tree):
    newcomer = make_user("新人").id
    bind_upline(session, newcomer, code(tree.top), BindingSource.LINK, protection_days=30)
    with pytest.raises(DomainError):
        bind_upline(session, newcomer, code(tree.other), BindingSource.LINK, protection_days=30)
    binding = correct_upline(session, admin_of(tree), newcomer, code(tree.other), REASON)
    assert binding.upline_id == tree.other and binding.locked_until is None
    assert closure() == team_paths_from_bindings(session)


def test_an_empty_code_makes_the_member_a_root_and_keeps_their_team(session, tree):
    assert correct_upline(session, admin_of(tree), tree.member, "  ", REASON) is None
    assert session.get(ReferralBinding, tree.member) is None
    assert closure() == team_paths_from_bindings(session)
    assert (tree.member, tree.great, 3) in closure() and (tree.top, tree.great, 5) not in closure()
    [audit] = audit_rows("member.upline_corrected")
    assert f'"old_upline_id":{tree.upper}' in audit.detail and '"new_upline_id":null' in audit.detail
    with pytest.raises(CorrectionRefused) as refused:  # a root already: nothing to change
        correct_upline(session, admin_of(tree), tree.member, "", REASON)
    assert refused.value.reason == "already_root"
    assert verify_audit_chain(session) is None


@pytest.mark.parametrize("case", ["cycle_child", "cycle_deep", "self", "unknown", "malformed", "inactive",
                                  "unchanged", "no_reason", "long_reason"])
def test_refused_corrections_write_nothing(session, tree, case):
    inactive = make_user("停用者", is_active=False).id
    raw, reason, expected = {
        "cycle_child": (code(tree.child), REASON, (409, "循环")),
        "cycle_deep": (code(tree.great), REASON, (409, "循环")),
        "self": (code(tree.member), REASON, (400, "自己")),
        "unknown": ("NOSUCH99", REASON, (400, "推广码不存在")),
        "malformed": ("不是推广码", REASON, (400, "推广码不存在")),
        "inactive": (code(inactive), REASON, (400, "已停用")),
        "unchanged": (code(tree.upper), REASON, (409, "无需修改")),
        "no_reason": (code(tree.other), "   ", (400, "改绑原因")),
        "long_reason": (code(tree.other), "长" * 201, (400, "200")),
    }[case]
    before = snapshot()
    with pytest.raises(DomainError) as refused:
        correct_upline(session, admin_of(tree), tree.member, raw, reason)
    assert domain_error_status(refused.value) == expected[0] and expected[1] in refused.value.message
    assert snapshot() == before


@pytest.mark.parametrize("second", ["correction", "member_binding"])
def test_crossed_changes_at_the_same_time_never_make_a_cycle(app, session, second):
    """A under B and B under A at once — two admin corrections, or a correction racing a member's own
    binding. Both check the team under the same lock, so the later one sees the earlier and is refused.
    A few pairs, each raced on its own, so that a missing lock shows reliably."""
    pairs = [(make_user(f"甲{i}").id, make_user(f"乙{i}").id) for i in range(3)]
    codes = {user_id: code(user_id) for pair in pairs for user_id in pair}
    admin_id = create_admin(session, "caiwu2", "long-enough-pw", AdminRole.FINANCE).id
    session.remove()

    def move(kind: str, user_id: int, raw: str):
        if kind == "member_binding":
            return bind_upline(db.session, user_id, raw, BindingSource.LINK)
        return correct_upline(db.session, db.session.get(AdminUser, admin_id), user_id, raw, REASON)

    kinds = ["correction", second]
    corrections_applied = 0
    for a, b in pairs:
        outcomes = run_concurrently(app, move, [(kinds[0], a, codes[b]), (kinds[1], b, codes[a])])
        assert sum(isinstance(o, ReferralBinding) for o in outcomes) == 1, outcomes
        [refused] = [o for o in outcomes if not isinstance(o, ReferralBinding)]
        assert isinstance(refused, DomainError) and refused.reason == "cycle", outcomes
        corrections_applied += sum(isinstance(o, ReferralBinding) for o, kind in zip(outcomes, kinds)
                                   if kind == "correction")
    with app.app_context():
        assert len(uplines()) == len(pairs)
        assert_no_cycle()
        assert closure() == team_paths_from_bindings(db.session)
        assert len(audit_rows("member.upline_corrected")) == corrections_applied
        assert verify_audit_chain(db.session) is None


# --- disabling, at the service ---------------------------------------------------------------------------------

def test_disable_and_enable_are_audited_once_and_idempotent(session, tree):
    assert set_member_active(session, admin_of(tree), tree.member, False, REASON) is True
    assert session.get(User, tree.member).is_active is False
    before = snapshot()
    assert set_member_active(session, admin_of(tree), tree.member, False, "再停一次") is False
    assert snapshot() == before
    assert set_member_active(session, admin_of(tree), tree.member, True, "") is True  # enabling needs no reason
    assert set_member_active(session, admin_of(tree), tree.member, True, "") is False
    assert [(row.action, row.target_id) for row in audit_rows() if row.action.startswith("member.")] == [
        ("member.disabled", str(tree.member)), ("member.enabled", str(tree.member))]
    assert REASON in audit_rows("member.disabled")[0].detail
    assert session.get(User, tree.member).is_active is True
    assert verify_audit_chain(session) is None


def test_disabling_needs_a_reason_and_a_member(session, tree):
    before = snapshot()
    with pytest.raises(DomainError, match="停用原因"):
        set_member_active(session, admin_of(tree), tree.member, False, " ")
    with pytest.raises(DomainError) as missing:
        set_member_active(session, admin_of(tree), 999_999, False, REASON)
    assert domain_error_status(missing.value) == 404
    assert snapshot() == before


def test_disabling_leaves_the_money_alone(session, tree):
    wallet = Wallet(user_id=tree.member, available_fen=1_234, frozen_fen=300, withdrawing_fen=500)
    session.add(wallet)
    session.flush()
    session.add(Withdrawal(withdrawal_no="W0001", user_id=tree.member, wallet_id=wallet.id, amount_fen=500))
    session.commit()
    set_member_active(session, admin_of(tree), tree.member, False, REASON)
    wallet = session.scalar(select(Wallet).where(Wallet.user_id == tree.member))
    assert (wallet.available_fen, wallet.frozen_fen, wallet.withdrawing_fen) == (1_234, 300, 500)
    assert session.scalar(select(Withdrawal.status)) == WithdrawalStatus.REQUESTED


def test_the_demo_login_refuses_a_disabled_member(session, tree):
    set_member_active(session, admin_of(tree), tree.member, False, REASON)
    with pytest.raises(AccountDisabled, match="已停用"):
        record_member_login(session, tree.member)
    assert session.get(User, tree.member).last_login_at is None


# --- over HTTP -------------------------------------------------------------------------------------------------

def post(client, url: str, fields: dict, *, token: bool = True):
    data = {"csrf_token": csrf_token(client), **fields} if token else fields
    return client.post(url, data=data)


def test_a_disabled_member_is_logged_out_at_once_and_refused_at_login(app, client, fake_wechat):
    with app.app_context():
        member = make_user("爱丽丝", openid="o-alice").id
        admin_id = create_admin(db.session, "yunying", "long-enough-pw", AdminRole.OPERATOR).id
    log_in(client, member)
    assert client.get("/me/").status_code == 200
    with app.app_context():
        set_member_active(db.session, db.session.get(AdminUser, admin_id), member, False, REASON)
    response = client.get("/me/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")
    fake_wechat.current_user = FakeWeChatUser("o-alice", "爱丽丝新昵称")
    refused = wechat_round_trip(client, fake_wechat)
    assert refused.status_code == 403 and "该账号已停用" in refused.get_data(as_text=True)
    assert client.get("/me/").status_code == 302  # no session was started
    with app.app_context():
        user = db.session.get(User, member)
        assert user.nickname == "爱丽丝" and user.last_login_at is None


@pytest.fixture
def page_world(app, tree):
    """The member with a wallet, a pending withdrawal and an order, for the page."""
    with app.app_context():
        member = db.session.get(User, tree.member)
        member.phone = "13800001234"
        wallet = Wallet(user_id=tree.member, available_fen=1_234, frozen_fen=300, withdrawing_fen=500)
        db.session.add(wallet)
        db.session.flush()
        db.session.add(Withdrawal(withdrawal_no="W0001", user_id=tree.member, wallet_id=wallet.id, amount_fen=500))
        db.session.commit()
        order = make_order(member, make_outlet(make_user("店主")), make_product())
        return order.id, order.order_no


def test_the_detail_page_shows_identity_upline_team_money_orders_and_history(app, client, tree, page_world):
    order_id, order_no = page_world
    log_in_admin(client, tree.admin)
    page = client.get(f"/admin/members/{tree.member}").get_data(as_text=True)
    with app.app_context():
        member_code, upper_code = code(tree.member), code(tree.upper)
    assert "<h2>member <small" in page and member_code in page and "13800001234" in page
    assert "<th>身份</th><td>会员</td>" in page and "<th>账号状态</th><td>正常</td>" in page
    assert f'href="/admin/members/{tree.upper}"' in page and upper_code in page and "分享链接" in page
    assert "直推 2 人" in page and "团队共 4 人" in page
    assert "¥12.34" in page and "¥3.00" in page and "¥5.00" in page
    assert "1</strong> 笔提现待处理" in page  # finance should review it
    assert f'<a href="/admin/orders/{order_id}">{order_no}</a>' in page and "待支付" in page
    assert page.count('name="csrf_token"') >= 3


@pytest.mark.parametrize("role", [AdminRole.FINANCE, AdminRole.SUPERADMIN])
def test_finance_and_the_superadmin_may_correct_and_disable(app, client, tree, role):
    """An operator may disable too but not correct an upline (tests/test_admin_rights.py)."""
    with app.app_context():
        admin_id = create_admin(db.session, f"admin-{role}", "long-enough-pw", role).id
        other_code = code(tree.other)
    log_in_admin(client, admin_id)
    url = f"/admin/members/{tree.member}"
    moved = post(client, f"{url}/upline", {"code": other_code, "reason": REASON})
    assert moved.status_code == 303 and moved.headers["Location"] == url
    page = client.get(url).get_data(as_text=True)
    assert "已改绑推荐人" in page and "后台改绑" in page and REASON in page
    disabled = post(client, f"{url}/active", {"active": "0", "reason": REASON})
    assert disabled.status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert "已停用该会员账号" in page and "<strong>已停用</strong>" in page and 'name="active" value="1"' in page
    again = post(client, f"{url}/active", {"active": "0", "reason": REASON})
    assert again.status_code == 303 and "已是停用状态" in client.get(url).get_data(as_text=True)
    with app.app_context():
        assert uplines()[tree.member] == tree.other and db.session.get(User, tree.member).is_active is False
        assert [row.action for row in audit_rows() if row.actor_id == admin_id and row.action.startswith("member.")] \
            == ["member.upline_corrected", "member.disabled"]
        assert closure() == team_paths_from_bindings(db.session)
        assert verify_audit_chain(db.session) is None


@pytest.mark.parametrize("form, fields, status, message", [
    ("upline", {"code": "CHILD", "reason": REASON}, 409, "循环"),
    ("upline", {"code": "NOSUCH99", "reason": REASON}, 400, "推广码不存在"),
    ("upline", {"code": "OTHER", "reason": ""}, 400, "请填写改绑原因"),
    ("active", {"active": "0", "reason": ""}, 400, "请填写停用原因"),
    ("active", {"active": "maybe", "reason": REASON}, 400, "请选择启用或停用"),
])
def test_a_refused_form_shows_the_page_again_with_the_error_and_writes_nothing(app, client, tree, form, fields,
                                                                               status, message):
    with app.app_context():
        named = {"CHILD": code(tree.child), "OTHER": code(tree.other)}
        fields = {**fields, "code": named.get(fields.get("code"), fields.get("code", ""))}
        before = snapshot()
    log_in_admin(client, tree.admin)
    response = post(client, f"/admin/members/{tree.member}/{form}", fields)
    page = response.get_data(as_text=True)
    assert response.status_code == status and message in page
    assert "改绑推荐人" in page and "最近订单" in page  # the detail page, not a bare error page
    if fields["reason"]:
        assert fields["reason"] in page  # what was typed is kept
    with app.app_context():
        assert snapshot() == before


def test_a_missing_member_is_a_404(client, tree):
    log_in_admin(client, tree.admin)
    assert client.get("/admin/members/999999").status_code == 404
    assert post(client, "/admin/members/999999/upline", {"code": "", "reason": REASON}).status_code == 404
    assert post(client, "/admin/members/999999/active", {"active": "0", "reason": REASON}).status_code == 404


def test_strangers_and_members_cannot_reach_the_page_or_the_forms(app, client, tree):
    url = f"/admin/members/{tree.member}"
    with app.app_context():
        before = snapshot()
    response = client.get(url)
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    log_in(client, tree.member)
    for response in (client.get(url), post(client, f"{url}/upline", {"code": "", "reason": REASON}),
                     post(client, f"{url}/active", {"active": "0", "reason": REASON})):
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    with app.app_context():
        assert snapshot() == before


def test_the_forms_need_the_csrf_token(app, client, tree):
    log_in_admin(client, tree.admin)
    with app.app_context():
        other_code = code(tree.other)
        before = snapshot()
    url = f"/admin/members/{tree.member}"
    assert post(client, f"{url}/upline", {"code": other_code, "reason": REASON}, token=False).status_code == 400
    assert post(client, f"{url}/active", {"active": "0", "reason": REASON}, token=False).status_code == 400
    with app.app_context():
        assert snapshot() == before
