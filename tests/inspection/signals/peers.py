"""Real peers on loopback for the line-signal tests and ``bench/signals.py``: a TCP proxy that can be cut, a
Mosquitto broker of our own and a check for the shared one. The simulated PLC (its pymodbus / asyncua server
and its half of the handshake) is ``drills.plc``. Nothing here is a mock: the station talks Modbus TCP, OPC UA
and MQTT to real protocol stacks."""

from __future__ import annotations

import getpass
import socket
import subprocess
from pathlib import Path

# The socket helpers live in the installed ``drills`` package (the line simulator and ``qcline demo --line``
# run the peers from a station install); re-exported here for the tests.
from drills.peers import free_port, wait_until
from drills.peers import port_open as _port_open

__all__ = ["BROKER_HOST", "BROKER_PORT", "Mosquitto", "broker_reachable", "free_port",
           "mosquitto_binary", "self_signed_tls", "wait_until"]

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 1883


def broker_reachable(host: str = BROKER_HOST, port: int = BROKER_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    import shutil

    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


class Mosquitto:
    """A broker of our own on a free loopback port (for TLS and password tests, or where no broker runs)."""

    def __init__(self, folder: Path, *, tls: tuple[Path, Path, Path] | None = None,
                 password_file: Path | None = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (Debian: apt install mosquitto)")
        self.port = free_port()
        # as root, mosquitto would switch to its own user, who cannot read the test's private temp folder
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr",
                 f"user {getpass.getuser()}"]
        if password_file is not None:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2"]
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        if not wait_until(lambda: _port_open(self.port) or self._proc.poll() is not None, 10) or self._proc.poll():
            err = self._proc.stderr.read().decode() if self._proc.stderr else ""
            raise RuntimeError(f"mosquitto did not start: {err}")

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


def self_signed_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 made with the openssl command: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=qcline test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key
