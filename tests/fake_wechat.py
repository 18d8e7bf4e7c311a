"""The tests' fake WeChat is the simulator the demo ships with (dingqiao/wechat/simulator: OAuth, JS-SDK, menu,
QR codes, template messages and 订阅通知, WeChat Pay v2 and v3): the names tests import from here."""
from dingqiao.wechat.simulator.official_account import (  # noqa: F401 - re-exported
    FakeOrder,
    FakeWeChat,
    FakeWeChatUser,
    from_xml,
    pay_sign,
    signed_xml,
    to_xml,
)
from dingqiao.wechat.simulator.server import start_fake_wechat  # noqa: F401 - re-exported
