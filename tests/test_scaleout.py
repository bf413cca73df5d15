"""The scaled-out shape for real: two gunicorn front ends on one PostgreSQL, one S3-compatible
store and the Ray Serve backend on a Ray head of its own (separate processes), under the load
of the single-server test: 640 requests from 32 clients, zero 5xx, one row per answer."""
from __future__ import annotations

import pytest
import requests

from bench.cluster import RayHead, ray_available
from bench.server import LiveServer

from .test_server import salt_load
from .test_storage import s3_endpoint  # noqa: F401 - the module fixture, shared

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.postgres]


@pytest.fixture
def ray_head(tiny_model_dir, tmp_path):
    if not ray_available():
        pytest.skip("the ray command line is not installed")
    head = RayHead(num_cpus=2)
    try:
        head.deploy(tiny_model_dir, tmp_path, RAY_NUM_CPUS="0.25", MAX_BATCH_SIZE="8", MAX_BATCH_DELAY_MS="10")
        yield head
    finally:
        head.stop()


def test_two_front_ends_on_postgres_and_ray_lose_nothing(ray_head, postgres_url, s3_endpoint, tiny_model_dir,  # noqa: F811
                                                         tmp_path):
    import json

    env = {**ray_head.env, "INFERENCE_BACKEND": "ray", "DATABASE_URL": postgres_url, "STORAGE_URL":
           f"s3://geovision-test/{tmp_path.name}", "STORAGE_OPTIONS": json.dumps(s3_endpoint), "GUNICORN_THREADS": "16"}
    servers = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(LiveServer(tmp_path / name, tiny_model_dir, env=env))
        outcomes, wall = salt_load([server.url for server in servers])
        statuses = [status for _, (status, _) in outcomes]
        assert not [s for s in statuses if s == "refused" or (isinstance(s, int) and s >= 500)]
        answered = [job for job, (status, _) in outcomes if status == 200]
        assert len(answered) == 608 and statuses.count(400) == 32
        rows = servers[0].rows("salt")
        assert sorted(r[1] for r in rows) == sorted(job[0] for job in answered)   # one row per answer
        for server in servers:                    # both front ends answered, through the Ray replicas
            models = requests.get(f"{server.url}/api/v1/models").json()["models"]
            assert {m["backend"] for m in models} == {"ray"}
            assert sum(1 for job in answered if job[3] == server.url) == sum(
                1 for job, _ in outcomes if job[3] == server.url and not job[2])
        print(f"\ntwo front ends + PostgreSQL + Ray: 640 requests, 32 clients, {wall:.1f} s, "
              f"{len(answered) / wall:.1f} answered/s, 5xx 0, rows {len(rows)}")
        # an answer of front end A is served by front end B (the shared store)
        first = requests.post(f"{servers[0].url}/api/v1/salt/segment", files={"image": ("x.png", answered[0][1])}).json()
        mask = first["results"][0]["mask_url"].split("/salt/", 1)[1]
        assert requests.get(f"{servers[1].url}/salt/{mask}").status_code == 200
    finally:
        for server in servers:
            server.stop()
