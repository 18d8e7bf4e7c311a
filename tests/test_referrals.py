"""锁粉: binding a member to an upline — the first valid binding wins; every refusal has its reason."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from dingqiao.extensions import db
from dingqiao.models import BindingAttempt, BindingSource, ReferralBinding, TeamPath, User
from dingqiao.models.base import utcnow
from dingqiao.services.referrals import BindingRefused, bind_by_openid, bind_upline
from tests.conftest import run_concurrently
from tests.factories import make_user, team_paths_from_bindings


def code(user_id: int) -> str:
    return db.session.get(User, user_id).referral_code


def closure_from_bindings() -> set[tuple[int, int, int]]:
    return team_paths_from_bindings(db.session)


def closure() -> set[tuple[int, int, int]]:
    return {(p.ancestor_id, p.descendant_id, p.depth) for p in db.session.scalars(select(TeamPath))}


def attempts() -> list[tuple[bool, str]]:
    return [(a.accepted, a.reason) for a in db.session.scalars(select(BindingAttempt).order_by(BindingAttempt.id))]


def test_binding_builds_the_closure_even_when_the_member_already_has_a_team(session):
    a, b, c, d, e = (make_user(n).id for n in "ABCDE")
    bind_upline(session, b, code(a), BindingSource.LINK)  # A ← B
    bind_upline(session, d, code(c), BindingSource.LINK)  # C ← D (C has a team before C is bound)
    bind_upline(session, e, code(d), BindingSource.QRCODE)  # C ← D ← E
    bind_upline(session, c, code(b), BindingSource.FOLLOW)  # A ← B ← C ← D ← E
    assert closure() == closure_from_bindings()
    assert (a, e, 4) in closure()
    assert all(accepted for accepted, _ in attempts())


@pytest.mark.parametrize("case", ["self", "unknown", "cycle", "already_bound"])
def test_every_refusal_is_refused_with_its_reason_and_kept(session, case):
    a, b, c = (make_user(n).id for n in "ABC")
    bind_upline(session, b, code(a), BindingSource.LINK)
    user, raw, expected = {
        "self": (c, code(c), "self"),
        "unknown": (c, "NOSUCH99", "unknown_code"),
        "cycle": (a, code(b), "cycle"),  # B is in A's team: A cannot be bound under B
        "already_bound": (b, code(c), "already_bound"),
    }[case]
    with pytest.raises(BindingRefused) as refused:
        bind_upline(session, user, raw, BindingSource.LINK)
    assert refused.value.reason == expected and refused.value.message
    assert attempts()[-1] == (False, expected)  # the refusal is on record
    assert closure() == closure_from_bindings() and session.get(ReferralBinding, b).upline_id == a


def test_a_protection_period_lets_an_unbought_relation_be_replaced_afterwards(session):
    a, b, c = (make_user(n).id for n in "ABC")
    now = utcnow()
    bind_upline(session, c, code(a), BindingSource.LINK, protection_days=7, now=now)
    with pytest.raises(BindingRefused):
        bind_upline(session, c, code(b), BindingSource.LINK, protection_days=7, now=now + timedelta(days=6))
    bind_upline(session, c, code(b), BindingSource.LINK, protection_days=7, now=now + timedelta(days=8))
    assert session.get(ReferralBinding, c).upline_id == b
    assert closure() == closure_from_bindings() == {(b, c, 1)}


def test_concurrent_first_bindings_of_one_member_have_one_winner(app, session):
    target = make_user("新人").id
    uplines = [make_user(f"推荐{i}").id for i in range(6)]
    codes = [code(u) for u in uplines]
    session.remove()
    outcomes = run_concurrently(app, lambda raw: bind_upline(db.session, target, raw, BindingSource.LINK),
                                [(raw,) for raw in codes])
    assert sum(isinstance(o, ReferralBinding) for o in outcomes) == 1, outcomes
    assert [o.reason for o in outcomes if isinstance(o, BindingRefused)] == ["already_bound"] * 5, outcomes
    with app.app_context():
        assert len(db.session.scalars(select(ReferralBinding)).all()) == 1
        assert closure() == closure_from_bindings()
        assert sum(1 for accepted, _ in attempts() if accepted) == 1 and len(attempts()) == 6


def test_a_follow_by_someone_new_makes_the_account_and_binds_it(session):
    a = make_user("分享者").id
    binding = bind_by_openid(session, "o-follower-1", code(a), BindingSource.FOLLOW)
    follower = session.scalar(select(User).where(User.openid == "o-follower-1"))
    assert binding.upline_id == a and follower.signup_ref_code == code(a)


def test_the_team_board_stops_at_the_commission_depth_and_masks_names(app, client):
    from tests.money_world import buy, build_world, pay, pick_up
    from tests.test_access import log_in

    world = build_world(app)  # grandparent ← parent ← buyer ("王小明"); depth 2
    with app.app_context():
        below = make_user("赵四").id  # a third level under the grandparent
        bind_upline(db.session, below, code(world.buyer), BindingSource.LINK)
    order_no = buy(app, world)
    pay(app, order_no)
    pick_up(app, world, order_no)
    log_in(client, world.grandparent)
    page = client.get("/me/team").get_data(as_text=True)
    assert ">2<" in page  # parent (direct) + buyer (level 2); 赵四 is level 3: beyond the depth in force
    assert "王*" in page and "王小明" not in page and "赵" not in page
    assert "¥100.00" in page  # the buyer's paid order counts as team sales
    with app.app_context():
        from dingqiao.services.team import team_board

        board = team_board(db.session, world.grandparent)
        assert board.counts == {1: 1, 2: 1} and board.total_sales_fen == 10_000 and board.new_this_week == 2
