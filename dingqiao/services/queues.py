"""What waits for someone in each admin queue, defined once: the queue's page lists exactly these rows and the
dashboard counts exactly these, so the two always agree."""
from ..models import (
    OPEN_APPLICATION,
    IdentityApplication,
    Refund,
    RefundStatus,
    Withdrawal,
    WithdrawalStatus,
)

# Requested, failed at WeChat (to retry or reject), sent without an answer, or accepted with its result pending.
REFUNDS_WAITING = Refund.status.in_([RefundStatus.REQUESTED, RefundStatus.FAILED, RefundStatus.APPROVED,
                                     RefundStatus.PROCESSING])
# Requested, or approved with a transfer whose outcome is unknown.
WITHDRAWALS_WAITING = Withdrawal.status.in_([WithdrawalStatus.REQUESTED, WithdrawalStatus.APPROVED])
APPLICATIONS_WAITING = IdentityApplication.status.in_(OPEN_APPLICATION)
