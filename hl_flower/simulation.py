"""Flower's Simulation Engine set up for HL: one warm actor, quiet logs.

HL trains one node at a time, so the default gives the one virtual client
actor every CPU: the actor (and its TensorFlow model and traced training
step) stays warm across steps and nodes, and a step's epoch may use all
cores. Several actors would only sit idle and each pay its own start-up and
tracing. ``ray_address`` runs on an existing Ray cluster instead.
"""

from __future__ import annotations

import importlib
import os

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from .prompt_delivery import patch_delivery
from .quiet import keep_ray_errors_off_the_terminal, quiet_flower_logger


def backend_config(cpus_per_client: float = 0, ray_address: str = "",
                   verbose: bool = False) -> dict:
    """Ray settings: all local CPUs for one client actor unless told otherwise."""
    cpus = os.cpu_count() or 1
    init_args: dict = {"log_to_driver": verbose,
                       "logging_level": "INFO" if verbose else "ERROR"}
    if ray_address:  # the cluster decides its CPUs; connect, do not start one
        init_args["address"] = ray_address
    else:  # "local": never join a cluster that `ray start` left on this machine
        init_args |= {"address": "local", "num_cpus": cpus, "include_dashboard": False}
    return {"client_resources": {"num_cpus": cpus_per_client or cpus, "num_gpus": 0.0},
            "init_args": init_args}


DEFAULT_CLIENT_APP = "hl_flower.client_app:app"


def load_client_app(reference: str) -> ClientApp:
    """The ClientApp named ``<module>:<attribute>`` (as in Flower's
    ``pyproject.toml``), e.g. ``hl_flower.drills:app``.

    Raises ValueError, naming ``--client-app`` and the fix, if the reference
    is malformed, the module does not import or the attribute is no ClientApp.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute.isidentifier():
        raise ValueError(f"--client-app {reference!r} is not <module>:<attribute>; "
                         f"for example {DEFAULT_CLIENT_APP}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--client-app {reference}: cannot import {module_name} "
                         f"({err}); give a module on the Python path") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, ClientApp):
        raise ValueError(f"--client-app {reference}: {module_name}.{attribute} is "
                         f"{'missing' if app is None else type(app).__name__}, not a "
                         "flwr ClientApp")
    return app


def simulate(server_app: ServerApp, num_nodes: int, client_app: ClientApp | None = None,
             cpus_per_client: float = 0, ray_address: str = "",
             verbose: bool = False) -> None:
    """Run ``server_app`` with one virtual SuperNode per HL node."""
    from flwr.simulation import run_simulation

    if client_app is None:
        from .client_app import app as client_app
    patch_delivery()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    quiet_flower_logger(verbose)  # after the imports: Ray resets warning filters
    if not verbose:
        keep_ray_errors_off_the_terminal()
    run_simulation(server_app=server_app, client_app=client_app,
                   num_supernodes=num_nodes,
                   backend_config=backend_config(cpus_per_client, ray_address, verbose),
                   verbose_logging=verbose)
