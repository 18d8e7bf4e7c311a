"""The demo account's 模板消息: the category templates (类目模板) a merchant would pick in the 公众平台, with the
keys WeChat types, and which of our values fills each — turned into the app's WECHAT_MESSAGES setting, and given to
the simulated WeChat, which refuses a message whose keys or values break the template's rules as WeChat does."""
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoTemplate:
    event: str  # our event (docs/messages.md) sent through this template
    template_id: str
    title: str  # the template's name in the 公众平台
    fields: tuple[tuple[str, str, str], ...]  # (key, the label WeChat shows, our value that fills it)


DEMO_TEMPLATES = (
    DemoTemplate("order_paid", "demo_order_paid", "订单支付成功通知", (
        ("character_string1", "订单编号", "order_no"), ("amount2", "支付金额", "amount"),
        ("thing3", "商品名称", "product"), ("thing4", "自提门店", "outlet"), ("phrase5", "订单状态", "status"))),
    DemoTemplate("order_redeemed", "demo_order_redeemed", "订单提货成功通知", (
        ("character_string1", "订单编号", "order_no"), ("thing2", "商品名称", "product"),
        ("thing3", "提货门店", "outlet"), ("time4", "提货时间", "time"))),
    DemoTemplate("order_refunded", "demo_order_refunded", "退款成功通知", (
        ("character_string1", "订单编号", "order_no"), ("amount2", "退款金额", "amount"),
        ("thing3", "商品名称", "product"))),
    DemoTemplate("commission_settled", "demo_commission_settled", "佣金到账提醒", (
        ("character_string1", "订单编号", "order_no"), ("amount2", "佣金金额", "amount"), ("time3", "到账时间", "time"))),
    DemoTemplate("withdrawal_confirm", "demo_withdrawal_confirm", "提现待确认收款提醒", (
        ("character_string1", "提现单号", "withdrawal_no"), ("amount2", "提现金额", "amount"),
        ("phrase3", "提现状态", "status"))),
    DemoTemplate("withdrawal_paid", "demo_withdrawal_paid", "提现到账通知", (
        ("character_string1", "提现单号", "withdrawal_no"), ("amount2", "到账金额", "amount"),
        ("time3", "到账时间", "time"))),
)


def messages_setting() -> str:
    """WECHAT_MESSAGES for the demo account (docs/messages.md)."""
    return json.dumps({t.event: {"template_id": t.template_id, "kind": "template",
                                 "data": {key: value for key, _label, value in t.fields}}
                       for t in DEMO_TEMPLATES}, ensure_ascii=False)


def template_schemas() -> dict[str, list[str]]:
    """Each template's keys, as the simulated WeChat checks them (``FakeWeChat.template_schemas``)."""
    return {t.template_id: [key for key, _label, _value in t.fields] for t in DEMO_TEMPLATES}
