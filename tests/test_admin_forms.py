"""The admin area's own forms (blueprints/admin/forms.py): a refused field says why in Chinese next to itself
and keeps what was typed; the commission rule's guard rails (services/commission_rules.py) say what
commissions.validate_rule says, each about its field."""
import re

import pytest

from dingqiao.extensions import db
from dingqiao.models import AdminRole
from dingqiao.services.accounts import create_admin
from dingqiao.services.commission_rules import check_rule, rule_problems
from dingqiao.services.commissions import RuleError, RuleInput, current_rule, validate_rule
from tests.conftest import csrf_token
from tests.test_admin_queues import admin_client


RULE = dict(referral_depth=2, direct_bps=1000, team_bps=500, third_level_bps=0, service_fee_bps=500,
            regional_bps=300, payout_cap_bps=3000, cooling_days=7)


@pytest.mark.parametrize("changes, field", [
    ({}, None),
    ({"referral_depth": 4}, "referral_depth"),
    ({"referral_depth": 0}, "referral_depth"),
    ({"direct_bps": -1}, "direct"),
    ({"referral_depth": 1}, "team"),
    ({"third_level_bps": 100}, "third_level"),
    ({"payout_cap_bps": 4100}, "payout_cap"),
    ({"direct_bps": 2000, "team_bps": 2000}, "payout_cap"),
    ({"cooling_days": 31}, "cooling_days"),
])
def test_the_rule_problems_are_validate_rules_own_named_by_field(changes, field):
    rule = RuleInput(**{**RULE, **changes})
    problems = rule_problems(rule)
    assert list(problems)[:1] == ([field] if field else [])
    try:
        validate_rule(rule)
    except RuleError as exc:
        first = exc.message
    else:
        first = None
    assert first == (problems[field] if field else None)
    if field:
        with pytest.raises(RuleError, match=re.escape(problems[field])):
            check_rule(rule)


def typed_rule(**changes) -> dict:
    return {"referral_depth": "2", "direct": "10", "team": "5", "third_level": "0", "service_fee": "5",
            "regional": "3", "payout_cap": "30", "cooling_days": "7", "note": "第二版", **changes}


def field_with_error(page: str, name: str) -> str:
    """The label of field ``name``: its input and the error right after it."""
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>\s*(<span class="dq-field-error"[^>]*>[^<]*</span>)?', page)
    assert match, name
    return match.group(0)


def test_a_refused_commission_rule_shows_each_problem_next_to_its_field_and_keeps_what_was_typed(app, client):
    admin_client(app, client)
    token = csrf_token(client)
    response = client.post("/admin/commission-rules", data={
        "csrf_token": token, "action": "publish", **typed_rule(direct="12.345", cooling_days="两周")})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "比例需为 0 到 100 之间" in field_with_error(page, "direct")
    assert 'value="12.345"' in field_with_error(page, "direct")
    assert "售后冷静期需填写整数天数" in field_with_error(page, "cooling_days")
    assert 'value="两周"' in field_with_error(page, "cooling_days")
    assert "dq-field-error" not in field_with_error(page, "team") and 'value="5"' in field_with_error(page, "team")
    assert 'value="第二版"' in page

    # A rule that parses but breaks a guard rail: the sum against the cap, next to the cap.
    response = client.post("/admin/commission-rules", data={
        "csrf_token": token, "action": "publish", **typed_rule(direct="20", team="15")})
    assert response.status_code == 400
    assert "超过单笔上限 30%" in field_with_error(response.get_data(as_text=True), "payout_cap")

    # Fixed, it is published.
    response = client.post("/admin/commission-rules", data={"csrf_token": token, "action": "publish", **typed_rule()})
    assert response.status_code == 302
    with app.app_context():
        assert (current_rule(db.session).direct_bps, current_rule(db.session).note) == (1000, "第二版")


def test_a_failed_admin_login_keeps_the_name_and_says_why_next_to_the_password(app, client):
    with app.app_context():
        create_admin(db.session, "keeper", "correct-horse-9", AdminRole.OPERATOR)
    client.get("/admin/login")
    response = client.post("/admin/login", data={"csrf_token": csrf_token(client), "username": "keeper",
                                                  "password": "wrong-horse-0"})
    page = response.get_data(as_text=True)
    assert response.status_code == 401
    assert 'value="keeper"' in page
    assert re.search(r'name="password"[^>]*>(\s*</label>)?\s*<span class="dq-field-error"[^>]* role="alert"[^>]*>[^<]+</span>', page)


def test_a_refused_identity_rule_comes_back_as_typed_with_the_threshold_problem_next_to_it(app, client):
    admin_client(app, client)
    response = client.post("/admin/identity-rules", data={
        "csrf_token": csrf_token(client), "target": "outlet", "metric": "goods_purchases", "threshold": "12.345",
        "counts_at": "paid", "grant_mode": "review", "note": "试行"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    outlet_form = page[page.index('id="rule-outlet"'):page.index("</form>", page.index('id="rule-outlet"'))]
    assert re.search(r'name="threshold"[^>]*value="12.345"[^>]*>\s*</label>\s*<span class="dq-field-error"(?: id="[^"]*")?>请输入正确的金额',
                     outlet_form)
    assert page.count('role="alert"') == 1  # said once above the forms, for screen readers
    assert 'value="试行"' in outlet_form
    assert 'value="12.345"' not in page.replace(outlet_form, "")  # the other target's form is untouched
