# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the docker_host role: daemon.json as data, the bind address, what listens on the port."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.module_utils import docker_daemon_config as ddc


def docker_host_preflight(options, address, host_addresses, extra_keys=None):
    """Every problem with a host's settings, each naming the variable: an empty list when there is none."""
    problems = []
    why = ddc.bind_problem(address, host_addresses)
    if why:
        problems.append("missing overlay peer: docker_host_bind_address must be one literal IP address this host "
                        "has (the daemon listens there and nowhere else): %s" % why)
    problems.extend(ddc.option_problems(options, extra_keys or ()))
    return problems


def docker_host_daemon_json(options, address, port=2376):
    """daemon.json as data: the operator's options with the listeners and their TLS forced."""
    try:
        return ddc.daemon_config(options, address, port)
    except ValueError as exc:
        raise AnsibleFilterError("docker_host_daemon_json: %s" % exc)


def docker_host_endpoint(address, port=2376):
    """tcp://address:port (IPv6 in brackets)."""
    try:
        return ddc.endpoint(address, port)
    except ValueError as exc:
        raise AnsibleFilterError("docker_host_endpoint: %s" % exc)


def docker_host_listener_problems(ss_output, address, port=2376):
    """What is wrong with the listeners on the port seen in ``ss -Hltn`` output (empty list: one, on address)."""
    return ddc.listener_problems(ddc.listeners(ss_output, port), address, int(port))


class FilterModule:
    def filters(self):
        return dict(docker_host_preflight=docker_host_preflight, docker_host_daemon_json=docker_host_daemon_json,
                    docker_host_endpoint=docker_host_endpoint,
                    docker_host_listener_problems=docker_host_listener_problems)
