"""Time-variant gain of SEG-Y sections (geovision.gain) and its effect on a real depth line."""
from __future__ import annotations

import io

import numpy as np
import pytest

from geovision import gain

from .conftest import DATA, make_app


def test_balance_rows_removes_the_decay_and_keeps_the_lateral_contrast():
    rng = np.random.default_rng(0)
    h, w = 400, 120
    decay = np.exp(-np.arange(h) / 200.0)[:, None]                 # amplitudes fall 7x down the section
    section = rng.normal(size=(h, w)) * decay
    section[300:360, 40:80] *= 0.2                                 # a quiet body deep in the section
    live = np.ones((h, w), bool)
    live[:20] = False                                              # a mute: left as it is
    out = gain.balance_rows(section, live)
    rms = np.sqrt((out[20:] ** 2).mean(axis=1))
    assert rms.max() / rms.min() < 2                               # before: about 7
    quiet, beside = np.abs(out[300:360, 40:80]).mean(), np.abs(out[300:360, :40]).mean()
    assert quiet / beside == pytest.approx(np.abs(section[300:360, 40:80]).mean()
                                           / np.abs(section[300:360, :40]).mean(), rel=0.05)
    np.testing.assert_array_equal(out[:20], section[:20].astype(np.float32))
    flat = gain.balance_rows(np.zeros((50, 10)))
    assert not flat.any()


@pytest.mark.skipif(not (DATA / "seismic-real").is_dir(), reason="../shared/data/seismic-real is absent")
def test_the_volve_depth_line_is_no_longer_salt_where_its_amplitudes_fade(model_dir, tmp_path):
    """Before the gain, the deep part of the Volve depth line (amplitudes about 5x weaker) was flat
    grey after the section-wide clip and 7.5 % of the section was 'high'-confidence salt."""
    app = make_app(model_dir, tmp_path)
    path = DATA / "seismic-real" / "volve10r12-full-z-il10117sub.sgy"
    answer = app.test_client().post("/api/v1/salt/segment", data={"image": [(io.BytesIO(path.read_bytes()), path.name)],
                                                       "domain": "depth"})
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()["results"][0]
    app.extensions["engine"].close()
    assert result["coverage"] < 0.01 and result["confidence"]["level"] in ("none", "low"), result["confidence"]
