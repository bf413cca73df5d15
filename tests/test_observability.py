import io

import torch

from app.engine.batcher import DynamicBatcher

from .conftest import fail_nth_batch, half_bright_tile, png_bytes


def test_metrics_are_scraped_in_prometheus_format(client):
    client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(png_bytes(half_bright_tile())), "a.png")]},
                content_type="multipart/form-data")
    client.get("/api/v1/health")
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    assert 'geovision_http_requests_total{endpoint="/api/v1/salt/segment",method="POST",status="200"}' in text
    assert 'geovision_http_request_duration_seconds_bucket{endpoint="/api/v1/health"' in text
    assert 'geovision_batch_size_count{model="salt"}' in text
    assert 'geovision_queue_wait_seconds_bucket{le="0.001",model="salt"}' in text
    assert 'geovision_inference_seconds_sum{model="salt"}' in text
    assert 'geovision_queue_depth{model="salt"} 0.0' in text
    assert 'geovision_model_loaded{model="salt"} 1.0' in text


def test_models_page_and_api_show_live_figures(client):
    client.post("/api/v1/salt/segment", data={"image": [(io.BytesIO(png_bytes(half_bright_tile())), "a.png")]},
                content_type="multipart/form-data")
    salt = next(m for m in client.get("/api/v1/models").get_json()["models"] if m["task"] == "salt")
    assert salt["requests_served"] == 1 and salt["mean_batch_size"] == 1.0
    page = client.get("/models").get_data(as_text=True)
    assert "tiny-bright-is-salt" in page and "val_tgs_metric" in page


def test_out_of_memory_splits_the_batch():
    calls = []

    def model(x):
        calls.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return x * 3

    batcher = DynamicBatcher(model, max_batch_size=8, max_batch_delay_ms=1)
    try:
        out = batcher(torch.arange(8.0).view(8, 1), timeout=5)
        assert torch.equal(out, torch.arange(8.0).view(8, 1) * 3)
        assert calls == [8, 4, 2, 2, 4, 2, 2]
    finally:
        batcher.close()



def test_full_queue_and_timeout_answer_503_with_retry_after(app, client, monkeypatch):
    from concurrent.futures import TimeoutError as FutureTimeout

    from app.engine import QueueFullError

    for exc, code in ((QueueFullError("salt: request queue is full"), "overloaded"), (FutureTimeout(), "timeout")):
        def fail(self, inputs, timeout=None, priority=0, exc=exc):
            raise exc
        monkeypatch.setattr(DynamicBatcher, "__call__", fail)
        resp = client.post("/api/v1/salt/segment", content_type="multipart/form-data",
                           data={"image": [(io.BytesIO(png_bytes(half_bright_tile())), "a.png")]})
        assert resp.status_code == 503 and resp.get_json()["error"]["code"] == code
        assert int(resp.headers["Retry-After"]) >= 1


def test_a_request_failing_midway_keeps_no_rows(app, client, monkeypatch):
    """Three files answered in one forward pass; keeping the 2nd file's artefacts fails: 500, and
    neither the 1st file's row nor its folder is kept. A forward pass that fails (a full queue,
    503) keeps nothing either; the next request is answered and recorded."""
    from app import recorder
    from app.records import Prediction

    real, written = recorder._write, []

    def fails_on_second_folder(path, artefact):
        written.append(path.parent)
        if len(set(written)) == 2:
            raise OSError("disk full")
        real(path, artefact)

    monkeypatch.setattr(recorder, "_write", fails_on_second_folder)
    files = lambda: [(io.BytesIO(png_bytes(half_bright_tile())), f"{i}.png") for i in range(3)]  # noqa: E731
    resp = client.post("/api/v1/salt/segment", content_type="multipart/form-data", data={"image": files()})
    assert resp.status_code == 500 and len(set(written)) == 2
    assert not any(folder.exists() for folder in written)
    monkeypatch.setattr(recorder, "_write", real)
    calls = fail_nth_batch(monkeypatch, 1, "salt")
    resp = client.post("/api/v1/salt/segment", content_type="multipart/form-data", data={"image": files()})
    assert resp.status_code == 503 and calls["n"] == 1
    with app.app_context():
        assert Prediction.query.count() == 0
    ok = client.post("/api/v1/salt/segment", content_type="multipart/form-data",
                     data={"image": [(io.BytesIO(png_bytes(half_bright_tile())), "again.png")]})
    assert ok.status_code == 200
    with app.app_context():
        assert Prediction.query.count() == 1


def test_the_flask_cli_loads_models_only_for_a_command_that_needs_them(tiny_model_dir, tmp_path):
    """``flask db upgrade`` (an app built inside a click context) starts no model loading; the
    first use of the engine does, and then the models are ready."""
    import click

    from app import create_app
    from app.extensions import engine

    config = {"TESTING": True, "SECRET_KEY": "test", "INSTANCE_PATH": str(tmp_path / "instance"),
              "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'cli.db'}", "MODEL_DIR": str(tiny_model_dir)}
    with click.Context(click.Command("db")):
        app = create_app(config)
    state = app.extensions["engine"]
    assert state._loader is None and state.status == "loading"
    with app.app_context():
        engine.state.wait_loaded()
    assert state.status == "ready" and set(state.checkpoints) == {"salt", "rocks", "similarity", "whales"}
    state.close()
    served = create_app({**config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'web.db'}"})
    assert served.extensions["engine"]._loader is not None   # gunicorn's import: loading starts at once
    served.extensions["engine"].wait_loaded()
    served.extensions["engine"].close()
