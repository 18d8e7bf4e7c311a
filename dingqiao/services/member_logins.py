"""What a member's login does besides proving who they are, as one call: the visitor's cart joins theirs, the
login is recorded (logins.py), and the share code they arrived with binds them to its owner if they have no
upline yet. Kept apart from accounts.py (which finds or creates the member) so that module stays readable."""
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import BindingSource, ReferralBinding, User
from .cart import merge_guest_cart
from .logins import LoginClient, open_login_session
from .referrals import BindingRefused, bind_upline

DEMO_LOGIN_CHOICES = 50


def complete_member_login(session: Session, user: User, *, guest_cart: dict[int, int], ref_code: str | None,
                          lifetime: timedelta, client: LoginClient, protection_days: int) -> str:
    """After the member is known (WeChat or the demo picker): merge ``guest_cart``, open the login session, and try
    binding under ``ref_code`` (a refusal is kept by the binding service as an attempt, not raised). Returns the
    id Flask-Login is to keep."""
    merge_guest_cart(session, user.id, guest_cart)  # the visitor's cart survives the login
    login_id = open_login_session(session, user, lifetime, client)
    if ref_code and session.get(ReferralBinding, user.id) is None:
        try:
            bind_upline(session, user.id, ref_code, BindingSource.LINK, protection_days=protection_days)
        except BindingRefused:
            pass  # kept as a refused attempt with its reason
    return login_id


def demo_login_choices(session: Session, limit: int = DEMO_LOGIN_CHOICES) -> list[User]:
    """Demo mode's login page: the active seeded members, oldest first."""
    return list(session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.id).limit(limit)))
