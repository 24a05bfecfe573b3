"""Host packages: dpkg checks, the apt-get command users are told to run."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from ns3_uml import host
from ns3_uml.host import (
    DEFAULT_GUEST_PACKAGES,
    HostSetupError,
    apt_install_command,
    dpkg_status,
    ensure_host_packages,
    missing_packages,
)


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every test asks dpkg again instead of trusting an earlier test's answer.
    monkeypatch.setattr(host, "_verified", set())


def test_dpkg_status_on_this_machine() -> None:
    status = dpkg_status(["coreutils", "ns3-uml-no-such-package"])
    assert set(status) == {"coreutils"}
    assert status["coreutils"][0].isdigit()
    assert dpkg_status([]) == {}
    assert missing_packages(["coreutils", "ns3-uml-no-such-package", "coreutils"]) == [
        "ns3-uml-no-such-package"]


@pytest.mark.skipif(os.geteuid() != 0, reason="installs packages only as root")
def test_root_path_checks_this_machine() -> None:
    # Installs whatever guests need that is missing (normally nothing), for real.
    ensure_host_packages()
    assert not missing_packages(DEFAULT_GUEST_PACKAGES)
    for tool in ("ip", "ping", "iperf3", "sysctl", "setsid", "mount", "sleep"):
        assert subprocess.run(["sh", "-c", f"command -v {tool}"],
                              capture_output=True).returncode == 0, tool
    # Nothing left to do: a second call installs nothing.
    assert ensure_host_packages() == []


def test_not_root_raises_with_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        assert argv[0] == "dpkg-query", "only dpkg may be asked when not root"
        # iperf3 and iputils-ping are missing, the rest is installed.
        lines = [f"{p} ii  1.0" for p in argv[3:] if p not in ("iperf3", "iputils-ping")]
        return subprocess.CompletedProcess(argv, 1, "\n".join(lines) + "\n", "")

    monkeypatch.setattr(host.subprocess, "run", fake_run)
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    with pytest.raises(HostSetupError) as info:
        ensure_host_packages(purpose="test guests")
    message = str(info.value)
    assert "sudo apt-get install -y iputils-ping iperf3" in message
    assert message.startswith("test guests need these packages")
    assert [argv[0] for argv in calls] == ["dpkg-query"]


def test_apt_install_command() -> None:
    assert apt_install_command(["a", "b"]) == "apt-get install -y a b"
