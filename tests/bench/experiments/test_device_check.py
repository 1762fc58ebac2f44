"""The device check's plumbing, run as its own dry run (device numpy); no timing assertions."""
import numpy as np

from bench.experiments.device_check import agreement, float32_product_error, format_markdown, run_check


def test_device_check_dry_run_writes_every_part():
    geometry = {"tiny-geometry": (16, 0.4, 1.0, 400)}
    r = run_check("numpy", [("synthetic", "tiny")], None, geometries=geometry,
                  generation={"n_device": 16, "n_cpu": 16})
    calls = {row["call"] for row in r["agreement"]}
    assert {"value", "value_and_grad: g", "hvp", "E-step za", "hard E-step za", "M-step gradient",
            "posterior", "test NLL", "scoring NLL"} <= calls
    assert all(row["ok"] for row in r["agreement"]), [row for row in r["agreement"] if not row["ok"]]
    assert {row["dtype"] for row in r["agreement"]} == {"float32", "float64"}
    (step,) = r["steps"]
    assert step["pose_shape"] == (2 * 5 * 100, step["band_coefficients"], step["slices_extracted"])
    assert step["ms_per_step"] > 0 and 0 <= step["transfer_share"] <= 1
    text = format_markdown(r)
    assert "| synthetic-tiny | hvp | float32 |" in text and "tiny-geometry" in text
    assert r["float32_product_error"] < 1e-5                 # numpy: full float32 products
    a = r["alignment"]                                       # the array-module alignment finds the CPU's
    assert a["hands_agree"] and a["angle_deg"] < 0.2 and a["fsc_max_diff"] < 1e-3 and a["fsc_band_mean"] > 0.99
    assert "## Snapshot alignment: synthetic-tiny" in text
    g = r["generation"]
    assert g["components"] > 3000 and g["device_images_per_s"] > 0 and g["cpu_images_per_s"] > 0
    assert "## Data generation" in text


def test_agreement_reports_a_problem_it_cannot_load():
    rows = agreement("numpy", [("synthetic", "no-such-scale")])
    assert len(rows) == 1 and not rows[0]["ok"] and np.isnan(rows[0]["error"])
    assert "no-such-scale" in rows[0]["note"]
