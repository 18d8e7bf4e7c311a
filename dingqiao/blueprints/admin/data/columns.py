"""How the data pages show a cell: money in yuan, times in China time, a member's id as their name and an order's
id as its number (each linking to its page, written by templates/admin/_links.html as on the workflow pages), an
admin's id as the username, labels for stored words. Formatters take Flask-Admin's ``(view, context, model, name)``."""
from flask import g, get_template_attribute

from ....extensions import db
from ....money import format_yuan
from ....services import data_pages
from ....services.commissions import format_percent
from ....templating import local_time


def yuan(_view, _context, model, name):
    return format_yuan(getattr(model, name))


def local(_view, _context, model, name):
    value = getattr(model, name)
    return local_time(value) if value else ""


def percent(_view, _context, model, name):
    return format_percent(getattr(model, name))


def _admin_link(kind: str, *args):
    """A link to a member's or an order's page (``kind``: the macro of templates/admin/_links.html)."""
    return get_template_attribute("admin/_links.html", kind)(*args)


def link(kind: str, shown):
    """A cell that links its row (a member, an order) to the row's workflow page."""

    def formatter(_view, _context, model, _name):
        return _admin_link(kind, model.id, shown(model))

    return formatter


def choices(labels) -> list[tuple[str, str]]:
    """``column_choices`` for Flask-Admin: the list, the details and the filter's drop-down show the label.
    ``labels`` is an enum whose members carry ``.label`` (the models' one home for them), or a dict."""
    if isinstance(labels, type):
        return [(member.value, member.label) for member in labels]
    return [(str(value), label) for value, label in labels.items()]


# A page of rows is read once per request: the names, numbers and owners it shows are collected for the whole page
# (``DataView.get_list``) and kept for the request, so each cell does not read its own.

def _remembered(key: str, ids, read) -> dict:
    """Values by id for this request, reading (``read(session, ids)``) only the ids not yet known."""
    known = g.setdefault(key, {})
    missing = {one for one in ids if one is not None} - known.keys()
    if missing:
        known.update(read(db.session, missing))
    return known


def people(user_ids) -> dict[int, str]:
    """Members' display names by id."""
    return _remembered("data_people", user_ids, data_pages.display_names)


def order_numbers(order_ids) -> dict[int, str]:
    """Orders' numbers by id."""
    return _remembered("data_order_numbers", order_ids, data_pages.order_numbers)


def wallet_owners(wallet_ids) -> dict[int, int]:
    """Wallets' members by wallet id."""
    return _remembered("data_wallet_owners", wallet_ids, data_pages.wallet_owners)


def person_link(user_id: int | None):
    if user_id is None:
        return "—"
    return _admin_link("member", user_id, people([user_id]).get(user_id, f"#{user_id}"))


def person(_view, _context, model, name):
    """A member id shown as the member's name, linking to their page."""
    return person_link(getattr(model, name))


def order(_view, _context, model, name):
    """An order id shown as the order's number, linking to the order's page."""
    order_id = getattr(model, name)
    if order_id is None:
        return "—"
    return _admin_link("order", order_id, order_numbers([order_id]).get(order_id, f"#{order_id}"))


def wallet_owner(_view, _context, model, name):
    """A wallet id shown as its member's name, linking to their page."""
    wallet_id = getattr(model, name)
    return person_link(None if wallet_id is None else wallet_owners([wallet_id]).get(wallet_id))


def admin_names() -> dict[int, str]:
    if "data_admin_names" not in g:
        g.data_admin_names = data_pages.admin_usernames(db.session)
    return g.data_admin_names


def admin(_view, _context, model, name):
    admin_id = getattr(model, name)
    return "—" if admin_id is None else admin_names().get(admin_id, f"#{admin_id}")
