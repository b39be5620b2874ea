"""The Kubernetes manifests (deploy/kubernetes/), checked against the image, compose.yaml and the code
without a cluster (none exists here).

`kubernetes-validate --strict` checks each manifest against the Kubernetes schemas in .ci/run;
these tests check what a schema cannot: that the two Deployments run commands `bookstore` accepts,
that each Service and policy selects the pods it is meant for and no others, that the admin panel
is as confined and configured as the API, and that kustomization.yaml applies every manifest.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from bookstore.admin.app import check_admin_settings
from bookstore.admin.login_limits import LOGIN_PATH
from bookstore.settings import load_settings
from tests.deploy.test_compose import SETTING_DEFAULTS, load_compose, stack_environment
from tests.deploy.test_image import option, read_image, read_stages

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# Applied on their own, not by `kubectl apply -k` (deploy/README.md, "Deploy"): the Secret is
# created from the command line, and the Job runs to completion before every rollout.
APPLIED_ON_THEIR_OWN = {"secret.example.yaml", "migrate-job.yaml"}


def manifest(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KUBERNETES / name).read_text())
    return document


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = manifest(name)["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    (only,) = pod_spec(name)["containers"]
    assert isinstance(only, dict)
    return only


def selects(selector: dict[str, str], deployment: str) -> bool:
    labels = manifest(deployment)["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


def container_port(owner: dict[str, Any], port_name: str) -> int:
    [port] = [port["containerPort"] for port in owner["ports"] if port["name"] == port_name]
    assert isinstance(port, int)
    return port


# --- what runs ------------------------------------------------------------------------------------


def test_kustomization_applies_every_manifest_but_the_secret_and_the_job() -> None:
    listed = manifest("kustomization.yaml")["resources"]
    present = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == present - APPLIED_ON_THEIR_OWN
    assert len(listed) == len(set(listed))


def test_api_runs_the_image_command_without_the_admin_panel() -> None:
    """`serve` would otherwise start the admin beside the API in every pod."""
    api = container("deployment.yaml")
    assert "command" not in api  # the image's ENTRYPOINT
    assert api["args"] == read_stages()[-1].exec_form("CMD")
    assert option(api["args"], "--admin-port") == "0"


def test_admin_runs_the_command_of_the_compose_admin_service() -> None:
    """One command line for the admin in both deployments; the compose tests run it."""
    admin = container("admin-deployment.yaml")
    assert "command" not in admin
    assert admin["args"] == load_compose(stack_environment())["services"]["admin"]["command"]
    assert admin["image"] == container("deployment.yaml")["image"]


def test_admin_runs_exactly_one_pod_at_a_time() -> None:
    """Piccolo's login limiter counts in the process's memory; Recreate never runs a second pod,
    nor a second pool of PostgreSQL connections, during a rollout."""
    spec = manifest("admin-deployment.yaml")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    autoscaled = manifest("hpa.yaml")["spec"]["scaleTargetRef"]["name"]
    assert autoscaled == manifest("deployment.yaml")["metadata"]["name"]
    assert autoscaled != manifest("admin-deployment.yaml")["metadata"]["name"]


def test_admin_container_listens_on_the_port_its_command_names() -> None:
    admin = container("admin-deployment.yaml")
    assert container_port(admin, "http") == int(option(admin["args"], "--port"))
    assert container_port(admin, "http") in read_image().ports


def test_admin_probes_ask_a_page_piccolos_login_limiter_does_not_count() -> None:
    """The kubelet probes from one address, more than 20 times in 5 minutes: Piccolo would answer
    its login path with 429 and the pod would be restarted. The compose health check asks the same page."""
    admin = container("admin-deployment.yaml")
    compose_check = load_compose(stack_environment())["services"]["admin"]["healthcheck"]["test"][-1]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = admin[kind]["httpGet"]
        assert not probe["path"].startswith(LOGIN_PATH), kind
        assert f":{container_port(admin, probe['port'])}{probe['path']}'" in compose_check, kind


# --- what it is given -----------------------------------------------------------------------------


def test_admin_reads_the_configuration_the_api_reads() -> None:
    assert container("admin-deployment.yaml")["envFrom"] == container("deployment.yaml")["envFrom"]


def test_configmap_and_secret_make_a_valid_production_configuration_for_the_admin() -> None:
    """`bookstore admin` refuses to start in production without BOOKSTORE_ADMIN_ALLOWED_HOSTS."""
    secret = {**manifest("secret.example.yaml")["stringData"], "BOOKSTORE_SECRET_KEY": secrets.token_hex(32)}
    settings = load_settings({**manifest("configmap.yaml")["data"], **secret})
    assert settings.is_production
    assert settings.admin_allowed_hosts
    check_admin_settings(settings)


@pytest.mark.parametrize("key", ["securityContext", "automountServiceAccountToken", "enableServiceLinks"])
def test_admin_pod_is_as_confined_as_the_api_pod(key: str) -> None:
    assert pod_spec("admin-deployment.yaml")[key] == pod_spec("deployment.yaml")[key]


def test_admin_container_is_as_confined_as_the_api_container() -> None:
    admin = container("admin-deployment.yaml")
    assert admin["securityContext"] == container("deployment.yaml")["securityContext"]
    assert admin["securityContext"]["readOnlyRootFilesystem"] is True
    # A writable /tmp, in memory, as the API has; and no covers volume.
    assert [mount["mountPath"] for mount in admin["volumeMounts"]] == ["/tmp"]  # noqa: S108 - a mount path
    [tmp] = pod_spec("admin-deployment.yaml")["volumes"]
    assert tmp["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("deployment", ["deployment.yaml", "admin-deployment.yaml"])
def test_every_deployment_requests_and_limits_cpu_and_memory(deployment: str) -> None:
    resources = container(deployment)["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_admin_grace_period_outlasts_the_prestop_sleep_and_the_shutdown_timeout() -> None:
    """Granian, run by `bookstore admin` itself, kills a worker still busy after the shutdown timeout."""
    spec = pod_spec("admin-deployment.yaml")
    pre_stop = container("admin-deployment.yaml")["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown_timeout = int(
        manifest("configmap.yaml")["data"].get(
            "BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS", SETTING_DEFAULTS["shutdown_timeout_seconds"]
        )
    )
    assert spec["terminationGracePeriodSeconds"] > pre_stop + shutdown_timeout


# --- who selects whom -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "deployment", "other"),
    [
        ("service.yaml", "deployment.yaml", "admin-deployment.yaml"),
        ("admin-service.yaml", "admin-deployment.yaml", "deployment.yaml"),
    ],
)
def test_each_service_sends_to_its_own_pods_only(service: str, deployment: str, other: str) -> None:
    spec = manifest(service)["spec"]
    assert spec["type"] == "ClusterIP"
    assert selects(spec["selector"], deployment)
    assert not selects(spec["selector"], other)
    [port] = spec["ports"]
    container_port(container(deployment), port["targetPort"])  # names a port of the container


def test_admin_service_port_is_the_admin_port() -> None:
    [port] = manifest("admin-service.yaml")["spec"]["ports"]
    assert port["port"] == container_port(container("admin-deployment.yaml"), port["targetPort"])


def test_api_disruption_budget_and_spread_leave_the_admin_pod_alone() -> None:
    """A budget of minAvailable 1 over the single admin pod would block every node drain."""
    budget = manifest("pdb.yaml")["spec"]["selector"]["matchLabels"]
    assert selects(budget, "deployment.yaml")
    assert not selects(budget, "admin-deployment.yaml")
    [spread] = pod_spec("deployment.yaml")["topologySpreadConstraints"]
    assert not selects(spread["labelSelector"]["matchLabels"], "admin-deployment.yaml")
