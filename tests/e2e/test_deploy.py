"""Packaging and Kubernetes (F-103, F-104, F-108, NF-007): the Helm chart and the image.

- The chart (``deploy/helm/rspp``) is rendered by real Helm (its Go SDK as a library,
  ``helm-python-sdk``; no helm binary) with default and alternative values, linted, and
  every object is validated against the Kubernetes schemas (``kubernetes-validate``,
  strict); the ServiceMonitor (a Prometheus Operator CRD, not in those schemas) is
  checked field by field.
- The rendered containers are run as they are: the migration Job's command, the
  control plane's and the runtime's args with their env (secrets filled with test
  values, the control plane's Service name standing for 127.0.0.1), and the probes,
  ports and metrics the chart names are requested from the real processes.
- No container engine runs here: the wheel the Dockerfile installs is built from the
  source and installed (``--no-deps``) into a fresh virtual environment whose
  dependencies come from this one; the image's entry command (ENTRYPOINT + CMD + ENV)
  is then run from that environment and answers its HEALTHCHECK path.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rspp.controlplane._server import free_port
from rspp.testing import Pki

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "rspp"
K8S = "1.30.0"
SECRETS = {"url": "", "admin-key": "deploy-test-admin-key", "token-secret": "t" * 40}

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values or {}, name="rspp", namespace="voice", is_install=True)
    objs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            objs += [d for d in yaml.safe_load_all(text) if d]
    return objs


def by_kind(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return c


def env_of(c: dict[str, Any], *, pod_ip: str = "127.0.0.1", db: str = "") -> dict[str, str]:
    """The container's environment as the kubelet would set it (secrets: test values)."""
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)),
                                    str(e["value"]))
            continue
        src = e["valueFrom"]
        if "fieldRef" in src:
            env[e["name"]] = {"metadata.name": "rspp-runtime-0", "status.podIP": pod_ip}[
                src["fieldRef"]["fieldPath"]]
        else:
            key = src["secretKeyRef"]["key"]
            env[e["name"]] = db if key == "url" else SECRETS[key]
    return env


