"""Money is integer fen everywhere; this is the one way it becomes text."""


def format_yuan(fen: int | None) -> str:
    """12345 → "¥123.45"; integer arithmetic only, so money never meets a float."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
