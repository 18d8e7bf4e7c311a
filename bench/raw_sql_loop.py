"""The whole loop — place, pay, redeem — written as plain DB-API SQL (sqlite3 or psycopg), no SQLAlchemy.

The yardstick for the in-process benchmark: the same three write transactions as services.orders.place_order,
services.payments.apply_payment and services.redemption.redeem, with the same writes and the reads their
decisions need (each check a conditional UPDATE with its row count checked, as the services do):
  place   the buyer, the outlet and the product read; the order and its item inserted; stock reserved
          (conditional UPDATE) with its movement row.
  pay     the order read by number and the amount checked; a fresh unique pickup code; PENDING → PAID
          (conditional UPDATE); the payment and the ACCEPTED notify event inserted; the rule version stamped;
          the buyer's two uplines, the outlet owner and the region's factory store looked up and checked
          active; four FROZEN commission lines; each beneficiary's wallet (created on first use) credited with
          a ledger entry; the buyer's and the four beneficiaries' outbox messages; the identity-upgrade rule read.
  redeem  the order read by pickup code; the owner's outlets (owned, staffed, regional) checked; PAID →
          COMPLETED (conditional UPDATE); stock handed over with its movement; the lines given their
          available date, then each settled (conditional UPDATE) with its wallet update and ledger entry, a
          deduplicated "收益已到账" message per beneficiary and the buyer's message; the identity-upgrade measure
          (the buyer's completed purchases summed) and its deduplicated "可申请" message.
Every wallet change and the payment and the redemption write an audit row, chained by SHA-256 under the one
chain-head row at commit, exactly as services.audit does — so ``verify_audit_chain``, ``check_money`` and
``check_stock`` hold over rows written by either version.
"""
import hashlib
import json
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg

CHINA_TIME_OFFSET = timedelta(hours=8)
PAYMENT_TIMEOUT = timedelta(minutes=15)
KIND_LABELS = {"direct": "直推奖励", "team": "团队奖励", "service_fee": "核销服务费", "regional": "区域奖励"}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