def test_chart_renders_lints_and_every_object_validates() -> None:
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == [] and not [m for m in report["messages"]
                                           if m["severity"] >= 2], report
    variants: list[dict[str, Any]] = [
        {},
        {"runtime": {"autoscaling": {"enabled": False}, "apiKey": {"name": "ops", "key": "k"}},
         "serviceMonitor": {"enabled": False}, "controlPlane": {"migration": {"enabled": False}}},
        {"runtime": {"autoscaling": {"sessions": {"enabled": False}}}},
        {"tls": {"enabled": True}},
    ]
    for values in variants:
        objs = render(values)
        for obj in objs:
            if obj["kind"] == "ServiceMonitor":
                continue
            kubernetes_validate.validate(obj, K8S, strict=True)
    objs = render()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["Deployment", "Deployment", "Service", "Service", "Job",
                            "PodDisruptionBudget", "HorizontalPodAutoscaler",
                            "ServiceMonitor"])
    rt = by_kind(objs, "Deployment", "rspp-runtime")
    spec = rt["spec"]["template"]["spec"]
    c = container(rt)
    env = env_of(c)
    # preStop + the drain deadline the process is given + margin
    prestop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] >= prestop + float(env["RSPP_DRAIN_DEADLINE"])
    assert env["RSPP_DRAIN_MODE"] == "migrate" and rt["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 1, "maxUnavailable": 0}
    assert spec["securityContext"]["runAsNonRoot"] is True
    cp_svc = by_kind(objs, "Service", "rspp-controlplane")
    assert env["RSPP_CONTROL_PLANE"] == \
        f"http://{cp_svc['metadata']['name']}:{cp_svc['spec']['ports'][0]['port']}"
    pdb = by_kind(objs, "PodDisruptionBudget")
    hpa = by_kind(objs, "HorizontalPodAutoscaler")
    labels = rt["spec"]["template"]["metadata"]["labels"]
    for sel in (pdb["spec"]["selector"]["matchLabels"], rt["spec"]["selector"]["matchLabels"],
                by_kind(objs, "Service", "rspp-runtime")["spec"]["selector"]):
        assert sel.items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rspp-runtime"
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "rspp_sessions_live"
    sm = by_kind(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    job = by_kind(objs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert container(job)["args"] == ["cp", "migrate"]


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
        self.log = cwd / f"proc-{len(list(cwd.glob('proc-*.log')))}.log"
        with self.log.open("wb") as out:
            self.p = subprocess.Popen(args, env={**base, **env}, cwd=cwd, stdout=out,
                                      stderr=subprocess.STDOUT)

    def get(self, url: str, timeout_s: float = 90) -> httpx.Response:
        """GET once the process answers (its startup is the wait); fail if it exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return httpx.get(url, timeout=5)
            except httpx.HTTPError:
                assert self.p.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    def stop(self, timeout_s: float = 60) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=timeout_s)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.p.poll() is None:
            p.p.kill()
            p.p.wait(timeout=30)


def _probe_url(c: dict[str, Any], probe: str, port: int) -> str:
    get = c[probe]["httpGet"]
    assert get["port"] == "http" and c["ports"][0]["name"] == "http"
    return f"http://127.0.0.1:{port}{get['path']}"


def test_chart_containers_run_as_rendered_and_answer_their_probes(
    tmp_path: Path, procs: list[Proc]
) -> None:
    cp_port, rt_port = free_port(), free_port()
    objs = render({"controlPlane": {"port": cp_port}, "runtime": {"port": rt_port}})
    rspp = str(Path(sys.executable).parent / "rspp")
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    job = container(by_kind(objs, "Job"))
    migrated = subprocess.run([rspp, *job["args"]], env={**os.environ, **env_of(job, db=db)},
                              capture_output=True, text=True, timeout=120, check=False)
    assert migrated.returncode == 0 and "up to date" in migrated.stdout, migrated.stderr
    cp_c = container(by_kind(objs, "Deployment", "rspp-controlplane"))
    cp = Proc([rspp, *cp_c["args"]], env_of(cp_c, db=db), tmp_path)
    procs.append(cp)
    assert cp_c["ports"][0]["containerPort"] == cp_port
    for probe in ("livenessProbe", "readinessProbe"):
        assert cp.get(_probe_url(cp_c, probe, cp_port)).status_code == 200
    rt_c = container(by_kind(objs, "Deployment", "rspp-runtime"))
    env = env_of(rt_c)
    # the control plane's Service name resolves to its pod in a cluster; here to loopback
    env["RSPP_CONTROL_PLANE"] = re.sub(r"//[^:/]+", "//127.0.0.1", env["RSPP_CONTROL_PLANE"])
    rt = Proc([rspp, *rt_c["args"]], env, tmp_path)
    procs.append(rt)
    assert rt_c["ports"][0]["containerPort"] == rt_port
    assert rt.get(_probe_url(rt_c, "livenessProbe", rt_port)).status_code == 200
    assert rt.get(_probe_url(rt_c, "startupProbe", rt_port)).status_code == 200
    ready = _probe_url(rt_c, "readinessProbe", rt_port)
    deadline = time.monotonic() + 60
    while rt.get(ready).status_code != 200:  # registered with the control plane
        assert time.monotonic() < deadline, rt.log.read_text()
        time.sleep(0.1)
    sm = by_kind(objs, "ServiceMonitor")["spec"]["endpoints"][0]
    scrape = rt.get(f"http://127.0.0.1:{rt_port}{sm['path']}").text
    hpa_metric = next(m for m in by_kind(objs, "HorizontalPodAutoscaler")["spec"]["metrics"]
                      if m["type"] == "Pods")["pods"]["metric"]["name"]
    assert re.search(rf"^{hpa_metric} 0\.0$", scrape, re.M), scrape[:500]
    runtimes = httpx.get(f"http://127.0.0.1:{cp_port}/v1/runtimes",
                         headers={"Authorization": f"Bearer {SECRETS['admin-key']}"}).json()
    assert [(r["runtime_id"], r["endpoint"]) for r in runtimes["runtimes"]] == [
        ("rspp-runtime-0", f"ws://127.0.0.1:{rt_port}")]  # POD_NAME, ws://POD_IP:PORT
    grace = by_kind(objs, "Deployment", "rspp-runtime")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    rt.p.send_signal(signal.SIGTERM)
    # drains at once: /readyz answers 503 while it drains; with no session to drain it may
    # already have closed its listener (then it must exit cleanly within the grace period)
    try:
        status: int | None = httpx.get(ready, timeout=5).status_code
    except httpx.HTTPError:
        status = None
    assert status == 503 or (status is None and rt.p.wait(timeout=grace) == 0), (
        status, rt.log.read_text())
    assert rt.stop(timeout_s=grace) == 0, rt.log.read_text()
    assert cp.stop() == 0, cp.log.read_text()


def test_chart_mtls_mode_runs_as_rendered_with_mounted_certificates(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """F-120: ``tls.enabled`` mounts each side's secret (tls.crt, tls.key, ca.crt, the
    cert-manager layout): the control plane serves HTTPS requiring client certificates,
    the runtime calls it over https with its own; run as rendered (the mount path standing
    for a directory of certificates made here)."""
    cp_port, rt_port = free_port(), free_port()
    objs = render({"tls": {"enabled": True}, "controlPlane": {"port": cp_port},
                   "runtime": {"port": rt_port}})
    mount = "/etc/rspp/tls"
    pki_root = Pki(tmp_path / "pki")
    ca = pki_root.ca("cluster-ca")
    dirs = {"controlplane": tmp_path / "cp-tls", "runtime": tmp_path / "rt-tls"}
    for name, directory in dirs.items():
        pki = Pki(directory)
        pki.issue(ca, name, server=name == "controlplane", cert_file="tls.crt",
                  key_file="tls.key")
        pki.write("ca.crt", ca.pem)
    rspp = str(Path(sys.executable).parent / "rspp")
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    job = container(by_kind(objs, "Job"))
    assert subprocess.run([rspp, *job["args"]], env={**os.environ, **env_of(job, db=db)},
                          capture_output=True, timeout=120, check=False).returncode == 0

    def mounted(component: str, **kw: str) -> tuple[dict[str, Any], dict[str, str]]:
        dep = by_kind(objs, "Deployment", f"rspp-{component}")
        c = container(dep)
        vol = dep["spec"]["template"]["spec"]["volumes"][0]
        assert c["volumeMounts"] == [{"name": vol["name"], "mountPath": mount,
                                      "readOnly": True}]
        assert vol["secret"]["secretName"] == f"rspp-{component}-tls"
        env = {k: v.replace(mount, str(dirs[component])) for k, v in env_of(c, **kw).items()}
        return c, env

    cp_c, cp_env = mounted("controlplane", db=db)
    assert cp_c["livenessProbe"]["tcpSocket"] == {"port": "http"}  # kubelet has no cert
    cp = Proc([rspp, *cp_c["args"]], cp_env, tmp_path)
    procs.append(cp)
    deadline = time.monotonic() + 90
    while True:  # the tcpSocket probe: the listener accepts
        try:
            socket.create_connection(("127.0.0.1", cp_port), timeout=5).close()
            break
        except OSError:
            assert cp.p.poll() is None and time.monotonic() < deadline, cp.log.read_text()
            time.sleep(0.1)
    rt_c, rt_env = mounted("runtime")
    assert rt_env["RSPP_CONTROL_PLANE"].startswith("https://")
    rt_env["RSPP_CONTROL_PLANE"] = re.sub(r"//[^:/]+", "//127.0.0.1",
                                          rt_env["RSPP_CONTROL_PLANE"])
    caller = ssl.create_default_context(cafile=str(dirs["runtime"] / "ca.crt"))
    with pytest.raises(httpx.TransportError):  # no client certificate: refused
        httpx.get(f"https://127.0.0.1:{cp_port}/healthz", verify=caller, timeout=30)
    caller.load_cert_chain(str(dirs["runtime"] / "tls.crt"), str(dirs["runtime"] / "tls.key"))
    rt = Proc([rspp, *rt_c["args"]], rt_env, tmp_path)
    procs.append(rt)
    ready = _probe_url(rt_c, "readinessProbe", rt_port)
    deadline = time.monotonic() + 90
    while rt.get(ready).status_code != 200:  # registered with the control plane over mTLS
        assert rt.p.poll() is None and time.monotonic() < deadline, rt.log.read_text()
        time.sleep(0.1)
    runtimes = httpx.get(f"https://127.0.0.1:{cp_port}/v1/runtimes", verify=caller,
                         headers={"Authorization": f"Bearer {SECRETS['admin-key']}"}).json()
    assert [r["runtime_id"] for r in runtimes["runtimes"]] == ["rspp-runtime-0"]
    assert rt.stop() == 0, rt.log.read_text()
    assert cp.stop() == 0, cp.log.read_text()


def _dockerfile() -> dict[str, Any]:
    text = (REPO / "Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instr = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    out: dict[str, Any] = {"FROM": [], "ENV": {}}
    for ln in instr:
        word, _, rest = ln.partition(" ")
        if word == "FROM":
            out["FROM"].append(rest)
        elif word == "ENV":
            out["ENV"].update(dict(kv.split("=", 1) for kv in shlex.split(rest)))
        elif word in ("ENTRYPOINT", "CMD", "USER", "EXPOSE"):
            out[word] = yaml.safe_load(rest) if rest.startswith("[") else rest
        elif word == "HEALTHCHECK":
            out[word] = yaml.safe_load(rest.split(" CMD ", 1)[1])
    return out


def test_image_entry_command_runs_from_the_built_wheel_in_a_fresh_venv(
    tmp_path: Path, procs: list[Proc]
) -> None:
    df = _dockerfile()
    assert len(df["FROM"]) >= 2 and " AS " in df["FROM"][0]  # multi-stage
    uid = str(df["USER"]).split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # non-root
    assert df["ENTRYPOINT"] == ["rspp"] and df["CMD"][0] == "serve"
    assert str(df["EXPOSE"]) == df["ENV"]["RSPP_PORT"]
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(dist), str(REPO)], capture_output=True, text=True, timeout=300,
        check=False)
    assert built.returncode == 0, built.stderr
    wheel = next(dist.glob("rspp-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # the wheel itself, installed without dependencies; those come from this environment
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, timeout=300)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # a PYTHONPATH of the caller (a worktree's src) would shadow the installed wheel
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import rspp, importlib.metadata as m; "
                            "print(rspp.__file__); print(m.metadata('rspp').get_all("
                            "'Requires-Dist'))"], capture_output=True, text=True, check=True,
                           env=clean)
    assert where.stdout.startswith(str(site)), where.stdout  # not this checkout's source
    assert "extra == 'speech'" in where.stdout
    port = free_port()
    env = {**df["ENV"], "RSPP_PORT": str(port), "RSPP_HOST": "127.0.0.1", "PYTHONPATH": ""}
    entry = [str(py), "-c", "from rspp.cli import main; main()"]  # the `rspp` script's body
    srv = Proc([*entry, *df["CMD"]], env, tmp_path)
    procs.append(srv)
    health = df["HEALTHCHECK"]
    assert health[0] == "python" and "/healthz" in health[-1]
    assert srv.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    checked = subprocess.run([str(py), *health[1:]], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr  # the HEALTHCHECK command itself
    deadline = time.monotonic() + 60
    while srv.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
        assert time.monotonic() < deadline, srv.log.read_text()
        time.sleep(0.1)
    assert srv.stop() == 0, srv.log.read_text()
    assert "embedded control plane" in srv.log.read_text()
