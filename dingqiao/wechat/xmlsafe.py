"""XML that WeChat posts to us (the pay and refund notifies, the server callback) never carries a DTD, and a DTD
is where entity tricks live (billion laughs, external entities). ``refuse_dtd`` runs before any parser of ours
sees a body."""
from xml.parsers import expat


class UnsafeXML(ValueError):
    """An XML body that declares a DTD."""


def _refuse(*_args) -> None:
    raise UnsafeXML("DTD in XML body")


def refuse_dtd(body: bytes) -> None:
    """Raise UnsafeXML when ``body`` declares a DTD, wherever it stands (it may follow comments of any length).

    Looked for twice, as the two kinds of parser after this one read the body: as text decoded from UTF-8
    (wechatpy decodes some bodies before parsing), and by expat from the bytes, which honours a byte-order mark
    and the encoding the XML declaration names (a DOCTYPE in UTF-16 has no ASCII "<!DOCTYPE"). A body that is
    not well-formed is left to the caller's parser; it stops where expat stopped here."""
    if b"<!doctype" in body.lower():
        _refuse()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    try:
        parser.Parse(body, True)
    except expat.ExpatError:
        pass
