"""The fake WeChat Pay API v3 and 商家转账 is the simulator's (dingqiao/wechat/simulator/pay_v3.py): the names
tests import from here."""
from dingqiao.wechat.simulator.pay_v3 import FakeWeChatPayV3, rsa_oaep_encrypt, rsa_sign  # noqa: F401 - re-exported
