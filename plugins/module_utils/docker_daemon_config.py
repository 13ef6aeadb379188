# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""daemon.json as data for a managed Docker host: the keys the collection owns, the keys Docker 20.10
knows, the one address the daemon may listen on, and what ``ss`` says it listens on.

Pure functions (no Ansible, no I/O) so the docker_host role's filters and the tests share them.
"""

from __future__ import annotations

import ipaddress

# Paths of the daemon's TLS material on the host.
TLS_PATHS = dict(tlscacert="/etc/docker/ca.pem", tlscert="/etc/docker/server-cert.pem",
                 tlskey="/etc/docker/server-key.pem")
# The local socket stays systemd's (docker.socket, which the stock docker.service requires): with
# unix:///var/run/docker.sock dockerd unlinks systemd's socket file and binds its own, and once the
# collection's drop-in is gone (decommission) the stock `dockerd -H fd://` is handed a socket whose path
# no longer exists -- the daemon runs, but nothing can reach it locally. Measured on Debian's docker.io.
LOCAL_SOCKET = "fd://"
# Keys the collection writes and an operator cannot set: the listeners and their TLS.
OWNED_KEYS = ("hosts", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey")

# Every key dockerd 20.10 (Debian's docker.io 20.10.24, Linux) accepts in daemon.json; it refuses to
# start on any other ("the following directives don't match any configuration option"). Checked against
# that dockerd: a daemon.json of these keys and one unknown key names only the unknown one. (It also lets
# through the singular flag names -- label, log-opt, ... -- which it then ignores: they are left out.) Engine 23+
# validates with `dockerd --validate`; 20.10 has no such flag, so the collection checks the keys itself.
# Newer engines know more: docker_host_daemon_extra_keys adds to this list.
DOCKER_20_10_KEYS = frozenset("""
    allow-nondistributable-artifacts api-cors-header authorization-plugins bip bridge builder
    cgroup-parent cluster-advertise cluster-store cluster-store-opts containerd containerd-namespace
    containerd-plugins-namespace cpu-rt-period cri-containerd cpu-rt-runtime data-root debug default-address-pools
    default-cgroupns-mode default-gateway default-gateway-v6 default-ipc-mode default-runtime
    default-shm-size default-ulimits dns dns-opts dns-search exec-opts exec-root experimental features
    fixed-cidr fixed-cidr-v6 group host-gateway-ip hosts icc init init-path insecure-registries ip ip-forward ip-masq
    ip6tables iptables ipv6 labels live-restore log-driver log-level log-opts
    max-concurrent-downloads max-concurrent-uploads max-download-attempts metrics-addr mtu
    network-control-plane-mtu no-new-privileges node-generic-resources oom-score-adjust pidfile
    raw-logs registry-mirrors rootless runtimes seccomp-profile selinux-enabled shutdown-timeout
    storage-driver storage-opts swarm-default-advertise-addr tls tlscacert tlscert tlskey tlsverify
    userland-proxy userland-proxy-path userns-remap
""".split())


def literal_address(value):
    """The address as ipaddress object when ``value`` is one literal unicast IP, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def bind_problem(address, host_addresses):
    """Why ``address`` cannot be the one address dockerd listens on ('' when it can).

    ``host_addresses``: every address the host has (Ansible's all_ipv4_addresses + all_ipv6_addresses).
    """
    if address is None or (isinstance(address, str) and not address.strip()):
        return "no address given"
    ip = literal_address(address)
    if ip is None:
        return "%r is not one literal IP address (a host name or a list is not accepted)" % (address,)
    if ip.is_unspecified:
        return "%s is the wildcard address: the daemon would listen on every interface" % ip
    if ip.is_multicast:
        return "%s is a multicast address" % ip
    if ip.is_loopback:
        return "%s is a loopback address: nothing outside the host could reach the daemon" % ip
    have = set()
    for a in host_addresses or ():
        parsed = literal_address(str(a).split("%", maxsplit=1)[0])
        if parsed is not None:
            have.add(parsed)
    if ip not in have:
        return "the host has no address %s (it has: %s)" % (ip, ", ".join(sorted(str(a) for a in have)) or "none")
    if str(ip) != address.strip():
        return "write %r as %s (its canonical form, as the host reports it)" % (address, ip)
    return ""


def endpoint(address, port=2376):
    """tcp://address:port, IPv6 in brackets."""
    ip = ipaddress.ip_address(address)
    return "tcp://%s:%d" % ("[%s]" % ip if ip.version == 6 else ip, int(port))


def option_problems(options, extra_keys=()):
    """What is wrong with the operator's daemon options (an empty list when nothing is)."""
    if options is None:
        return []
    if not isinstance(options, dict):
        return ["docker_host_daemon_options must be a mapping of daemon.json keys, not %s" % type(options).__name__]
    problems = []
    owned = sorted(k for k in options if k in OWNED_KEYS)
    if owned:
        problems.append("docker_host_daemon_options sets %s: the collection owns the listeners and their TLS "
                        "(%s) and cannot let them be overridden" % (", ".join(owned), ", ".join(OWNED_KEYS)))
    known = DOCKER_20_10_KEYS | set(extra_keys or ())
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        problems.append("docker_host_daemon_options has keys dockerd does not know: %s (dockerd would refuse to "
                        "start; for a newer engine's keys add them to docker_host_daemon_extra_keys)"
                        % ", ".join(unknown))
    return problems


def daemon_config(options, address, port=2376, tls_paths=None):
    """daemon.json as data: the operator's options with the owned keys forced.

    Owned keys in ``options`` are dropped here; refusing them is option_problems' job (the role stops
    before it renders).
    """
    config = {k: v for k, v in (options or {}).items() if k not in OWNED_KEYS}
    config["hosts"] = [LOCAL_SOCKET, endpoint(address, port)]
    config["tls"] = True
    config["tlsverify"] = True
    config.update(tls_paths or TLS_PATHS)
    return dict(sorted(config.items()))


def without_owned(config):
    """A daemon.json without the keys the collection owns (what decommission leaves)."""
    return {k: v for k, v in (config or {}).items() if k not in OWNED_KEYS}


def listeners(ss_output, port=2376):
    """Local addresses listening on ``port`` in ``ss -Hltn`` output, as 'address' strings (IPv6 bare)."""
    found = []
    for line in (ss_output or "").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local = fields[3]
        host, sep, p = local.rpartition(":")
        if not sep or p != str(port):
            continue
        host = host.strip("[]").split("%")[0]
        found.append(host)
    return found


def listener_problems(found, address, port=2376):
    """Problems with what listens on ``port``: exactly one listener, on ``address``."""
    want = literal_address(address)
    problems = []
    for host in found:
        ip = literal_address(host if host != "*" else "0.0.0.0")
        if ip is not None and ip.is_unspecified:
            problems.append("something listens on every address (%s) on port %d" % (
                "[%s]" % host if ip.version == 6 else host, port))
        elif ip != want:
            problems.append("something listens on %s port %d, not only on %s" % (host, port, address))
    if not found:
        problems.append("nothing listens on %s port %d" % (address, port))
    elif len(found) > 1 and not problems:
        problems.append("%d listeners on port %d, expected one" % (len(found), port))
    return problems
