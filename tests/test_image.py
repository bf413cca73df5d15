"""The serving image, built and run as an operator would (docs/OPERATIONS.md, "The container").

Builds the image with ``deploy/image.sh`` (a debootstrap Debian base, the local wheel index), runs
it with a named volume and production settings, waits for the health check, creates the first
admin and a key with the operator's commands, builds both galleries from small folders, calls
one prediction per task through the API, checks the non-root user, restarts the container and
finds the history, and stops it with SIGTERM within the grace period. Skipped with the reason
where no container engine can be started (``make docker-engine`` installs and starts one).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from bench.server import free_port

from .conftest import ROOT, half_bright_tile, png_bytes, rock_png, whale_photo

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IMAGE = "geovision:test"
PASSWORD = "operator password 1"


def docker(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], input=input, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image():
    engine = subprocess.run([str(ROOT / "deploy" / "image.sh"), "engine"], capture_output=True, text=True)
    if engine.returncode != 0:
        pytest.skip(f"no container engine: {engine.stderr.strip()[-300:]}")
    started = time.monotonic()
    build = subprocess.run([str(ROOT / "deploy" / "image.sh"), "build"], capture_output=True, text=True,
                           env={**os.environ, "IMAGE": IMAGE}, timeout=3600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE))
    print(f"\nimage {IMAGE}: built in {time.monotonic() - started:.0f} s, {size / 2**30:.2f} GiB")
    # the serving stage holds no CA bundle of the build, no compiler, no pip cache, no training package
    leftovers = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                       "ls /tmp/build-ca /root/.cache/pip 2>/dev/null; command -v gcc cc; "
                       "python3 -c 'import timm' 2>/dev/null && echo timm; ls /app", check=False)
    assert leftovers.split() == sorted(["app", "docker-entrypoint.sh", "geovision", "gunicorn.conf.py", "instance",
                                        "migrations", "models", "pyproject.toml", "static", "templates", "wsgi.py"])
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE))
    assert len(labels["org.opencontainers.image.revision"]) == 40 and labels["org.opencontainers.image.version"]
    return IMAGE


def wait_healthy(name: str, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name))
        if state.get("Health", {}).get("Status") == "healthy":
            return time.monotonic() - started
        assert state["Running"], docker("logs", "--tail", "50", name, check=False)
        time.sleep(1)
    raise AssertionError(f"not healthy after {timeout} s: {docker('logs', '--tail', '50', name, check=False)}")


@pytest.fixture(scope="module")
def container(image, tmp_path_factory, rock_folder, whale_folder):
    name, volume = f"geovision-test-{secrets.token_hex(4)}", f"geovision-test-{secrets.token_hex(4)}"
    data = Path(tempfile.mkdtemp(prefix="geovision-image-data-", dir="/var/tmp"))   # readable by the image's user
    shutil.copytree(rock_folder, data / "rocks")
    shutil.copytree(whale_folder, data / "whales")
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    rock_folder, whale_folder = data / "rocks", data / "whales"
    docker("volume", "create", volume)
    port = free_port()
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-v", f"{volume}:/app/instance",
           "-v", f"{rock_folder}:/data/rocks:ro", "-v", f"{whale_folder}:/data/whales:ro",
           "-e", f"SECRET_KEY={secrets.token_hex(32)}", "-e", f"METRICS_TOKEN={secrets.token_hex(16)}", image)
    try:
        seconds = wait_healthy(name)
        print(f"\nhealthy {seconds:.0f} s after docker run")
        yield {"name": name, "url": f"http://127.0.0.1:{port}", "volume": volume}
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", volume, check=False)
        shutil.rmtree(data, ignore_errors=True)


def test_the_image_serves_every_task_as_a_non_root_user_and_keeps_its_data(container):
    name, url = container["name"], container["url"]
    flask = ["exec", "-i", name, "flask", "--app", "wsgi"]
    docker(*flask, "users", "create", "admin", "--admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    key = docker(*flask, "users", "key", "admin").splitlines()[-1]
    docker(*flask, "gallery", "build", "similarity", "--data", "/data/rocks", timeout=600)
    docker(*flask, "gallery", "build", "whales", "--data", "/data/whales", timeout=600)
    assert requests.post(f"{url}/api/v1/rocks/classify", timeout=30).status_code == 401   # production: keys
    auth = {"Authorization": f"Bearer {key}"}
    photo = png_bytes(whale_photo(1, 0, 0))
    calls = {"salt/segment": png_bytes(half_bright_tile()), "rocks/classify": rock_png("marble"),
             "similarity/search": rock_png("gneiss"), "whales/identify": photo}
    for route, data in calls.items():
        response = requests.post(f"{url}/api/v1/{route}", files={"image": ("x.png", data)}, headers=auth, timeout=120)
        assert response.status_code == 200, (route, response.text[:500])
        assert "prediction_id" in response.json()["results"][0], route
    assert docker("exec", name, "id", "-u") == "10001"
    assert docker("exec", name, "awk", "/^Uid:/ {print $2}", "/proc/1/status") == "10001"   # gunicorn itself

    docker("restart", name, timeout=120)
    wait_healthy(name)
    session = requests.Session()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', session.get(f"{url}/login", timeout=30).text)
    login = session.post(f"{url}/login", data={"name": "admin", "password": PASSWORD, "csrf_token": token.group(1)},
                         timeout=30)
    assert login.status_code == 200 and "Sign out" in login.text
    history = session.get(f"{url}/history", timeout=30).text
    assert history.count("x.png") >= 4          # the four answers survived the restart (the volume)

    started = time.monotonic()
    docker("stop", "-t", "30", name, timeout=60)  # SIGTERM, then SIGKILL after the 30 s grace period
    stopped = time.monotonic() - started
    state = json.loads(docker("inspect", "--format", "{{json .State}}", name))
    print(f"\nstopped {stopped:.1f} s after SIGTERM, exit code {state['ExitCode']}")
    assert stopped < 25 and state["ExitCode"] == 0


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) or Debian's ``docker-compose`` (1.29), whichever is here."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_stack_keeps_its_records_in_the_postgresql_container(image, rock_folder):
    """deploy/compose.single.yml as an operator runs it: the web image with ``DATABASE_URL`` on a
    PostgreSQL container (Debian's package, ``deploy/image.sh postgres``). The migrations, the
    first admin and one prediction land in that database, none in a SQLite file of the volume."""
    compose = compose_command()
    if compose is None:
        pytest.skip("no docker compose (make docker-engine installs Debian's docker-compose)")
    built = subprocess.run([str(ROOT / "deploy" / "image.sh"), "postgres"], capture_output=True, text=True,
                           timeout=1200)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    empty = Path(tempfile.mkdtemp(prefix="geovision-compose-", dir="/var/tmp"))
    empty.chmod(0o755)
    port = free_port()
    env = {**os.environ, "GEOVISION_IMAGE": image, "POSTGRES_PASSWORD": secrets.token_hex(16),
           "SECRET_KEY": secrets.token_hex(32), "WEB_PORT": str(port), "ROCKS_DATA": str(empty),
           "WHALES_DATA": str(empty)}
    stack = [*compose, "-p", f"geovision-test-{secrets.token_hex(4)}", "-f", str(ROOT / "deploy" / "compose.single.yml")]

    def run(*args: str, input: str | None = None) -> str:
        done = subprocess.run([*stack, *args], env=env, input=input, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-1500:]} {done.stderr[-1500:]}"
        return done.stdout.strip()

    try:
        run("up", "-d")
        seconds = wait_healthy(run("ps", "-q", "web"))
        print(f"\ncompose stack: web healthy {seconds:.0f} s after the database")
        run("exec", "-T", "web", "flask", "--app", "wsgi", "users", "create", "admin", "--admin",
            input=f"{PASSWORD}\n{PASSWORD}\n")
        key = run("exec", "-T", "web", "flask", "--app", "wsgi", "users", "key", "admin").splitlines()[-1]
        answer = requests.post(f"http://127.0.0.1:{port}/api/v1/rocks/classify", files={"image": ("r.png", rock_png("schist"))},
                               headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert answer.status_code == 200, answer.text[:500]
        psql = ["exec", "-T", "postgres", "psql", "-U", "geovision", "-d", "geovision", "-tAc"]
        rows = run(*psql, "SELECT task || ' ' || public_id FROM prediction").split()
        assert rows == ["rocks", answer.json()["results"][0]["prediction_id"]]
        assert run(*psql, "SELECT name FROM account WHERE role = 'admin'") == "admin"
        assert not run("exec", "-T", "web", "find", "/app/instance", "-name", "*.db")   # no SQLite beside it
    finally:
        subprocess.run([*stack, "down", "-v"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(empty, ignore_errors=True)
