"""进货单: restock orders up the supply chain.

An outlet orders from the factory store of its region at the outlet price; a factory store orders from the
platform warehouse at the factory price, shipped by an admin. The supplier ships — all at once or in parts —
and its stock goes down with each shipment; the buyer confirms receipt and its stock goes up by what was
shipped. Before anything ships either side may cancel. Each step is one transaction with its stock movements,
so goods are never created or lost (``flask check-stock``); goods shipped and not yet received are in transit.

Payment between the parties is settled offline (B2B invoice); the order records its value at the price tier.
"""
from dataclasses import dataclass

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session, selectinload

from ..db import write_transaction
from ..models import (
    FactoryStore,
    StockLevel,
    LocationKind,
    Outlet,
    Product,
    RestockItem,
    RestockOrder,
    RestockStatus,
    StockLocation,
    StockReason,
)
from ..models.base import utcnow
from . import DomainError, Forbidden, NotFound, submissions
from .audit import record_audit
from .messages import enqueue_message
from .orders import new_number
from .outlets import factory_owned_by, outlet_owned_by
from .stock import add_stock, take_stock
from .network_rules import platform_location_id, supplying_factory_store
from .upgrades import on_restock_received

MAX_LINE_QUANTITY = 9_999
MAX_LINES = 50
OPEN = (RestockStatus.PENDING, RestockStatus.SHIPPING)


class RestockError(DomainError):
    pass


@dataclass(frozen=True)
class Party:
    """Who is acting on a restock order: a member running a location, or a platform admin."""

    kind: str  # "user" or "admin"
    id: int
    location_id: int | None  # the location this party runs (None for an admin: the platform's)


def party_for_user(session: Session, user_id: int) -> Party:
    factory = factory_owned_by(session, user_id)
    if factory is not None:
        return Party("user", user_id, factory.location_id)
    outlet = outlet_owned_by(session, user_id)
    if outlet is not None:
        return Party("user", user_id, outlet.location_id)
    raise Forbidden("只有门店店主或工厂店可以进货。")


def supplier_location_id(session: Session, buyer_location_id: int) -> tuple[int, str]:
    """Where a location restocks from, and the price tier it buys at."""
    location = session.get(StockLocation, buyer_location_id)
    if location.kind == LocationKind.OUTLET:
        outlet = session.scalar(select(Outlet).where(Outlet.location_id == buyer_location_id))
        factory = supplying_factory_store(session, outlet.region_id)
        if factory is None:
            raise RestockError("您所在区域暂无工厂店，请联系平台客服进货。")
        return factory.location_id, "outlet"
    if location.kind == LocationKind.FACTORY:
        platform = platform_location_id(session)
        if platform is None:
            raise RestockError("平台仓库尚未设置，请联系平台。")
        return platform, "factory"
    raise RestockError("平台仓库不通过进货单进货。")


def parse_quantities(raw: dict[str, str]) -> dict[int, int]:
    """Form fields ``qty-<product id>`` → {product id: quantity}; blanks and zeros dropped."""
    quantities = {}
    for key, value in raw.items():
        if not key.startswith("qty-"):
            continue
        product_id, value = key[4:], (value or "").strip()
        if not value or value.strip("0") == "":
            continue
        if not (product_id.isascii() and product_id.isdigit() and len(product_id) <= 18):
            raise RestockError("页面已过期，请刷新后重试。")
        if value[:1] == "-" and value[1:].isascii() and value[1:].isdigit():
            raise RestockError("数量至少为 1 件。")
        if not (value.isascii() and value.isdigit()):
            raise RestockError("数量需为整数。")
        if len(value) > 5:
            raise RestockError(f"每种商品进货数量需在 1 到 {MAX_LINE_QUANTITY} 之间。")
        quantities[int(product_id)] = int(value)
    return quantities


@dataclass(frozen=True)
class RestockPreview:
    """What an order of these quantities would come to, and why it could not be placed as it is."""

    total_fen: int
    units: int
    problems: list[str]


def supplier_available(session: Session, supplier_location_id: int, product_ids) -> dict[int, int]:
    """Units the supplier can ship (on hand, not reserved for its own buyers), per product."""
    return _available_at(session, supplier_location_id, StockLevel.product_id.in_(list(product_ids)))


def _available_at(session: Session, location_id: int, *conditions) -> dict[int, int]:
    rows = session.execute(select(StockLevel.product_id, StockLevel.available)
                           .where(StockLevel.location_id == location_id, *conditions))
    return {row.product_id: row.available for row in rows}


