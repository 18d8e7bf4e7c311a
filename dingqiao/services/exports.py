"""Exports of orders, commission lines and withdrawals for a range of China-time dates, as CSV or XLSX.

Rows are streamed: one query per export read in batches (``yield_per``), each row turned into a list of cells
(text, ``Decimal`` yuan, naive China-time ``datetime`` or ``None``) and written out at once, so a year of orders
never sits in memory. Every export is recorded in the audit log before its first row is read: personal data
leaving the system must be traceable even when the download is cut short.
"""
import codecs
import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import BinaryIO, Iterator

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from ..china_time import CHINA_TIME
from ..db import write_transaction
from ..models import (AdminUser, CommissionKind, CommissionLine, CommissionStatus, Order, OrderStatus, User, Withdrawal,
                      WithdrawalStatus)
from . import DomainError, Forbidden
from .audit import record_audit
from .periods import china_midnight
from .policy import Duty, may

MAX_DAYS = 366
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
BATCH = 500
CSV_CHUNK_ROWS = 200
CENT = Decimal("0.01")

Cell = str | int | Decimal | datetime | None


class ExportKind(StrEnum):
    ORDERS = "orders"
    COMMISSIONS = "commissions"
    WITHDRAWALS = "withdrawals"

    @property
    def label(self) -> str:
        return {"orders": "订单", "commissions": "佣金", "withdrawals": "提现"}[self.value]


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


# Commission lines and withdrawals name who earned and withdrew how much: finance's business, not operations'.
FINANCE_ONLY = {ExportKind.COMMISSIONS, ExportKind.WITHDRAWALS}

# (title, column width in characters) per kind, in row order.
COLUMNS: dict[ExportKind, tuple[tuple[str, int], ...]] = {
    ExportKind.ORDERS: (
        ("订单号", 22), ("下单时间", 20), ("状态", 8), ("会员", 16), ("手机", 14), ("核销网点", 18), ("商品", 40),
        ("金额", 12), ("支付时间", 20), ("核销时间", 20), ("退款时间", 20),
    ),
    ExportKind.COMMISSIONS: (
        ("订单号", 22), ("产生时间", 20), ("类型", 12), ("层级", 6), ("受益人", 16), ("基数", 12), ("比例(%)", 9),
        ("金额", 12), ("状态", 8), ("结算时间", 20),
    ),
    ExportKind.WITHDRAWALS: (
        ("提现单号", 24), ("申请时间", 20), ("会员", 16), ("手机", 14), ("金额", 12), ("手续费", 10), ("状态", 10),
        ("方式", 10), ("审核时间", 20), ("打款时间", 20), ("拒绝/失败原因", 30),
    ),
}

# Statuses read as members see them (the enums' labels); the payout method has no enum of its own.
PAYOUT_METHOD = {"wechat": "微信零钱", "wechat_bill": "微信商家转账", "offline": "线下打款"}


@dataclass(frozen=True)
class Export:
    """A validated request: what, as which file, from ``first`` to ``last`` (China-time dates, inclusive)."""

    kind: ExportKind
    format: ExportFormat
    first: date
    last: date

    @property
    def start(self) -> datetime:
        return china_midnight(self.first)

    @property
    def end(self) -> datetime:
        return china_midnight(self.last + timedelta(days=1))

    @property
    def filename(self) -> str:
        return f"{self.kind.label}_{self.first}_{self.last}.{self.format}"

    @property
    def ascii_filename(self) -> str:
        return f"{self.kind}_{self.first}_{self.last}.{self.format}"


def kinds_for(admin: AdminUser) -> list[ExportKind]:
    """What this admin may export: everyone orders; finance and superadmin also the money."""
    if may(admin, Duty.MONEY):
        return list(ExportKind)
    return [kind for kind in ExportKind if kind not in FINANCE_ONLY]


def _parse_day(raw: str | None, field: str) -> date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    # fromisoformat also reads "20261101" and week dates; the date picker only ever sends YYYY-MM-DD.
    if len(raw) == 10 and raw.isascii():
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            pass
        else:
            # A range's ends become UTC datetimes a day apart: 9999-12-31 or 0001-01-01 would overflow there.
            if not FIRST_DAY <= day <= LAST_DAY:
                raise DomainError(f"日期需在 {FIRST_DAY.year} 年到 {LAST_DAY.year} 年之间。", field=field)
            return day
    raise DomainError("日期格式不正确，请按 年-月-日 选择。", field=field)


def parse_export(kind: str | None, first: str | None, last: str | None, file_format: str | None) -> Export:
    """Read the form's values; a clear Chinese message for anything missing or out of bounds."""
    if kind not in set(ExportKind):
        raise DomainError("请选择要导出的内容。", field="kind")
    if file_format not in set(ExportFormat):
        raise DomainError("请选择导出格式（CSV 或 Excel）。")
    first_day, last_day = _parse_day(first, "start"), _parse_day(last, "end")
    if first_day is None or last_day is None:
        raise DomainError("请选择开始日期和结束日期。", field="start" if first_day is None else "end")
    if last_day < first_day:
        raise DomainError("结束日期不能早于开始日期。", field="end")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise DomainError(f"一次最多导出 {MAX_DAYS} 天，请缩小日期范围。", field="end")
    return Export(ExportKind(kind), ExportFormat(file_format), first_day, last_day)


