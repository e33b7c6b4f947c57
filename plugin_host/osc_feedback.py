"""What the OSC surface sends back, and where to (DESIGN.md, "Control contract").

Feedback goes to two kinds of destination:

- subscribers: ``/sam/subscribe i`` subscribes the sender's address, ``/sam/subscribe i s i``
  the host and port given (1 on, 0 off);
- the reply address (``serve --osc-reply HOST:PORT``), which gets everything a subscriber
  gets and also every reply and every ``/sam/error``, whoever caused it. Senders such as
  liblo's ``oscsend`` send from a random port and exit, and DAWs (Reaper, Ardour) listen on
  a fixed feedback port: without a fixed address, their users never see a refusal or a meter.

A destination beyond loopback needs a token, as a bind beyond loopback does: otherwise
any local program could point the meter stream at another machine.
"""
from __future__ import annotations

import json
import math
import socket
import threading

from pythonosc import osc_message_builder

from .control import LOOPBACK_HOSTS, ControlError, check_port

METER_FLOOR_DB = -120.0
DEFAULT_REPLY_HOST = "127.0.0.1"


def parse_reply_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); a bare port means loopback."""
    host, colon, port_text = text.strip().rpartition(":")
    if not colon:
        host = DEFAULT_REPLY_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port_text.isdigit():
        raise ControlError(f"the OSC reply address must be PORT or HOST:PORT, got {text!r}")
    port = int(port_text)
    check_port(port, "the OSC reply port")
    return host, port


def check_destination(host: str, token: str | None) -> None:
    if host not in LOOPBACK_HOSTS and not token:
        raise ControlError(f"sending OSC feedback to {host[:80]} leaves this machine: give --token")


def resolve(host: str, port: int, family: int, numeric: bool) -> tuple:
    """The socket address for ``sendto`` from a socket of ``family``. ``numeric``: no name
    look-up (the receive thread must not wait on DNS), ``localhost`` aside."""
    if numeric and host == "localhost":
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    flags = socket.AI_NUMERICHOST if numeric else 0
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, flags)[0][4]
    except (OSError, UnicodeError):
        kind = "an IPv6" if family == socket.AF_INET6 else "an IPv4"
        raise ControlError(f"cannot send OSC to {host[:80]}:{port}: give {kind} address"
                           f"{'' if numeric else ' or a host name'} the server can reach") from None


class Destinations:
    """Subscribers plus the fixed reply address; safe to use from any thread."""

    def __init__(self, limit: int, reply_address: tuple | None = None):
        self.limit = limit
        self.reply_address = reply_address
        self._lock = threading.Lock()
        self._subscribers: set = set()

    def subscribe(self, address, on: bool) -> bool:
        """Add or drop ``address``; False when adding it would pass the limit."""
        with self._lock:
            if not on:
                self._subscribers.discard(address)
            elif address not in self._subscribers:
                if len(self._subscribers) >= self.limit:
                    return False
                self._subscribers.add(address)
            return True

    def feedback(self) -> list:
        """Every address that gets state changes and meters."""
        with self._lock:
            addresses = list(self._subscribers)
        if self.reply_address is not None and self.reply_address not in addresses:
            addresses.append(self.reply_address)
        return addresses

    def replies(self, sender) -> list:
        """Where an answer to ``sender`` goes: the sender and the reply address."""
        if self.reply_address is None or self.reply_address == sender:
            return [sender]
        return [sender, self.reply_address]


# -- messages ----------------------------------------------------------------------------

def typed(value) -> tuple[str, object]:
    """An OSC (type, value) for a name/value reply."""
    if value is None:
        return "s", "none"
    if isinstance(value, bool):
        return "i", int(value)
    if isinstance(value, int):
        return ("i", value) if -(2**31) <= value < 2**31 else ("f", float(value))
    if isinstance(value, float):
        return "f", value
    if isinstance(value, str):
        return "s", value
    return "s", json.dumps(value)


def build(address: str, args=()) -> bytes:
    builder = osc_message_builder.OscMessageBuilder(address)
    for kind, value in args:
        builder.add_arg(value, kind)
    return builder.build().dgram


def pairs_message(address: str, values: dict) -> bytes:
    args = []
    for name, value in values.items():
        args += [("s", str(name)), typed(value)]
    return build(address, args)


def state_message(path: str, value) -> bytes:
    """One state path as a subscriber gets it; a box is sent the way it is set."""
    if value is None:
        return build(path)
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return build(path, [("f", float(v)) for v in value])
    return build(path, [typed(value)])


def meter_messages(meters: dict) -> list[bytes]:
    """The meters as subscribers get them. A confidence not known (no prompt, silence, no
    judge) is ``/sam/confidence`` without arguments, so that a display stops showing the last
    number; a level that is not known is left out."""
    messages = []
    for key, address in (("target", "/sam/meter/target"), ("residual", "/sam/meter/residual"),
                         ("confidence", "/sam/confidence")):
        value = meters.get(key)
        if value is None or math.isnan(value):
            if key == "confidence":
                messages.append(build(address))
            continue
        value = float(value)
        if key != "confidence":
            value = max(value, METER_FLOOR_DB)  # silence is -inf dBFS; clients want a number
        messages.append(build(address, [("f", value)]))
    return messages
