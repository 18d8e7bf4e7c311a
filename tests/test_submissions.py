"""One-time submission keys (services/submissions.py): the key is claimed in the write's own transaction, a repeat
answers with the first result, and someone else's key is refused."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dingqiao.db import write_transaction
from dingqiao.extensions import db
from dingqiao.models import SubmissionKey
from dingqiao.models.base import utcnow
from dingqiao.services import DomainError, submissions
from tests.conftest import run_concurrently


def _write(session, key, actor="member:1", action="withdraw", result=41, fail=False):
    """A stand-in write: claims the key, 'writes' (result id), optionally fails after writing."""
    with write_transaction(session):
        earlier = submissions.claim(session, key, actor=actor, action=action)
        if earlier is not None:
            return ("repeat", earlier)
        submissions.remember(session, key, result)
        if fail:
            raise DomainError("余额不足。")
        return ("first", result)


def test_a_repeat_answers_with_the_first_result_and_writes_nothing(session):
    key = submissions.new_key()
    assert _write(session, key, result=41) == ("first", 41)
    assert _write(session, key, result=99) == ("repeat", 41)
    assert session.scalar(select(func.count()).select_from(SubmissionKey)) == 1


def test_a_failed_first_attempt_leaves_no_key_so_the_retry_runs(session):
    key = submissions.new_key()
    with pytest.raises(DomainError):
        _write(session, key, fail=True)
    assert session.get(SubmissionKey, key) is None
    assert _write(session, key, result=7) == ("first", 7)


def test_someone_elses_key_or_another_forms_key_is_refused(session):
    key = submissions.new_key()
    _write(session, key, actor="member:1")
    with pytest.raises(submissions.SubmissionRefused):
        _write(session, key, actor="member:2")
    with pytest.raises(submissions.SubmissionRefused):
        _write(session, key, action="redeem")


@pytest.mark.parametrize("raw", ["short", "x" * 65, "abc def ghi jkl mno", "../../etc/passwd0000", "键" * 20])
def test_a_malformed_key_is_refused_with_a_chinese_message(session, raw):
    with pytest.raises(DomainError, match="页面已过期"):
        _write(session, raw)


def test_no_key_means_no_repeat_check(session):
    assert _write(session, None, result=1) == ("first", 1)
    assert _write(session, "", result=2) == ("first", 2)
    assert session.scalar(select(func.count()).select_from(SubmissionKey)) == 0


def test_eight_racing_copies_of_one_key_write_once(app):
    key = submissions.new_key()
    results = run_concurrently(app, lambda n: _write(db.session, key, result=n), [(n,) for n in range(1, 9)])
    firsts = [r for r in results if isinstance(r, tuple) and r[0] == "first"]
    repeats = [r for r in results if isinstance(r, tuple) and r[0] == "repeat"]
    assert len(firsts) == 1, results
    assert len(repeats) == 7 and {r[1] for r in repeats} == {firsts[0][1]}, results


def test_sweep_forgets_keys_older_than_a_week(session):
    old, fresh = submissions.new_key(), submissions.new_key()
    _write(session, old)
    _write(session, fresh)
    with write_transaction(session):
        session.get(SubmissionKey, old).created_at = utcnow() - submissions.KEEP_FOR - timedelta(minutes=1)
    assert submissions.sweep(session) == 1
    assert session.get(SubmissionKey, old) is None and session.get(SubmissionKey, fresh) is not None


def test_a_key_is_bound_to_the_row_the_form_acts_on(session):
    key = submissions.new_key()
    with write_transaction(session):
        assert submissions.claim(session, key, actor="admin:1", action="refund.approve", target=7) is None
        submissions.remember(session, key, 7)
    with write_transaction(session):
        assert submissions.claim(session, key, actor="admin:1", action="refund.approve", target=7) == 7
    with pytest.raises(submissions.SubmissionRefused), write_transaction(session):
        submissions.claim(session, key, actor="admin:1", action="refund.approve", target=8)


def test_a_forgotten_key_makes_the_next_submission_a_new_attempt(session):
    key = submissions.new_key()
    _write(session, key, result=5)
    with write_transaction(session):
        submissions.forget(session, key)
    assert _write(session, key, result=6) == ("first", 6)
