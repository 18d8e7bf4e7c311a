"""Business rules. Plain functions taking a session and plain values; they own their transaction
(``dingqiao.db.write_transaction``) and raise ``DomainError`` subclasses with a Chinese message."""


class DomainError(Exception):
    """A rule said no. ``message`` is shown to the user as is; ``status`` is the HTTP status for it."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status = 404


class Forbidden(DomainError):
    status = 403
