# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's engines (plugins/module_utils/fleet_hosts.py): several Docker engines in one call."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  engines:
    description:
      - Work on several Docker engines at once, one entry per engine, as M(fenrir.fleet.fleet_placement) returns them
        (its RV(fenrir.fleet.fleet_placement#module:engines)). The entry named C(local), or one without
        O(engines[].docker_host), is the engine of this module's own connection options; the others are managed
        Docker hosts reached over mutual TLS with the controller's client certificate.
      - Every engine is worked on at the same time. An engine that cannot be reached, or refuses, fails only its own
        nodes; the others go on.
      - Unset, the module works on its one engine only, as it always did.
    type: list
    elements: dict
    suboptions:
      name:
        description: The engine's name (a Docker host of the fleet registry, or C(local)).
        type: str
        required: true
      docker_host:
        description: The host's Docker endpoint, C(tcp://ADDRESS:2376). Unset for the local engine.
        type: str
      ca_path:
        description: The fleet CA certificate (verifies the host's certificate).
        type: path
      client_cert:
        description: The controller's client certificate.
        type: path
      client_key:
        description: Key of O(engines[].client_cert).
        type: path
      tls_hostname:
        description: The name the host's certificate was issued to, when it is not the endpoint's address.
        type: str
      timeout:
        description: Seconds for each API call to the host. Default O(timeout).
        type: int
      address:
        description: The host's address (where published node ports and host-network nodes answer).
        type: str
      subnet:
        description: The host's C(fenrir-fleet) subnet, allocated by the registry.
        type: str
      gateway:
        description: The gateway of O(engines[].subnet).
        type: str
      status:
        description: The host's status in the registry.
        type: str
      images:
        description: The images its nodes need.
        type: list
        elements: str
      nodes:
        description: The labels of its nodes.
        type: list
        elements: str
      problem:
        description: Why the host cannot be used (no endpoint, no client certificate); its nodes fail with it.
        type: str
  failed_engines:
    description:
      - Engines that failed an earlier step of the run, name to reason, as the C(failed_engines) result of
        M(fenrir.fleet.knarr_image) or M(fenrir.fleet.fleet_network). They are not dialled; their nodes fail with that reason.
    type: dict
    default: {}
"""
