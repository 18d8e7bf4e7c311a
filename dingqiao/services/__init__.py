"""Business rules. Plain functions taking a session and plain values; they own their transaction
(``dingqiao.db.write_transaction``) and raise ``DomainError`` subclasses with a Chinese message."""


class DomainError(Exception):
    """A rule said no: the request, as asked, is refused. ``message`` is shown to the user as is.

    What kind of "no" it is, is said by the class and nothing else: a plain DomainError (or a subclass of it
    alone) means the request itself is wrong; the subclasses below say it names nothing that exists, is not the
    asker's to make, or clashes with how things stand now. Services know nothing of HTTP: the web edge turns
    the kind into a status (``dingqiao.web.domain_error_status``).

    ``field``, when given, names the argument the refusal is about (``shop_name``, ``reason``): a form with a field
    of that name shows the message next to it (``dingqiao.forms.place_refusal``)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


class NotFound(DomainError):
    """What the request names does not exist (or is not the asker's to see)."""


class Forbidden(DomainError):
    """The asker may not do this (a role, an owner, a disabled account)."""


class NeedsHigherRole(DomainError):
    """The asker may do this kind of thing, but not this much of it: a higher role must (a price change beyond
    an operator's limit). Unlike Forbidden, the page the asker is on stays theirs, with the reason shown."""


class Conflict(DomainError):
    """The request was fine but clashes with how things stand now: already done, sold out, changed meanwhile."""


class NotAuthenticated(DomainError):
    """Who is asking could not be established (a wrong name or password)."""


class TooManyAttempts(DomainError):
    """Refused for now because of how often it was tried (a locked account); later it may succeed."""
