"""SSH handshake and public key authentication on an already connected socket.

Failures are classified by what happened (exception type, transport state, our own timers),
never by the words of paramiko's messages.
"""

from __future__ import annotations

import socket
import threading

import paramiko

from dcctl.transport.base import HostError, check_cancelled
from dcctl.transport.ssh.endpoint import Endpoint
from dcctl.transport.ssh.errors import TransientConnectError, no_banner
from dcctl.transport.ssh.host_keys import HostKeyStore
from dcctl.transport.ssh.keys import KeyRing, one_offer, signing_refusal

# known_hosts names an RSA key `ssh-rsa`; paramiko negotiates it as one of these signatures.
_KEY_TYPE_ALIASES = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


class Handshaker:
    """Turns a connected socket into an authenticated paramiko Transport, or a HostError."""

    def __init__(self, host_keys: HostKeyStore, keyring: KeyRing, timeout_s: float) -> None:
        self.host_keys = host_keys
        self.keyring = keyring
        self.timeout_s = timeout_s

    def open(
        self,
        sock: socket.socket | paramiko.Channel,
        endpoint: Endpoint,
        cancel: threading.Event | None,
    ) -> paramiko.Transport:
        transport = self._new_transport(sock)
        try:
            self._negotiate(transport, endpoint, cancel)
            self.host_keys.verify(
                endpoint.known_hosts_name,
                transport.get_remote_server_key(),
                endpoint.known_hosts_files,
            )
            _authenticate(transport, endpoint, self.keyring, self.timeout_s)
        except BaseException:
            # Whatever ended the handshake (a HostError, Ctrl-C), its thread must not live on.
            transport.close()
            raise
        return transport

    def _new_transport(self, sock: socket.socket | paramiko.Channel) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.timeout_s
        transport.handshake_timeout = self.timeout_s
        transport.auth_timeout = self.timeout_s
        return transport

    def _negotiate(
        self, transport: paramiko.Transport, endpoint: Endpoint, cancel: threading.Event | None
    ) -> None:
        known_types = self.host_keys.known_types(
            endpoint.known_hosts_name, endpoint.known_hosts_files
        )
        _prefer_key_types(transport, known_types)
        try:
            # Longer than banner_timeout, so a silent peer fails on the banner with a clear
            # error instead of start_client returning early with no session.
            transport.start_client(timeout=2 * self.timeout_s + 1)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            check_cancelled(cancel)
            raise _handshake_error(transport, exc, endpoint, self.timeout_s) from exc
        check_cancelled(cancel)
        if not transport.initial_kex_done:
            raise HostError("timeout", f"{endpoint.where}: SSH key exchange did not finish in time")


def _handshake_error(
    transport: paramiko.Transport, exc: BaseException, endpoint: Endpoint, timeout_s: float
) -> HostError:
    # paramiko wraps what reading the banner raised in an SSHException: look at the cause.
    cause = exc.__context__ if isinstance(exc, paramiko.SSHException) else exc
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return no_banner(endpoint.where, timeout_s)
    # paramiko ends a key exchange that outlives handshake_timeout with a bare EOFError.
    if transport.packetizer.handshake_timed_out():
        return HostError(
            "timeout", f"{endpoint.where}: SSH key exchange did not finish within {timeout_s:g}s"
        )
    message = f"{endpoint.where}: SSH handshake failed: {str(exc) or type(exc).__name__}"
    # Closed or reset before the handshake: sshd over MaxStartups, or restarting.
    if isinstance(cause, (EOFError, ConnectionResetError)):
        return TransientConnectError(message)
    return HostError("unreachable", message)


def _prefer_key_types(transport: paramiko.Transport, known_types: list[str]) -> None:
    """Ask for a host key type we already trust, so a host with several keys is not "changed"."""
    options = transport.get_security_options()
    supported = list(options.key_types)
    wanted: list[str] = []
    for known in known_types:
        for key_type in _KEY_TYPE_ALIASES.get(known, (known,)):
            if key_type in supported and key_type not in wanted:
                wanted.append(key_type)
    if wanted:
        options.key_types = tuple(wanted + [t for t in supported if t not in wanted])


