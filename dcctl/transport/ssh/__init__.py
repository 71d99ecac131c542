"""SSH transport over paramiko: host keys, auth, ProxyJump, deadlines that also kill on the node.

The only package that imports paramiko, so `dcctl --help` never pays for it. One job a module:

- options.py      SshOptions, the settings a run shares
- endpoint.py     Endpoint and ~/.ssh/config resolution
- known_hosts.py  known_hosts lines: markers, patterns, hashed names, locked appends
- host_keys.py    HostKeyStore: known / changed / revoked / unknown policy
- private_key.py  reading one private key file as OpenSSH would
- keys.py         KeyRing: key files and ssh-agent keys, each loaded once
- sockets.py      TCP connect, poll waits, the banner wait
- handshake.py    key exchange, host key check and public key auth
- jump.py         shared connections to ProxyJump hosts
- session.py      one command: exec, input, output, deadline
- context.py      SshContext, what all hosts of a run share
- transport.py    SshTransport, one host's connection
"""

from __future__ import annotations

import logging

from dcctl.transport.ssh.context import SshContext
from dcctl.transport.ssh.endpoint import SSH_PORT, Endpoint
from dcctl.transport.ssh.errors import TransientConnectError
from dcctl.transport.ssh.host_keys import HostKeyStore
from dcctl.transport.ssh.keys import KeyRing
from dcctl.transport.ssh.options import SshOptions
from dcctl.transport.ssh.private_key import PASSPHRASE_ENV
from dcctl.transport.ssh.transport import SshTransport

# paramiko logs failed handshakes with tracebacks; dcctl reports each failure as one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

__all__ = [
    "PASSPHRASE_ENV",
    "SSH_PORT",
    "Endpoint",
    "HostKeyStore",
    "KeyRing",
    "SshContext",
    "SshOptions",
    "SshTransport",
    "TransientConnectError",
]
