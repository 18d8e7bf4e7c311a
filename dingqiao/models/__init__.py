"""All models, imported here so that SQLAlchemy's registry and Alembic see every table."""
from .audit import AuditChainHead, AuditLog
from .cache import CacheVersion
from .catalog import CartItem, Category, Product, ProductImage
from .logins import LoginSession
from .messages import DeliveryStatus, OutboxMessage
from .money import (
    CommissionKind,
    CommissionLine,
    CommissionRuleVersion,
    CommissionStatus,
    EARNING_COMMISSION_STATES,
    LedgerEntry,
    LedgerKind,
    RefusedNotify,
    RefusedNotifyReason,
    Wallet,
    WITHDRAWALS_PAYING_OUT,
    Withdrawal,
    WithdrawalStatus,
)
from .network import (
    FactoryStore,
    LocationKind,
    Outlet,
    OutletStaff,
    Region,
    SiteStatus,
    StaffInvite,
    StockLocation,
)
from .ops import JobRun, ScheduledJob, ShopSettings, SubmissionKey
from .orders import (
    PAID_ORDER_STATES,
    REFUNDS_IN_FLIGHT,
    Order,
    OrderItem,
    OrderStatus,
    Payment,
    PaymentEvent,
    PaymentEventKind,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from .service import (
    Announcement,
    Article,
    ArticleKind,
    Banner,
    BannerTarget,
    CaseKind,
    CaseStatus,
    ServiceCase,
    ServiceMessage,
    ServicePhoto,
)
from .security import CallbackNonce, RateLimitCounter
from .stock import RestockItem, RestockOrder, RestockStatus, StockLevel, StockMovement, StockReason
from .upgrades import (
    OPEN_APPLICATION,
    ApplicationStatus,
    CountsAt,
    GrantMode,
    IdentityApplication,
    IdentityRuleVersion,
    UpgradeMetric,
    UpgradeTarget,
)
from .users import (
    MONEY_REVIEWERS,
    AdminRole,
    AdminUser,
    BindingAttempt,
    BindingSource,
    Identity,
    ReferralBinding,
    TeamPath,
    User,
)

__all__ = [name for name in dir() if not name.startswith("_")]