def _authenticate(
    transport: paramiko.Transport, endpoint: Endpoint, keyring: KeyRing, timeout_s: float
) -> None:
    keys, notes = keyring.keys_for(endpoint.identity_files)
    for refused, key in enumerate(keys):
        if _offer(transport, endpoint, key, timeout_s, refused):
            return
    tried = f"{len(keys)} key(s) offered" + "".join(f"; {note}" for note in notes)
    raise HostError(
        "auth",
        f"authentication failed for {endpoint.user}@{endpoint.display} ({tried}); "
        "check `user` and `key_file` in the inventory or load the key into ssh-agent",
    )


def _offer(
    transport: paramiko.Transport,
    endpoint: Endpoint,
    key: paramiko.PKey,
    timeout_s: float,
    refused: int,
) -> bool:
    """True once authenticated; False when the server refused this key (try the next)."""
    attempt = one_offer(key)
    try:
        remaining = transport.auth_publickey(endpoint.user, attempt)
    except paramiko.BadAuthenticationType as exc:
        raise HostError(
            "auth",
            f"{endpoint.display} does not accept public key authentication for "
            f"{endpoint.user} (it allows: {', '.join(exc.allowed_types) or 'nothing'})",
        ) from exc
    except paramiko.AuthenticationException as exc:
        if transport.is_active() and _server_answered(transport):
            return False
        raise _unanswered(transport, endpoint, timeout_s, refused, attempt) from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _closed_during_auth(endpoint, refused, attempt) from exc
    return transport.is_authenticated() or _partly_accepted(endpoint, remaining)


def _partly_accepted(endpoint: Endpoint, remaining: list[str]) -> bool:
    """paramiko returns, rather than raises, the methods still wanted after a partial success
    (sshd's AuthenticationMethods publickey,password): the key was right, yet not enough."""
    if not remaining or "publickey" in remaining:
        return False  # refused, or a second key is wanted (publickey,publickey): try the next
    raise HostError(
        "auth",
        f"{endpoint.display} accepted the key but requires a second factor "
        f"({'/'.join(remaining)}); dcctl supports public-key authentication only",
    )


def _server_answered(transport: paramiko.Transport) -> bool:
    """paramiko sets auth_event when the server answers, whatever the answer was; it raises
    the same AuthenticationException for a refused key and for no answer at all."""
    event = transport.auth_handler.auth_event if transport.auth_handler else None
    return event is not None and event.is_set()


def _unanswered(
    transport: paramiko.Transport,
    endpoint: Endpoint,
    timeout_s: float,
    refused: int,
    attempt: paramiko.PKey,
) -> HostError:
    if not transport.is_active():
        return _closed_during_auth(endpoint, refused, attempt)
    # Trying the next key would wait as long again, and "auth" would blame the keys.
    return HostError(
        "timeout",
        f"{endpoint.display}: no answer to authentication in {timeout_s:g} s (the server "
        "is stuck checking the key: a hung AuthorizedKeysCommand or directory lookup)",
    )


def _closed_during_auth(endpoint: Endpoint, refused: int, attempt: paramiko.PKey) -> HostError:
    # An agent that would not sign raises inside paramiko's thread, which ends the transport:
    # the agent is to blame, not the network nor the server's MaxAuthTries.
    refusal = signing_refusal(attempt)
    if refusal is not None:
        return HostError("auth", f"{endpoint.display}: {refusal}")
    if refused:
        # sshd hangs up after MaxAuthTries (6 by default) refused keys.
        return HostError(
            "auth",
            f"{endpoint.display} closed the connection after {refused} key(s) were refused "
            f"for {endpoint.user} (too many keys offered? sshd's MaxAuthTries)",
        )
    return HostError("unreachable", f"connection to {endpoint.display} lost during authentication")
