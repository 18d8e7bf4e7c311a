"""The outbox delivery worker behind `flask deliver-messages`: a loop (or one pass with --once, for cron) that
sends due outbox rows as WeChat template messages or 订阅通知 (``services.delivery``). Runs as its own process
next to gunicorn — see README "Production"; several can run at once, each row is claimed by one."""
import os
import signal
import socket
import time
from collections.abc import Callable

from flask import Flask

from .config import template_ids
from .extensions import db
from .services.delivery import DeliverySettings, PassResult, SendError, Sender, deliver_once
from .services.message_templates import Kind, Outgoing, message_settings
from .wechat import WeChatError, js_sdk


def delivery_settings(app: Flask) -> DeliverySettings:
    return DeliverySettings(
        messages=message_settings(app.config),
        template_ids=template_ids(app.config),
        base_url=app.config["PUBLIC_BASE_URL"],
        max_attempts=app.config["MESSAGE_MAX_ATTEMPTS"],
        retry_base_seconds=app.config["MESSAGE_RETRY_BASE_SECONDS"],
    )


def wechat_sender(app: Flask) -> Sender:
    """Template messages and 订阅通知 through the app's WeChat client (the JS-SDK signer's, sharing its token
    cache)."""
    client = js_sdk(app)

    def send(openid: str, url: str, outgoing: Outgoing) -> int:
        try:
            if outgoing.kind == Kind.SUBSCRIBE:
                return client.send_subscribe_message(openid, outgoing.template_id, url, outgoing.data)
            return client.send_template_message(openid, outgoing.template_id, url, outgoing.data,
                                                client_msg_id=outgoing.client_msg_id)
        except WeChatError as exc:
            raise SendError(str(exc), exc.errcode) from exc

    return send


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run(app: Flask, *, once: bool = False, poll_seconds: float = 5.0, sender: Sender | None = None,
        echo: Callable[[str], None] = print) -> PassResult:
    """Deliver until stopped (SIGTERM / SIGINT finish the current pass), or one pass with ``once``.
    Returns the totals."""
    settings, name = delivery_settings(app), worker_name()
    totals, stopping = PassResult(), []
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
    with app.app_context():
        send = sender or wechat_sender(app)
        while not stopping:
            result = deliver_once(db.session, send, settings, name)
            db.session.remove()
            for key in ("claimed", "sent", "skipped", "retried", "failed"):
                setattr(totals, key, getattr(totals, key) + getattr(result, key))
            if result.claimed:
                echo(f"delivered: {result.sent} sent, {result.skipped} in-app only, {result.retried} to retry, "
                     f"{result.failed} failed")
            if once:
                break
            if result.claimed < settings.batch_size:
                time.sleep(poll_seconds)
    return totals