def begin_export(session: Session, admin: AdminUser, export: Export) -> Iterator[list[Cell]]:
    """Check the admin may export this, write the audit row, and return the rows (read lazily, in
    ``created_at, id`` order) for ``write_csv`` or ``write_xlsx``."""
    if export.kind not in kinds_for(admin):
        raise Forbidden("佣金和提现明细仅财务可以导出。")
    model = MODELS[export.kind]
    in_range = (model.created_at >= export.start, model.created_at < export.end)
    with write_transaction(session):
        count = session.scalar(select(func.count()).select_from(model).where(*in_range))
        record_audit(session, actor_kind="admin", actor_id=admin.id, action="export", target_type=export.kind.value,
                     detail={"kind": export.kind.value, "format": export.format.value, "first": str(export.first),
                             "last": str(export.last), "rows": count})
    return ROWS[export.kind](session, in_range)


def _hundredths(value: int) -> Decimal:
    """Fen → yuan, basis points → percent: exact decimals with two places, never a float."""
    return (Decimal(value) / 100).quantize(CENT)


def _local(moment: datetime | None) -> datetime | None:
    """Naive UTC from the database → naive China time, to the second (spreadsheets have no time zones)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc).astimezone(CHINA_TIME).replace(tzinfo=None, microsecond=0)


def _order_rows(session: Session, in_range) -> Iterator[list[Cell]]:
    query = (
        select(Order).where(*in_range).order_by(Order.created_at, Order.id)
        .options(joinedload(Order.user), joinedload(Order.outlet), selectinload(Order.items))
        .execution_options(yield_per=BATCH)
    )
    for order in session.scalars(query):
        yield [
            order.order_no, _local(order.created_at), OrderStatus(order.status).label, order.user.display_name,
            order.user.phone, order.outlet.name,
            "、".join(f"{item.product_name}×{item.quantity}" for item in order.items),
            _hundredths(order.total_fen), _local(order.paid_at), _local(order.redeemed_at), _local(order.refunded_at),
        ]


def _commission_rows(session: Session, in_range) -> Iterator[list[Cell]]:
    query = (
        select(CommissionLine, Order.order_no, User)
        .join(Order, Order.id == CommissionLine.order_id)
        .join(User, User.id == CommissionLine.beneficiary_user_id)
        .where(*in_range).order_by(CommissionLine.created_at, CommissionLine.id)
        .execution_options(yield_per=BATCH)
    )
    for line, order_no, beneficiary in session.execute(query):
        yield [
            order_no, _local(line.created_at), CommissionKind(line.kind).label,
            line.level or None,  # 0 marks outlet and regional lines: no referral level to show
            beneficiary.display_name, _hundredths(line.base_fen), _hundredths(line.rate_bps),
            _hundredths(line.amount_fen), CommissionStatus(line.status).label, _local(line.settled_at),
        ]


def _withdrawal_rows(session: Session, in_range) -> Iterator[list[Cell]]:
    query = (
        select(Withdrawal, User).join(User, User.id == Withdrawal.user_id)
        .where(*in_range).order_by(Withdrawal.created_at, Withdrawal.id)
        .execution_options(yield_per=BATCH)
    )
    for withdrawal, member in session.execute(query):
        yield [
            withdrawal.withdrawal_no, _local(withdrawal.created_at), member.display_name, member.phone,
            _hundredths(withdrawal.amount_fen), _hundredths(withdrawal.fee_fen), WithdrawalStatus(withdrawal.status).label,
            PAYOUT_METHOD.get(withdrawal.payout_method, withdrawal.payout_method), _local(withdrawal.reviewed_at),
            _local(withdrawal.paid_at), withdrawal.reject_reason or withdrawal.failure_reason,
        ]


MODELS = {ExportKind.ORDERS: Order, ExportKind.COMMISSIONS: CommissionLine, ExportKind.WITHDRAWALS: Withdrawal}
ROWS = {ExportKind.ORDERS: _order_rows, ExportKind.COMMISSIONS: _commission_rows,
        ExportKind.WITHDRAWALS: _withdrawal_rows}

# A cell beginning with one of these is run as a formula by Excel and LibreOffice when the CSV is opened.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Cell) -> str | int:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(export: Export, rows: Iterator[list[Cell]]) -> Iterator[bytes]:
    """UTF-8 with a BOM, so that Excel on Windows does not read the Chinese as ANSI; a chunk per
    ``CSV_CHUNK_ROWS`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def drain() -> bytes:
        chunk = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return chunk

    writer.writerow([title for title, _width in COLUMNS[export.kind]])
    yield codecs.BOM_UTF8 + drain()
    for number, row in enumerate(rows, start=1):
        writer.writerow([_csv_cell(value) for value in row])
        if number % CSV_CHUNK_ROWS == 0:
            yield drain()
    if buffer.tell():
        yield drain()


def _xlsx_cell(sheet, value: Cell) -> WriteOnlyCell:
    if isinstance(value, str):
        cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
        # openpyxl stores any string starting with "=" as a formula; user text must stay text.
        cell.data_type = "s"
        return cell
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, Decimal):
        cell.number_format = "0.00"
    elif isinstance(value, datetime):
        cell.number_format = "yyyy-mm-dd hh:mm:ss"
    return cell


def write_xlsx(export: Export, rows: Iterator[list[Cell]], out: BinaryIO) -> None:
    """One sheet in write-only mode (rows go to a temporary file as they come, not into a tree in memory):
    a bold, frozen header row and column widths that fit the content."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(export.kind.label)
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for index, (title, width) in enumerate(COLUMNS[export.kind], start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
        cell = WriteOnlyCell(sheet, value=title)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in rows:
        sheet.append([_xlsx_cell(sheet, value) for value in row])
    workbook.save(out)