@dataclass(frozen=True)
class NewRestock:
    """What the 新建进货单 page offers: the products on sale at the buyer's tier, with the supplier's stock."""

    supplier_name: str
    tier: str  # the price tier the buyer pays ("outlet" or "factory")
    products: list[Product]
    available: dict[int, int]  # product id → units the supplier can ship now


def new_restock(session: Session, buyer_location_id: int) -> NewRestock:
    supplier_id, tier = supplier_location_id(session, buyer_location_id)
    products = session.scalars(select(Product).where(Product.is_on_sale.is_(True))
                               .order_by(Product.sort_order, Product.id))
    return NewRestock(location_name(session, supplier_id), tier, list(products), _available_at(session, supplier_id))


@dataclass(frozen=True)
class RestockDetail:
    """One restock order as its buyer or its supplier sees it."""

    order: RestockOrder
    products: dict[int, Product]
    available: dict[int, int]  # product id → units the supplier can ship now
    is_supplier: bool
    is_buyer: bool


def restock_detail(session: Session, party: Party, restock_id: int) -> RestockDetail:
    order = restock_for(session, party, restock_id)
    ids = [item.product_id for item in order.items]
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(ids)))}
    return RestockDetail(order, products, _available_at(session, order.from_location_id),
                         party.location_id == order.from_location_id, party.location_id == order.to_location_id)


def preview_restock(session: Session, user_id: int, fields: dict[str, str]) -> RestockPreview:
    """The order total of the form's ``qty-<product id>`` fields before placing (the 新建进货单 page asks as
    they change), with what would refuse it; nothing is written."""
    try:
        quantities = parse_quantities(fields)
    except RestockError as error:
        return RestockPreview(0, 0, [error.message])
    buyer = party_for_user(session, user_id)
    supplier_id, tier = supplier_location_id(session, buyer.location_id)
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(quantities)))}
    total = sum(products[pid].price_for(tier) * q for pid, q in quantities.items() if pid in products)
    problems = _over_supply(session, supplier_id, quantities, products)
    if any(not 1 <= q <= MAX_LINE_QUANTITY for q in quantities.values()):
        problems.insert(0, f"每种商品进货数量需在 1 到 {MAX_LINE_QUANTITY} 之间。")
    return RestockPreview(total, sum(quantities.values()), problems)


def _over_supply(session: Session, supplier_id: int, quantities: dict[int, int], products: dict) -> list[str]:
    available = supplier_available(session, supplier_id, quantities)
    return [f"{products[pid].name}供货方只有 {max(available.get(pid, 0), 0)} 件可发，不能进 {q} 件"
            for pid, q in sorted(quantities.items()) if pid in products and q > available.get(pid, 0)]


def place_restock(session: Session, user_id: int, quantities: dict[int, int], note: str = "", *,
                  check_supply: bool = True, submission_key: str | None = None) -> RestockOrder:
    """No line may ask for more than the supplier can ship now (``check_supply=False`` skips that, for a test
    that needs an order its supplier cannot fill); a repeat of ``submission_key`` answers with the first order
    and writes nothing."""
    if not quantities:
        raise RestockError("请至少填写一种商品的进货数量。")
    if len(quantities) > MAX_LINES or any(not 1 <= q <= MAX_LINE_QUANTITY for q in quantities.values()):
        raise RestockError(f"每种商品进货数量需在 1 到 {MAX_LINE_QUANTITY} 之间。")
    with write_transaction(session):
        earlier = submissions.claim(session, submission_key, actor=f"user:{user_id}", action="restock.place")
        if earlier is not None:
            return _load(session, earlier)
        buyer = party_for_user(session, user_id)
        # Postgres: an outlet being moved to another region (network.move_outlet locks its row) is moved first, so
        # the supplier read next is its new region's factory store. SQLite's writers are one at a time anyway.
        session.execute(select(Outlet.id).where(Outlet.location_id == buyer.location_id).with_for_update(read=True))
        supplier_id, tier = supplier_location_id(session, buyer.location_id)
        products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(quantities)))}
        if set(products) != set(quantities) or not all(p.is_on_sale for p in products.values()):
            raise RestockError("有商品已下架或不存在，请刷新后重试。")
        if check_supply and (over := _over_supply(session, supplier_id, quantities, products)):
            raise RestockError("；".join(over) + "。")
        order = RestockOrder(
            restock_no=_restock_no(), from_location_id=supplier_id, to_location_id=buyer.location_id,
            status=RestockStatus.PENDING, created_by_user_id=user_id, note=" ".join(note.split())[:200],
        )
        session.add(order)
        session.flush()
        total = 0
        for product_id in sorted(quantities):
            price = products[product_id].price_for(tier)
            session.add(RestockItem(restock_order_id=order.id, product_id=product_id, unit_price_fen=price,
                                    quantity=quantities[product_id]))
            total += price * quantities[product_id]
        order.total_fen = total
        record_audit(session, actor_kind="user", actor_id=user_id, action="restock.place", target_type="restock_order",
                     target_id=order.restock_no, detail={"total_fen": total, "lines": len(quantities)})
        owner = _location_owner(session, supplier_id)
        if owner is not None:
            enqueue_message(session, user_id=owner, event="restock_placed", object_id=order.id, title="新的进货单",
                            body=f"进货单 {order.restock_no} 待发货。", link=f"/restock/{order.id}",
                            template_data={"restock_no": order.restock_no, "amount": order.total_fen})
        submissions.remember(session, submission_key, order.id)
    return order


