"""The grid explorer's numbers against a hand computation, its specification's controls,
and the page it writes (the browser checks in tests/browser/test_explorers.py click it)."""
import json
import math
import re
import statistics
from pathlib import Path

import pytest

from cbam_tutorial.book.grid_explorer import (VEGA_LITE_VERSION, VEGA_VERSION, explorer_spec, explorer_tables,
                                              grid_explorer)

ROOT = Path(__file__).resolve().parents[1]
# accuracy of (configuration, seed): made up, with a seed effect shared by all configurations
SCORES = {"baseline": [0.900, 0.905, 0.895, 0.910], "se": [0.903, 0.909, 0.897, 0.915],
          "cbam": [0.906, 0.907, 0.899, 0.917]}
T975_3 = 3.182  # Student's t, 97.5% quantile, 3 degrees of freedom (a printed table)


def records(metric="val"):
    return [{"key": f"{name}/{seed}", "configuration": {"name": name}, "seed": seed, metric: {"accuracy": value}}
            for name, values in SCORES.items() for seed, value in enumerate(values)]


def by_hand(name, reference):
    differences = [100 * (a - b) for a, b in zip(SCORES[name], SCORES[reference])]
    mean = statistics.fmean(differences)
    half = T975_3 * statistics.stdev(differences) / math.sqrt(len(differences))
    return mean, mean - half, mean + half


def test_tables_hold_every_comparison_computed_by_hand():
    tables = explorer_tables(records())
    assert tables["configurations"] == ["baseline", "se", "cbam"]
    assert len(tables["runs"]) == 12 and len(tables["paired"]) == 3 * 2 * 4
    for row in tables["differences"]:  # every (reference, other configuration) pair
        mean, low, high = by_hand(row["config"], row["reference"])
        assert row["diff"] == pytest.approx(mean) and row["low"] == pytest.approx(low, abs=1e-3)
        assert row["high"] == pytest.approx(high, abs=1e-3) and row["seeds"] == 4
        assert row["label"] == f"{row['diff']:+.2f} ({row['low']:+.2f} to {row['high']:+.2f})"
    assert {(r["reference"], r["config"]) for r in tables["differences"]} == \
        {(a, b) for a in SCORES for b in SCORES if a != b}
    se = next(r for r in tables["summary"] if r["config"] == "se")
    values = [100 * v for v in SCORES["se"]]
    assert se["mean"] == pytest.approx(statistics.fmean(values))
    assert se["high"] - se["mean"] == pytest.approx(T975_3 * statistics.stdev(values) / 2, abs=1e-3)
    paired = [r["diff"] for r in tables["paired"] if r["reference"] == "baseline" and r["config"] == "cbam"]
    assert paired == pytest.approx([100 * (a - b) for a, b in zip(SCORES["cbam"], SCORES["baseline"])])


def test_order_and_metric_are_followed():
    tables = explorer_tables(records("test"), metric="test", order=["cbam", "baseline"])
    assert tables["configurations"] == ["cbam", "baseline"]
    assert {r["config"] for r in tables["runs"]} == {"cbam", "baseline"}


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="no records to explore"):
        explorer_tables([])
    with pytest.raises(ValueError, match="has no val accuracy; use metric='test'"):
        explorer_tables(records("test"))
    with pytest.raises(ValueError, match="reference 'resnet' is not among"):
        grid_explorer(records(), reference="resnet")


def test_spec_binds_one_select_and_a_checkbox_per_configuration():
    tables = explorer_tables(records())
    spec = explorer_spec(tables, "se", controls="#here")
    params = {p["name"]: p for p in spec["params"]}
    assert params["reference"]["value"] == "se"
    assert params["reference"]["bind"] == {"input": "select", "options": ["baseline", "se", "cbam"],
                                           "name": "compare with ", "element": "#here"}
    assert [params[f"show_{i}"]["bind"]["input"] for i in range(3)] == ["checkbox"] * 3
    assert set(spec["datasets"]) == {"summary", "runs", "differences", "paired"}
    # every layer that draws a configuration filters on its checkbox
    text = json.dumps(spec)
    assert text.count("[show_0, show_1, show_2][datum.index]") == 8


def test_page_embeds_the_spec_safely_and_loads_the_sites_own_scripts():
    explorer = grid_explorer([{**r, "configuration": {"name": r["configuration"]["name"] + "</script>"}}
                              for r in records()], reference="baseline</script>")
    page = explorer.html()
    spec_text = re.search(r'<script type="application/json" id="[^"]+-spec">(.*?)</script>', page, re.S).group(1)
    assert "</script>" not in spec_text
    assert json.loads(spec_text) == explorer.spec  # the escaped "<\/" reads back as "</"
    assert '_static/vendor/vega/vega.min' in page and '_static/vendor/vega/vega-lite.min' in page
    # the CDN fallback (Jupyter, Colab) names the versions that the site copies from npm
    fetch = (ROOT / "book" / "fetch_assets.py").read_text()
    assert f'("vega", "{VEGA_VERSION}"' in fetch and f'("vega-lite", "{VEGA_LITE_VERSION}"' in fetch
    assert f"vega@{VEGA_VERSION}" in page and f"vega-lite@{VEGA_LITE_VERSION}" in page
    bundle = explorer._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}


def test_report_explorer_includes_the_reference_row_outside_the_grid():
    from cbam_tutorial.book.report import ablation_report

    rows = [{"key": f"{n}/{s}", "configuration": {"name": n}, "seed": s, "profile": "p", "val": {"accuracy": v}}
            for n, values in {"baseline": [0.5, 0.6, 0.55], "cbam avg+max k=3": [0.52, 0.61, 0.56],
                              "cam avg+max": [0.51, 0.63, 0.57]}.items()
            for s, v in enumerate(values)]
    report = ablation_report("spatial", rows)
    explorer = report.explorer()
    assert explorer.tables["configurations"] == ["baseline", "cbam avg+max k=3", "cam avg+max"]
    assert explorer.spec["params"][0]["value"] == "cam avg+max"
