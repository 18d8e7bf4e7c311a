"""The command-line tools: demo seed, admin creation, audit-chain verification."""
from collections import defaultdict

from sqlalchemy import func, select, text

from dingqiao.extensions import db
from tests.conftest import OPEN_RULE_NOTE
from tests.factories import team_paths_from_bindings
from dingqiao.models import (
    AdminUser,
    AuditLog,
    CommissionRuleVersion,
    FactoryStore,
    Identity,
    Outlet,
    Product,
    StockLevel,
    StockMovement,
    TeamPath,
    User,
)


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_seed_demo_refuses_outside_demo_mode(app):
    refused = run(app, "seed-demo")
    assert refused.exit_code != 0 and "DINGQIAO_DEMO" in refused.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AdminUser)) == 0


def test_seed_demo_builds_a_believable_consistent_data_set_once(app):
    app.config["DINGQIAO_DEMO"] = True
    result = run(app, "seed-demo")
    assert result.exit_code == 0, result.output
    assert "admin / dingqiao-demo" in result.output
    with app.app_context():
        s = db.session
        assert s.scalar(select(func.count()).select_from(Product)) == 20
        assert all(p.images and p.outlet_price_fen < p.member_price_fen for p in s.scalars(select(Product)))
        outlets = s.scalars(select(Outlet)).all()
        assert len(outlets) == 3 and all(30_000_000 < o.latitude_e6 < 31_000_000 for o in outlets)
        assert all(s.get(User, o.owner_user_id).identity == Identity.OUTLET for o in outlets)
        store = s.scalars(select(FactoryStore)).one()
        assert s.get(User, store.owner_user_id).identity == Identity.FACTORY
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 1
        assert s.scalar(select(func.count()).select_from(CommissionRuleVersion)
                        .where(CommissionRuleVersion.note != OPEN_RULE_NOTE)) == 1

        # Every stock level is exactly the sum of its movements.
        moved = defaultdict(int)
        for m in s.scalars(select(StockMovement)):
            moved[(m.location_id, m.product_id)] += m.on_hand_delta
        levels = s.scalars(select(StockLevel)).all()
        assert levels and all(moved[(lv.location_id, lv.product_id)] == lv.on_hand for lv in levels)
        assert any(lv.on_hand == 0 for lv in levels)  # some outlets lack some goods

        # The closure table agrees with the bindings, at every depth.
        expected = team_paths_from_bindings(s)
        actual = {(p.ancestor_id, p.descendant_id, p.depth) for p in s.scalars(select(TeamPath))}
        assert actual == expected and max(d for *_, d in actual) == 3

    again = run(app, "seed-demo")
    assert again.exit_code == 0 and "already has users" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Product)) == 20


def test_create_admin_hashes_the_password_and_refuses_duplicates(app):
    result = run(app, "create-admin", "alice", "--role", "finance", "--password-stdin", input="s3cret-password\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        admin = db.session.scalars(select(AdminUser)).one()
        assert (admin.username, admin.role) == ("alice", "finance")
        assert "s3cret-password" not in admin.password_hash and admin.check_password("s3cret-password")
    duplicate = run(app, "create-admin", "alice", "--password-stdin", input="another-password\n")
    assert duplicate.exit_code != 0 and "已存在" in duplicate.output
    short = run(app, "create-admin", "bob", "--password-stdin", input="short\n")
    assert short.exit_code != 0 and "至少" in short.output


def test_audit_verify_passes_on_an_intact_chain_and_names_the_first_tampered_row(app):
    for name in ("a1", "a2", "a3"):
        assert run(app, "create-admin", f"admin{name}", "--password-stdin", input="long-enough-pw\n").exit_code == 0
    ok = run(app, "audit-verify")
    assert ok.exit_code == 0 and "intact" in ok.output
    with app.app_context():
        second = db.session.scalars(select(AuditLog).order_by(AuditLog.id)).all()[1]
        db.session.execute(
            text("UPDATE audit_log SET detail = :d WHERE id = :id"), {"d": '{"role":"operator"}', "id": second.id}
        )
        db.session.commit()
        second_id = second.id
    broken = run(app, "audit-verify")
    assert broken.exit_code == 1
    assert f"row {second_id}" in broken.output and "changed" in broken.output


def test_audit_verify_detects_a_deleted_row(app):
    for name in ("b1", "b2", "b3"):
        run(app, "create-admin", f"admin{name}", "--password-stdin", input="long-enough-pw\n")
    with app.app_context():
        ids = db.session.scalars(select(AuditLog.id).order_by(AuditLog.id)).all()
        db.session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[1]})
        db.session.commit()
    broken = run(app, "audit-verify")
    assert broken.exit_code == 1 and f"row {ids[2]}" in broken.output and "removed" in broken.output