def ship_restock(session: Session, party: Party, restock_id: int, quantities: dict[int, int], *,
                 submission_key: str | None = None) -> RestockOrder:
    """Ship some or all of what is still open. Each quantity at most what is left to ship and what the supplier
    has available (not reserved for its own buyers); the supplier's stock goes down in the same transaction.
    A repeat of ``submission_key`` (a double tap on 发货) ships nothing more and answers with the order."""
    if not quantities or any(q < 0 for q in quantities.values()):
        raise RestockError("请填写本次发货数量。")
    with write_transaction(session):
        order = _load(session, restock_id, for_update=True)
        _must_be_supplier(session, party, order)
        if submissions.claim(session, submission_key, actor=f"{party.kind}:{party.id}",
                             action="restock.ship", target=restock_id) is not None:
            return order
        if order.status not in OPEN:
            raise RestockError(f"该进货单{RestockStatus(order.status).label}，不能再发货。")
        items = {item.product_id: item for item in order.items}
        if not set(quantities) <= set(items):
            raise RestockError("发货商品不在该进货单中。")
        shipped_any = False
        for product_id, quantity in sorted(quantities.items()):
            if quantity == 0:
                continue
            item = items[product_id]
            left = item.quantity - item.shipped_quantity
            name = session.get(Product, product_id).name
            if quantity > left:
                raise RestockError(f"{name}只剩 {left} 件未发，不能发 {quantity} 件。")
            take_stock(session, location_id=order.from_location_id, product_id=product_id, quantity=quantity,
                       reason=StockReason.RESTOCK_OUT, restock_order_id=order.id, product_name=name)
            session.execute(update(RestockItem).where(RestockItem.id == item.id)
                            .values(shipped_quantity=RestockItem.shipped_quantity + quantity))
            shipped_any = True
        if not shipped_any:
            raise RestockError("请填写本次发货数量。")
        session.expire_all()
        done = all(item.shipped_quantity == item.quantity for item in order.items)
        order.status = RestockStatus.SHIPPED if done else RestockStatus.SHIPPING
        order.updated_at = utcnow()
        record_audit(session, actor_kind=party.kind, actor_id=party.id, action="restock.ship",
                     target_type="restock_order", target_id=order.restock_no, detail={
                         "shipped": {str(k): v for k, v in quantities.items() if v}})
        buyer = _location_owner(session, order.to_location_id)
        if buyer is not None:
            count = sum(quantities.values())
            enqueue_message(session, user_id=buyer, event="restock_shipped",
                            object_id=f"{order.id}:{order.updated_at.isoformat()}", title="进货单已发货",
                            body=f"进货单 {order.restock_no} 本次发出 {count} 件，收到后请确认收货。",
                            link=f"/restock/{order.id}",
                            template_data={"restock_no": order.restock_no, "quantity": count})
        submissions.remember(session, submission_key, order.id)
    return order


