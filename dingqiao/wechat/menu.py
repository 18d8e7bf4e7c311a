"""The Official Account's custom menu (自定义菜单): three buttons into the H5, created through wechatpy's client.

WeChat allows at most 3 top-level buttons (names up to 4 Chinese characters) with at most 5 sub-buttons each
(up to 8 characters); a view button's URL must be absolute. A new menu replaces the old one for every follower.
"""
from . import js_sdk


def _view(name: str, base_url: str, path: str) -> dict:
    return {"type": "view", "name": name, "url": base_url + path}


def official_account_menu(base_url: str) -> dict:
    """The menu as WeChat's menu/create takes it; ``base_url`` is the H5's public origin (PUBLIC_BASE_URL)."""
    return {
        "button": [
            _view("逛商城", base_url, "/"),
            {"name": "我的", "sub_button": [
                _view("我的订单", base_url, "/orders/"),
                _view("我的钱包", base_url, "/wallet/"),
                _view("推广赚钱", base_url, "/me/share"),
                _view("附近门店", base_url, "/nearby/"),
            ]},
            {"name": "服务", "sub_button": [
                _view("联系客服", base_url, "/service/"),
                _view("品牌故事", base_url, "/articles/"),
            ]},
        ]
    }


def push_menu(app, menu: dict) -> None:
    """Replace the account's menu with ``menu``; ``WeChatError`` when WeChat refuses or cannot be reached. Goes
    through the JS-SDK signer's client, whose token cache (Redis when configured) the web workers share, so the
    push does not fetch a new access token that would retire theirs."""
    js_sdk(app).create_menu(menu)