class RawLoop:
    """One DB-API connection; ``place``, ``pay`` and ``redeem`` each run one write transaction."""

    def __init__(self, connection, dialect: str):
        self.connection, self.dialect = connection, dialect
        self.cursor = connection.cursor()
        self.pending_audit: list[dict] = []
        self.statements = 0
        self.collisions = 0
        self.integrity_error = sqlite3.IntegrityError if dialect == "sqlite" else psycopg.IntegrityError

    @classmethod
    def connect(cls, url: str) -> "RawLoop":
        if url.startswith("sqlite:///"):
            connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON", "synchronous=NORMAL"):
                connection.execute(f"PRAGMA {pragma}")
            return cls(connection, "sqlite")
        return cls(psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")), "postgresql")

    def close(self) -> None:
        self.connection.close()

    # ------------------------------------------------------------ plumbing

    def sql(self, statement: str, *params):
        if self.dialect == "postgresql":
            statement = statement.replace("?", "%s")
        self.statements += 1
        self.cursor.execute(statement, params)
        return self.cursor

    def one(self, statement: str, *params):
        return self.sql(statement, *params).fetchone()

    def stamp(self, moment: datetime):
        """A datetime as the column stores it (SQLAlchemy's SQLite text format, or a timestamp)."""
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if self.dialect == "sqlite" else moment

    def begin(self) -> None:
        if self.dialect == "sqlite":
            self.sql("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.append_audit()
        if self.dialect == "sqlite":
            self.sql("COMMIT")
        else:
            self.connection.commit()

    def rollback(self) -> None:
        self.pending_audit.clear()
        if self.dialect == "sqlite":
            self.sql("ROLLBACK")
        else:
            self.connection.rollback()

    def transaction(self, work, *args):
        self.begin()
        try:
            result = work(*args)
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return result

    def audit(self, actor_kind: str, actor_id: int | None, action: str, target_type: str, target_id, detail: dict):
        self.pending_audit.append(dict(
            created_at=utcnow(), actor_kind=actor_kind, actor_id=actor_id, action=action, target_type=target_type,
            target_id=str(target_id),
            detail=json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))))

    def append_audit(self) -> None:
        """As services.audit does at commit: the chain head is locked and read last (one UPDATE … RETURNING), the
        rows take the ids after the head's and go in complete, in one executemany; then the head moves on."""
        if not self.pending_audit:
            return
        last_hash, last_id = self.one(
            "UPDATE audit_chain_head SET last_hash = last_hash WHERE id = 1 RETURNING last_hash, last_id")
        rows = []
        for offset, row in enumerate(self.pending_audit, start=1):
            row_id = (last_id or 0) + offset
            payload = json.dumps([row_id, row["created_at"].isoformat(timespec="microseconds"), row["actor_kind"],
                                  row["actor_id"], row["action"], row["target_type"], row["target_id"], row["detail"],
                                  last_hash], ensure_ascii=False, separators=(",", ":"))
            prev_hash, last_hash = last_hash, hashlib.sha256(payload.encode("utf-8")).hexdigest()
            rows.append((row_id, self.stamp(row["created_at"]), row["actor_kind"], row["actor_id"], row["action"],
                         row["target_type"], row["target_id"], row["detail"], prev_hash, last_hash))
        insert = ("INSERT INTO audit_log (id, created_at, actor_kind, actor_id, action, target_type, target_id, "
                  "detail, prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self.statements += 1
        self.cursor.executemany(insert.replace("?", "%s") if self.dialect == "postgresql" else insert, rows)
        self.sql("UPDATE audit_chain_head SET last_hash = ?, last_id = ? WHERE id = 1", last_hash, rows[-1][0])
        self.pending_audit.clear()

    def message(self, user_id: int, event: str, object_id, title: str, body: str, link: str, once: bool = False):
        key, now = f"{event}:{object_id}", self.stamp(utcnow())
        if once and self.one("SELECT id FROM outbox_messages WHERE dedup_key = ?", key):
            return
        self.sql("INSERT INTO outbox_messages (dedup_key, user_id, event, title, body, link, template_data, status, "
                 "attempts, next_attempt_at, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, '{}', 'pending', 0, ?, "
                 "'', ?)", key, user_id, event, title, body, link, now, now)

    def post_entry(self, user_id: int, kind: str, *, available: int, frozen: int, earned: int, line_id: int,
                   order_id: int, memo: str) -> None:
        update = ("UPDATE wallets SET available_fen = available_fen + ?, frozen_fen = frozen_fen + ?, "
                  "total_earned_fen = total_earned_fen + ?, updated_at = ? WHERE user_id = ? RETURNING id")
        wallet = self.one(update, available, frozen, earned, self.stamp(utcnow()), user_id)
        if wallet is None:
            self.sql("INSERT INTO wallets (user_id, available_fen, frozen_fen, withdrawing_fen, total_earned_fen, "
                     "withdrawn_fen, updated_at) VALUES (?, 0, 0, 0, 0, 0, ?) ON CONFLICT (user_id) DO NOTHING",
                     user_id, self.stamp(utcnow()))
            wallet = self.one(update, available, frozen, earned, self.stamp(utcnow()), user_id)
        wallet_id = wallet[0]
        entry_id = self.one(
            "INSERT INTO ledger_entries (wallet_id, kind, available_delta_fen, frozen_delta_fen, "
            "withdrawing_delta_fen, commission_line_id, order_id, memo, created_at) "
            "VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id",
            wallet_id, kind, available, frozen, line_id, order_id, memo, self.stamp(utcnow()))[0]
        self.audit("system", None, f"ledger.{kind}", "wallet", wallet_id, {
            "entry": entry_id, "user": user_id, "available": available, "frozen": frozen, "withdrawing": 0,
            "order": order_id, "commission_line": line_id, "withdrawal": None})

    # ------------------------------------------------------------ the three steps

    def place(self, user_id: int, outlet_id: int, product_id: int) -> str:
        """Order numbers are DQ + the second + 10 random digits, as services.orders makes them: should two
        meet, the unique key refuses the second and it is placed again."""
        while True:
            try:
                return self.transaction(self._place, user_id, outlet_id, product_id)
            except self.integrity_error:
                self.collisions += 1

    def _place(self, user_id: int, outlet_id: int, product_id: int) -> str:
        identity = self.one("SELECT identity FROM users WHERE id = ?", user_id)[0]
        outlet = self.one("SELECT status, location_id FROM outlets WHERE id = ?", outlet_id)
        if outlet is None or outlet[0] != "active":
            raise RuntimeError("outlet closed")
        name, on_sale, member, outlet_price, factory = self.one(
            "SELECT name, is_on_sale, member_price_fen, outlet_price_fen, factory_price_fen FROM products WHERE id = ?",
            product_id)
        if not on_sale:
            raise RuntimeError("off sale")
        price = {"member": member, "outlet": outlet_price, "factory": factory}[identity]
        now = utcnow()
        order_no = f"DQ{(now + CHINA_TIME_OFFSET):%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"
        order_id = self.one(
            "INSERT INTO orders (order_no, user_id, outlet_id, status, price_identity, total_fen, created_at, "
            "expires_at, cancel_reason, after_sales_open) VALUES (?, ?, ?, 'pending_payment', ?, ?, ?, ?, '', ?) "
            "RETURNING id", order_no, user_id, outlet_id, identity, price, self.stamp(now),
            self.stamp(now + PAYMENT_TIMEOUT), False)[0]
        self.sql("INSERT INTO order_items (order_id, product_id, product_name, unit_price_fen, quantity, subtotal_fen) "
                 "VALUES (?, ?, ?, ?, 1, ?)", order_id, product_id, name, price, price)
        if self.sql("UPDATE stock_levels SET reserved = reserved + 1 WHERE location_id = ? AND product_id = ? "
                    "AND on_hand - reserved >= 1", outlet[1], product_id).rowcount != 1:
            raise RuntimeError("out of stock")
        self.sql("INSERT INTO stock_movements (location_id, product_id, on_hand_delta, reserved_delta, reason, "
                 "order_id, note, created_at) VALUES (?, ?, 0, 1, 'reserve', ?, '', ?)",
                 outlet[1], product_id, order_id, self.stamp(utcnow()))
        return order_no

    def pay(self, order_no: str, transaction_id: str, total_fee: int) -> str:
        return self.transaction(self._pay, order_no, transaction_id, total_fee)

    def _pay(self, order_no: str, transaction_id: str, total_fee: int) -> str:
        order_id, user_id, outlet_id, total = self.one(
            "SELECT id, user_id, outlet_id, total_fen FROM orders WHERE order_no = ?", order_no)
        if total_fee != total:
            raise RuntimeError("amount mismatch")
        while True:
            code = f"{secrets.randbelow(10**12):012d}"
            if self.one("SELECT id FROM orders WHERE pickup_code = ?", code) is None:
                break
        now = utcnow()
        if self.sql("UPDATE orders SET status = 'paid', paid_at = ?, pickup_code = ? WHERE id = ? "
                    "AND status = 'pending_payment'", self.stamp(now), code, order_id).rowcount != 1:
            raise RuntimeError("not payable")
        if self.one("SELECT id FROM payments WHERE out_trade_no = ?", order_no) is None:
            self.sql("INSERT INTO payments (order_id, out_trade_no, transaction_id, amount_fen, status, created_at, "
                     "paid_at) VALUES (?, ?, ?, ?, 'paid', ?, ?)", order_id, order_no, transaction_id, total_fee,
                     self.stamp(utcnow()), self.stamp(now))
        self.sql("INSERT INTO payment_events (kind, out_trade_no, transaction_id, amount_fen, detail, needs_attention, "
                 "refund_reason, created_at) VALUES ('accepted', ?, ?, ?, '{}', ?, '', ?)", order_no, transaction_id,
                 total_fee, False,
                 self.stamp(utcnow()))
        self.audit("system", None, "payment.accepted", "order", order_no,
                   {"amount": total_fee, "transaction_id": transaction_id})

        rule_id, depth, *rates = self.one(
            "SELECT id, referral_depth, direct_bps, team_bps, third_level_bps, service_fee_bps, regional_bps "
            "FROM commission_rule_versions ORDER BY id DESC LIMIT 1")
        self.sql("UPDATE orders SET rule_version_id = ? WHERE id = ?", rule_id, order_id)
        region_id, owner_id = self.one("SELECT region_id, owner_user_id FROM outlets WHERE id = ?", outlet_id)
        factory = self.one("SELECT owner_user_id FROM factory_stores WHERE region_id = ? AND status = 'active'",
                           region_id)
        beneficiaries, current = [], user_id
        for level in range(1, depth + 1):
            upline = self.one("SELECT upline_id FROM referral_bindings WHERE user_id = ?", current)
            if upline is None:
                break
            beneficiaries.append(("direct" if level == 1 else "team", level, rates[level - 1], upline[0]))
            current = upline[0]
        beneficiaries.append(("service_fee", 0, rates[3], owner_id))
        beneficiaries.append(("regional", 0, rates[4], factory[0] if factory else None))
        people = [user for *_, user in beneficiaries if user]
        active = {row[0] for row in self.sql(
            f"SELECT id FROM users WHERE id IN ({', '.join('?' * len(people))}) AND is_active = ?", *people, True)}
        lines = []
        for item_id, subtotal in self.sql("SELECT id, subtotal_fen FROM order_items WHERE order_id = ? ORDER BY id",
                                          order_id).fetchall():
            for kind, level, rate, beneficiary in beneficiaries:
                amount = subtotal * rate // 10_000
                if beneficiary is None or beneficiary == user_id or beneficiary not in active or amount <= 0:
                    continue
                line_id = self.one(
                    "INSERT INTO commission_lines (order_id, order_item_id, kind, level, beneficiary_user_id, "
                    "rule_version_id, base_fen, rate_bps, amount_fen, status, created_at) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'frozen', ?) RETURNING id", order_id, item_id, kind, level,
                    beneficiary, rule_id, subtotal, rate, amount, self.stamp(utcnow()))[0]
                lines.append((beneficiary, line_id, kind, amount))
        for beneficiary, line_id, kind, amount in sorted(lines):
            self.post_entry(beneficiary, "commission_frozen", available=0, frozen=amount, earned=0, line_id=line_id,
                            order_id=order_id, memo=KIND_LABELS[kind])
        self.message(user_id, "order_paid", order_id, "支付成功，待自提",
                     f"订单 {order_no} 已支付，请凭核销码到门店自提。", f"/orders/{order_no}")
        for beneficiary, _, _, amount in lines:
            self.message(beneficiary, "commission_frozen", f"{order_id}:{beneficiary}", "新增待结算收益",
                         f"有一笔 {yuan(amount)} 的收益待买家提货后结算。", "/wallet/")
        self.identity_rule_reached(user_id, "paid")
        return code

    def redeem(self, staff_user_id: int, code: str) -> None:
        self.transaction(self._redeem, staff_user_id, code)

    def _redeem(self, staff_user_id: int, code: str) -> None:
        order_id, order_no, user_id, outlet_id, total, rule_id = self.one(
            "SELECT id, order_no, user_id, outlet_id, total_fen, rule_version_id FROM orders WHERE pickup_code = ?",
            code)
        location_id, status = self.one("SELECT location_id, status FROM outlets WHERE id = ?", outlet_id)
        allowed = {row[0] for row in self.sql("SELECT id FROM outlets WHERE owner_user_id = ?", staff_user_id)}
        allowed |= {row[0] for row in self.sql("SELECT outlet_id FROM outlet_staff WHERE user_id = ?", staff_user_id)}
        allowed |= {row[0] for row in self.sql(
            "SELECT id FROM outlets WHERE region_id IN (SELECT region_id FROM factory_stores WHERE owner_user_id = ?)",
            staff_user_id)}
        if outlet_id not in allowed or status != "active":
            raise RuntimeError("not this outlet's order")
        now = utcnow()
        if self.sql("UPDATE orders SET status = 'completed', redeemed_at = ?, redeemed_by_user_id = ? WHERE id = ? "
                    "AND status = 'paid' AND after_sales_open = ?", self.stamp(now), staff_user_id, order_id,
                    False).rowcount != 1:
            raise RuntimeError("not redeemable")
        for product_id, quantity in self.sql("SELECT product_id, quantity FROM order_items WHERE order_id = ? "
                                             "ORDER BY product_id", order_id).fetchall():
            if self.sql("UPDATE stock_levels SET on_hand = on_hand - ?, reserved = reserved - ? WHERE location_id = ? "
                        "AND product_id = ? AND reserved >= ? AND on_hand >= ?", quantity, quantity, location_id,
                        product_id, quantity, quantity).rowcount != 1:
                raise RuntimeError("no reservation to hand over")
            self.sql("INSERT INTO stock_movements (location_id, product_id, on_hand_delta, reserved_delta, reason, "
                     "order_id, note, created_at) VALUES (?, ?, ?, ?, 'redeem', ?, '', ?)", location_id, product_id,
                     -quantity, -quantity, order_id, self.stamp(utcnow()))
        cooling_days = self.one("SELECT cooling_days FROM commission_rule_versions WHERE id = ?", rule_id)[0]
        available_at = now + timedelta(days=cooling_days)
        self.sql("UPDATE commission_lines SET available_at = ? WHERE order_id = ? AND status = 'frozen'",
                 self.stamp(available_at), order_id)
        credited: dict[int, int] = {}
        if available_at <= now:
            due = self.sql(
                "SELECT commission_lines.id, beneficiary_user_id, kind, amount_fen FROM commission_lines "
                "JOIN orders ON orders.id = commission_lines.order_id WHERE commission_lines.status = 'frozen' "
                "AND commission_lines.available_at IS NOT NULL AND orders.status = 'completed' "
                "AND orders.after_sales_open = ? AND commission_lines.order_id = ? "
                "ORDER BY beneficiary_user_id, commission_lines.id", False, order_id).fetchall()
            for line_id, beneficiary, kind, amount in due:
                if self.sql("UPDATE commission_lines SET status = 'settled', settled_at = ? WHERE id = ? "
                            "AND status = 'frozen'", self.stamp(now), line_id).rowcount == 1:
                    self.post_entry(beneficiary, "commission_settled", available=amount, frozen=-amount, earned=amount,
                                    line_id=line_id, order_id=order_id, memo=KIND_LABELS[kind])
                    credited[beneficiary] = credited.get(beneficiary, 0) + amount
        for beneficiary, amount in credited.items():
            self.message(beneficiary, "commission_settled", f"{order_id}:{beneficiary}", "收益已到账",
                         f"一笔 {yuan(amount)} 的收益已结算到可用余额，可申请提现。", "/wallet/", once=True)
        self.message(user_id, "order_redeemed", order_id, "已提货", f"订单 {order_no} 已在门店提货，感谢惠顾。",
                     f"/orders/{order_no}")
        self.identity_rule_reached(user_id, "redeemed")
        self.audit("user", staff_user_id, "order.redeem", "order", order_no,
                   {"outlet_id": outlet_id, "total_fen": total})

    def identity_rule_reached(self, user_id: int, moment: str) -> None:
        """services.upgrades.on_purchase_counted for a member without an application: tell them once."""
        rule = self.one("SELECT threshold_fen, counts_at, grant_mode FROM identity_rule_versions "
                        "WHERE target = 'outlet' ORDER BY id DESC LIMIT 1")
        if rule is None or rule[2] == "closed" or rule[1] != moment:
            return
        if self.one("SELECT identity FROM users WHERE id = ?", user_id)[0] != "member":
            return
        states = ("paid", "completed") if moment == "paid" else ("completed",)
        bought = self.one(f"SELECT coalesce(sum(total_fen), 0) FROM orders WHERE user_id = ? "
                          f"AND status IN ({', '.join('?' * len(states))})", user_id, *states)[0]
        if bought < rule[0]:
            return
        if self.one("SELECT id FROM identity_applications WHERE user_id = ? AND status IN ('waiting', 'review')",
                    user_id) is not None:
            return
        self.message(user_id, "identity_eligible", f"{user_id}:outlet", "可申请成为核销网点",
                     f"您已满足条件：累计购买实物商品满 {yuan(rule[0])}（以提货为准），自动开通。填写门店信息即可开通。",
                     "/me/upgrade", once=True)