def receive_restock(session: Session, user_id: int, restock_id: int, *,
                    submission_key: str | None = None) -> RestockOrder:
    """Confirm receipt of everything shipped so far; the buyer's stock goes up by exactly that. A repeat of
    ``submission_key`` answers with the order and receives nothing twice."""
    with write_transaction(session):
        order = _load(session, restock_id, for_update=True)
        buyer = party_for_user(session, user_id)
        if buyer.location_id != order.to_location_id:
            raise NotFound("进货单不存在。")
        if submissions.claim(session, submission_key, actor=f"user:{user_id}", action="restock.receive", target=restock_id) is not None:
            return order
        arriving = {item.id: item.shipped_quantity - item.received_quantity for item in order.items
                    if item.shipped_quantity > item.received_quantity}
        if not arriving:
            raise RestockError("没有待收的货品。")
        for item in order.items:
            quantity = arriving.get(item.id)
            if not quantity:
                continue
            session.execute(update(RestockItem).where(RestockItem.id == item.id)
                            .values(received_quantity=RestockItem.received_quantity + quantity))
            add_stock(session, location_id=order.to_location_id, product_id=item.product_id, quantity=quantity,
                      reason=StockReason.RESTOCK_IN, restock_order_id=order.id)
        session.expire_all()
        if all(item.received_quantity == item.quantity for item in order.items):
            order.status = RestockStatus.RECEIVED
        order.updated_at = utcnow()
        record_audit(session, actor_kind="user", actor_id=user_id, action="restock.receive",
                     target_type="restock_order", target_id=order.restock_no,
                     detail={"received": sum(arriving.values())})
        on_restock_received(session, user_id)
        submissions.remember(session, submission_key, order.id)
    return order


def cancel_restock(session: Session, party: Party, restock_id: int, reason: str = "") -> RestockOrder:
    """Either side, before anything has shipped."""
    with write_transaction(session):
        order = _load(session, restock_id, for_update=True)
        is_buyer = party.kind == "user" and party.location_id == order.to_location_id
        if not is_buyer:
            _must_be_supplier(session, party, order)
        cancelled = session.execute(
            update(RestockOrder).where(RestockOrder.id == order.id, RestockOrder.status == RestockStatus.PENDING)
            .values(status=RestockStatus.CANCELLED, cancel_reason=" ".join(reason.split())[:200],
                    updated_at=utcnow())
        ).rowcount
        if not cancelled:
            raise RestockError("已开始发货的进货单不能取消。")
        record_audit(session, actor_kind=party.kind, actor_id=party.id, action="restock.cancel",
                     target_type="restock_order", target_id=order.restock_no, detail={"reason": reason[:200]})
        session.refresh(order)
    return order


def restock_for(session: Session, party: Party, restock_id: int) -> RestockOrder:
    """One restock order, to its buyer or its supplier only (anyone else: not found)."""
    order = _load(session, restock_id)
    if party.kind == "admin":
        if order.from_location_id != platform_location_id(session):
            raise NotFound("进货单不存在。")
    elif party.location_id not in (order.from_location_id, order.to_location_id):
        raise NotFound("进货单不存在。")
    return order


def restock_orders(location_id: int, *, incoming: bool) -> Select:
    """A location's restock orders, newest first: those it placed (incoming goods) or those it supplies."""
    column = RestockOrder.to_location_id if incoming else RestockOrder.from_location_id
    return (select(RestockOrder).where(column == location_id).options(selectinload(RestockOrder.items))
            .order_by(RestockOrder.id.desc()))


def restocks_of(session: Session, location_id: int, *, incoming: bool, limit: int = 50) -> list[RestockOrder]:
    return list(session.scalars(restock_orders(location_id, incoming=incoming).limit(limit)))


def location_name(session: Session, location_id: int) -> str:
    location = session.get(StockLocation, location_id)
    return location.name if location else ""


def _load(session: Session, restock_id: int, for_update: bool = False) -> RestockOrder:
    """The order with its items; ``for_update`` locks its row on Postgres, so two steps on one order queue
    (SQLite already runs one writer at a time)."""
    query = select(RestockOrder).where(RestockOrder.id == restock_id).options(selectinload(RestockOrder.items))
    if for_update:
        query = query.with_for_update(of=RestockOrder).execution_options(populate_existing=True)
    order = session.scalar(query)
    if order is None:
        raise NotFound("进货单不存在。")
    return order


def _must_be_supplier(session: Session, party: Party, order: RestockOrder) -> None:
    if party.kind == "admin":
        if order.from_location_id != platform_location_id(session):
            raise NotFound("进货单不存在。")
        return
    if party.location_id != order.from_location_id:
        if party.location_id == order.to_location_id:
            raise Forbidden("只有供货方可以发货。")
        raise NotFound("进货单不存在。")


def _location_owner(session: Session, location_id: int) -> int | None:
    owner = session.scalar(select(FactoryStore.owner_user_id).where(FactoryStore.location_id == location_id))
    return owner or session.scalar(select(Outlet.owner_user_id).where(Outlet.location_id == location_id))


def _restock_no() -> str:
    return new_number("RS", utcnow())
