"""资金（只读）: payments, refunds, commission lines, the ledger, wallets and withdrawals — finance's (and the
superadmin's) to read. Money moves only through the services: the create / edit / delete endpoints answer 403
whatever is posted (``ReadOnlyView``). Stored words show their enum's ``label`` (dingqiao/models/)."""
from ....models import (
    AdminRole,
    CommissionKind,
    CommissionStatus,
    LedgerKind,
    PaymentStatus,
    RefundStatus,
    WithdrawalStatus,
)
from ....services.exports import PAYOUT_METHOD
from .base import ReadOnlyView
from .columns import admin, choices, local, order, percent, person, wallet_owner, yuan

FINANCE = (AdminRole.FINANCE,)


class MoneyView(ReadOnlyView):
    roles = FINANCE
    column_default_sort = ("id", True)


class LedgerView(MoneyView):
    column_list = ["id", "wallet_id", "kind", "available_delta_fen", "frozen_delta_fen", "withdrawing_delta_fen",
                   "order_id", "commission_line_id", "withdrawal_id", "memo", "created_at"]
    column_labels = {"wallet_id": "钱包（会员）", "kind": "类型", "available_delta_fen": "可提现变动",
                     "frozen_delta_fen": "冻结变动", "withdrawing_delta_fen": "提现中变动", "order_id": "订单",
                     "commission_line_id": "佣金明细", "withdrawal_id": "提现", "memo": "备注", "created_at": "时间"}
    column_filters = ["kind", "wallet_id", "order_id", "withdrawal_id", "created_at"]
    column_choices = {"kind": choices(LedgerKind)}
    order_columns, wallet_columns = ("order_id",), ("wallet_id",)
    column_formatters = {"available_delta_fen": yuan, "frozen_delta_fen": yuan, "withdrawing_delta_fen": yuan,
                         "created_at": local, "wallet_id": wallet_owner, "order_id": order}


class WalletView(MoneyView):
    column_list = ["id", "user_id", "available_fen", "frozen_fen", "withdrawing_fen", "total_earned_fen",
                   "withdrawn_fen", "updated_at"]
    column_labels = {"user_id": "会员", "available_fen": "可提现", "frozen_fen": "冻结", "withdrawing_fen": "提现中",
                     "total_earned_fen": "累计收益", "withdrawn_fen": "已提现", "updated_at": "更新时间"}
    column_filters = ["user_id"]
    person_columns = ("user_id",)
    column_formatters = {name: yuan for name in ("available_fen", "frozen_fen", "withdrawing_fen", "total_earned_fen",
                                                 "withdrawn_fen")} | {"updated_at": local, "user_id": person}


class CommissionLineView(MoneyView):
    column_list = ["id", "order_id", "kind", "level", "beneficiary_user_id", "base_fen", "rate_bps", "amount_fen",
                   "status", "created_at", "settled_at", "reversed_at"]
    column_labels = {"order_id": "订单", "kind": "类型", "level": "层级", "beneficiary_user_id": "受益人", "base_fen": "基数",
                     "rate_bps": "比例", "amount_fen": "金额", "status": "状态", "created_at": "产生时间",
                     "settled_at": "结算时间", "reversed_at": "冲回时间", "available_at": "冷静期结束",
                     "rule_version_id": "规则版本"}
    details_extra = ("available_at", "rule_version_id")
    column_filters = ["kind", "status", "order_id", "beneficiary_user_id", "created_at"]
    column_choices = {"kind": choices(CommissionKind), "status": choices(CommissionStatus)}
    person_columns = ("beneficiary_user_id",)
    order_columns = ("order_id",)
    column_formatters = {"base_fen": yuan, "amount_fen": yuan, "rate_bps": percent, "created_at": local,
                         "settled_at": local, "reversed_at": local, "available_at": local,
                         "beneficiary_user_id": person, "order_id": order}


class PaymentView(MoneyView):
    column_list = ["id", "order_id", "out_trade_no", "transaction_id", "amount_fen", "status", "created_at", "paid_at"]
    column_labels = {"order_id": "订单", "out_trade_no": "商户单号", "transaction_id": "微信支付单号", "amount_fen": "金额",
                     "status": "状态", "created_at": "创建时间", "paid_at": "支付时间"}
    column_searchable_list = ["out_trade_no", "transaction_id"]
    column_filters = ["status", "order_id", "created_at"]
    column_choices = {"status": choices(PaymentStatus)}
    order_columns = ("order_id",)
    column_formatters = {"amount_fen": yuan, "created_at": local, "paid_at": local, "order_id": order}


class RefundView(MoneyView):
    column_list = ["id", "order_id", "out_refund_no", "amount_fen", "status", "reason", "reject_reason", "created_at",
                   "reviewed_at", "completed_at"]
    column_labels = {"order_id": "订单", "out_refund_no": "退款单号", "amount_fen": "金额", "status": "状态", "reason": "原因",
                     "reject_reason": "拒绝/失败原因", "created_at": "申请时间", "reviewed_at": "审核时间",
                     "completed_at": "完成时间", "wechat_refund_id": "微信退款单号", "requested_by_user_id": "申请会员",
                     "reviewed_by_admin_id": "审核人"}
    details_extra = ("wechat_refund_id", "requested_by_user_id", "reviewed_by_admin_id")
    column_searchable_list = ["out_refund_no"]
    column_filters = ["status", "order_id", "created_at"]
    column_choices = {"status": choices(RefundStatus)}
    order_columns = ("order_id",)
    column_formatters = {"amount_fen": yuan, "created_at": local, "reviewed_at": local, "completed_at": local,
                         "requested_by_user_id": person, "reviewed_by_admin_id": admin, "order_id": order}


class WithdrawalView(MoneyView):
    column_list = ["id", "withdrawal_no", "user_id", "amount_fen", "fee_fen", "status", "payout_method", "created_at",
                   "reviewed_at", "paid_at", "reject_reason", "failure_reason"]
    column_labels = {"withdrawal_no": "提现单号", "user_id": "会员", "amount_fen": "金额", "fee_fen": "手续费",
                     "status": "状态", "payout_method": "方式", "created_at": "申请时间", "reviewed_at": "审核时间",
                     "paid_at": "打款时间", "reject_reason": "拒绝原因", "failure_reason": "失败原因",
                     "payment_no": "微信付款单号", "transfer_state": "微信转账状态", "payee_name": "实名",
                     "reviewed_by_admin_id": "审核人"}
    details_extra = ("payment_no", "transfer_state", "payee_name", "reviewed_by_admin_id")
    column_searchable_list = ["withdrawal_no", "payment_no"]
    column_filters = ["status", "user_id", "created_at"]
    column_choices = {"status": choices(WithdrawalStatus), "payout_method": choices(PAYOUT_METHOD)}
    person_columns = ("user_id",)
    column_formatters = {"amount_fen": yuan, "fee_fen": yuan, "created_at": local, "reviewed_at": local,
                         "paid_at": local, "user_id": person, "wallet_id": wallet_owner, "reviewed_by_admin_id": admin}
