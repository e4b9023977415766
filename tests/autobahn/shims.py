"""Run-time half of the Python 3 port of autobahntestsuite (see port.py).

The suite's cases hold octet strings as `str` whose code points are the octets
(the latin-1 view of Python 2's `str`); autobahn on Python 3 speaks `bytes`.
This module converts at the border between the two, so the 300-odd cases run
unmodified:

- `OctetPeer` stands between a case and its protocol: octet strings going out
  become `bytes`;
- octets coming in (messages, pings, pongs) become latin-1 `str` before a case
  compares them with what it expected;
- `binascii` and the wire log accept either form and give text, as they did, and
  the JSON reports write octets as latin-1 text.

port.py copies this file into the package as `autobahntestsuite.shims` and
imports it first from wstest.py.
"""

import binascii as _binascii
import json
import types


def octets(value):
    """Python 2 octet string (either form) as `bytes`."""
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def latin1(value):
    """Octets as the latin-1 `str` the cases compare with."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return value


def _hex(value):
    return _binascii.hexlify(octets(value)).decode("ascii")


# What the suite imports as `binascii` (port.py rewrites its imports).
binascii = types.SimpleNamespace(b2a_hex=_hex, hexlify=_hex)

class Utf8Validator:
    """autobahn's validator, fed the suite's octet strings."""

    def __init__(self):
        from autobahn.websocket.utf8validator import Utf8Validator as Real

        self._real = Real()

    def reset(self):
        self._real.reset()

    def validate(self, data):
        return self._real.validate(octets(data))


# The protocol methods through which a case puts octets on the wire, and which of
# their arguments (by name; positional ones are converted too) carry octets.
_OCTET_ARGS = {
    "sendFrame": ("payload", "mask"),
    "sendMessage": ("payload",),
    "sendMessageFrameData": ("payload",),
    "sendMessageFrame": ("payload",),
    "sendData": ("data",),
    "sendPing": ("payload",),
    "sendPong": ("payload",),
    "sendCloseFrame": ("reasonUtf8",),
}


class OctetPeer:
    """A case's view of its protocol: like the protocol, but octet `str` goes out as bytes."""

    def __init__(self, protocol):
        object.__setattr__(self, "_protocol", protocol)

    def __getattr__(self, name):
        value = getattr(self._protocol, name)
        names = _OCTET_ARGS.get(name)
        if names is None:
            return value

        def converted(*args, **kwargs):
            args = [octets(a) if isinstance(a, str) else a for a in args]
            for key in names:
                if isinstance(kwargs.get(key), str):
                    kwargs[key] = octets(kwargs[key])
            return value(*args, **kwargs)

        return converted

    def __setattr__(self, name, value):
        setattr(self._protocol, name, value)

    def __eq__(self, other):
        return self._protocol is getattr(other, "_protocol", other)

    __hash__ = None


def install():
    from autobahntestsuite import fuzzing
    from autobahntestsuite.case import Case

    plain_init = Case.__init__

    def init(self, protocol):
        plain_init(self, OctetPeer(protocol))

    Case.__init__ = init

    protocol = fuzzing.FuzzingProtocol
    for name in ("onMessage", "onPong"):
        plain = getattr(protocol, name)

        def incoming(self, payload, *rest, _plain=plain):
            return _plain(self, latin1(payload), *rest)

        setattr(protocol, name, incoming)

    def ascii_log_data(data, maxlen=64, replace=False):
        data = octets(data)
        cut = data[: maxlen - 4] if len(data) > maxlen - 4 else data
        try:
            text = cut.decode("utf8", errors="replace" if replace else "strict")
        except UnicodeDecodeError:
            return "0x" + fuzzing.binLogData(data, maxlen)
        return text + (" ..." if cut is not data else "")

    fuzzing.asciiLogData = ascii_log_data

    # Case reports keep raw octets (handshakes, close reasons); JSON holds them as text.
    def as_text(value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return latin1(value)
        raise TypeError(f"{type(value).__name__} in a case report")

    def dumps(obj, **kwargs):
        return json.dumps(obj, default=as_text, **kwargs)

    fuzzing.json = types.SimpleNamespace(dumps=dumps, loads=json.loads)
