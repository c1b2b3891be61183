"""A grid explorer that runs in the reader's browser: Vega-Lite from data embedded in the page.

    explorer = grid_explorer(records, metric="val", reference="baseline")
    explorer                     # in a notebook: the interactive chart (an HTML output)
    explorer.tables              # the numbers it shows, computed here by comparison.summarize

The reader ticks which configurations to show and picks the row to compare with; the
page then shows each configuration's mean accuracy with its 95% interval and the seeds'
scores, and the paired difference to the chosen row with its interval and the per-seed
differences. Every number is computed here, in Python, by the same functions as the
chapters' tables (`summarize` once per possible comparison row); the browser only filters
and draws, so what the page shows is what the book computes.

The page loads Vega and Vega-Lite from the book's own copy (`_static/vendor/vega/`, fetched
from npm by book/fetch_assets.py) when it is part of the built site, and from the jsDelivr
CDN in Jupyter or Colab, where there is no site to serve them.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from itertools import count

from ..comparison import summarize

VEGA_VERSION, VEGA_LITE_VERSION = "6.4.0", "6.5.0"  # the versions book/fetch_assets.py copies
_ids = count()


def _interval_label(mean: float, low: float, high: float, signed: bool) -> str:
    number = "{:+.2f}" if signed else "{:.2f}"
    if math.isnan(low):
        return f"{number.format(mean)} (one seed)"
    return f"{number.format(mean)} ({number.format(low)} to {number.format(high)})"


def explorer_tables(records: list[dict], metric: str = "val", order: list[str] | None = None) -> dict:
    """The four tables the explorer draws, as lists of plain rows (JSON-ready):

    "summary": per configuration, mean accuracy (%), its 95% interval and a label;
    "runs": per run, configuration, seed and accuracy (%);
    "differences": per (reference row, other configuration), the paired difference in
        points, its 95% interval, the number of paired seeds and a label;
    "paired": per (reference row, configuration, seed), that seed's difference.

    order: the configurations in the order shown (default: as they first appear).
    """
    names = list(dict.fromkeys(order or [r["configuration"]["name"] for r in records]))
    records = [r for r in records if r["configuration"]["name"] in names]
    if not records:
        raise ValueError("no records to explore: pass a grid's records (see book.reference.reference_records)")
    index = {name: i for i, name in enumerate(names)}
    scores: dict[str, dict[int, float]] = {}
    for record in records:
        if record.get(metric) is None:
            raise ValueError(f"record {record.get('key')} has no {metric} accuracy; use metric='test'")
        scores.setdefault(record["configuration"]["name"], {})[record["seed"]] = 100 * record[metric]["accuracy"]
    names = [name for name in names if name in scores]
    tables = {"configurations": names, "metric": metric, "summary": [], "runs": [], "differences": [],
              "paired": []}
    # one summary per possible comparison row; the per-configuration columns are the same in each
    against = {reference: summarize(records, metric=metric, baseline=reference) for reference in names}
    for name in names:
        row = against[names[0]].loc[name]
        mean, low, high = (float(row[c]) for c in ("accuracy %", "95% CI low", "95% CI high"))
        tables["summary"].append({"config": name, "index": index[name], "mean": mean, "low": low, "high": high,
                                  "seeds": int(row["runs"]), "label": _interval_label(mean, low, high, False)})
        for seed, accuracy in sorted(scores[name].items()):
            tables["runs"].append({"config": name, "index": index[name], "seed": seed, "accuracy": accuracy})
    for reference, table in against.items():
        for name in names:
            if name == reference or not isinstance(table.loc[name, "vs baseline"], float) \
                    or math.isnan(table.loc[name, "vs baseline"]):
                continue
            row = table.loc[name]
            diff, low, high = (float(row[c]) for c in ("vs baseline", "vs baseline CI low", "vs baseline CI high"))
            tables["differences"].append({
                "reference": reference, "config": name, "index": index[name], "diff": diff, "low": low,
                "high": high, "seeds": int(row["paired seeds"]), "label": _interval_label(diff, low, high, True)})
            for seed in sorted(set(scores[name]) & set(scores[reference])):
                tables["paired"].append({"reference": reference, "config": name, "index": index[name], "seed": seed,
                                         "diff": scores[name][seed] - scores[reference][seed]})
    return tables


def _shown(names: list[str]) -> str:
    """A Vega expression: is the row's configuration ticked? (one checkbox parameter each)"""
    return "[" + ", ".join(f"show_{i}" for i in range(len(names))) + "][datum.index]"


def explorer_spec(tables: dict, reference: str, controls: str | None = None) -> dict:
    """The Vega-Lite specification: two rows of charts (accuracy; difference to the chosen
    row), each with the numbers beside it, and the controls bound to parameters (placed in
    the element that the CSS selector `controls` names, else after the charts)."""
    names = tables["configurations"]
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not among the configurations {names}")
    metric = {"val": "validation", "test": "test"}[tables["metric"]]
    shown = {"filter": _shown(names)}
    y = {"field": "config", "type": "nominal", "sort": names, "title": None}

    def numbers(data: str, transforms: list, title: str) -> dict:
        return {"data": {"name": data}, "transform": transforms, "width": 170,
                "title": {"text": title, "fontSize": 11, "fontWeight": "normal"},
                "mark": {"type": "text", "align": "left", "x": 0, "fontSize": 11},
                "encoding": {"y": {**y, "axis": None}, "text": {"field": "label"}}}

    accuracy = {
        "hconcat": [
            {"width": 300, "title": {"text": f"{metric} accuracy (%): mean, 95% interval, seeds", "fontSize": 12},
             "layer": [
                 {"data": {"name": "summary"}, "transform": [shown], "mark": {"type": "rule", "strokeWidth": 2},
                  "encoding": {"y": y, "x": {"field": "low", "type": "quantitative", "scale": {"zero": False},
                                             "title": f"{metric} accuracy (%)"}, "x2": {"field": "high"},
                               "color": {"condition": {"test": "datum.config === reference", "value": "#c44e52"},
                                         "value": "#4c72b0"}}},
                 {"data": {"name": "runs"}, "transform": [shown],
                  "mark": {"type": "point", "size": 28, "opacity": 0.55, "color": "#555555"},
                  "encoding": {"y": y, "x": {"field": "accuracy", "type": "quantitative"},
                               "tooltip": [{"field": "config"}, {"field": "seed"},
                                           {"field": "accuracy", "format": ".2f"}]}},
                 {"data": {"name": "summary"}, "transform": [shown],
                  "mark": {"type": "tick", "thickness": 3, "size": 16},
                  "encoding": {"y": y, "x": {"field": "mean", "type": "quantitative"},
                               "color": {"condition": {"test": "datum.config === reference", "value": "#c44e52"},
                                         "value": "#4c72b0"}}},
             ]},
            numbers("summary", [shown], "mean (95% interval)"),
        ]}
    difference = {
        "hconcat": [
            {"width": 300, "title": {"text": "paired difference to the chosen row (points)", "fontSize": 12},
             "layer": [
                 {"data": {"values": [{"zero": 0}]}, "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#888"},
                  "encoding": {"x": {"field": "zero", "type": "quantitative"}}},
                 {"data": {"name": "differences"}, "transform": [{"filter": "datum.reference === reference"}, shown],
                  "mark": {"type": "rule", "strokeWidth": 2, "color": "#4c72b0"},
                  "encoding": {"y": y, "x": {"field": "low", "type": "quantitative",
                                             "title": "difference (points)"}, "x2": {"field": "high"}}},
                 {"data": {"name": "paired"}, "transform": [{"filter": "datum.reference === reference"}, shown],
                  "mark": {"type": "point", "size": 28, "opacity": 0.55, "color": "#555555"},
                  "encoding": {"y": y, "x": {"field": "diff", "type": "quantitative"},
                               "tooltip": [{"field": "config"}, {"field": "seed"},
                                           {"field": "diff", "format": "+.2f"}]}},
                 {"data": {"name": "differences"}, "transform": [{"filter": "datum.reference === reference"}, shown],
                  "mark": {"type": "tick", "thickness": 3, "size": 16, "color": "#4c72b0"},
                  "encoding": {"y": y, "x": {"field": "diff", "type": "quantitative"}}},
             ]},
            numbers("differences", [{"filter": "datum.reference === reference"}, shown],
                    "difference (95% interval)"),
        ]}
    place = {"element": controls} if controls else {}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "datasets": {name: tables[name] for name in ("summary", "runs", "differences", "paired")},
        "params": [
            {"name": "reference", "value": reference,
             "bind": {"input": "select", "options": names, "name": "compare with ", **place}},
            *({"name": f"show_{i}", "value": True, "bind": {"input": "checkbox", "name": f"{name} ", **place}}
              for i, name in enumerate(names)),
        ],
        "vconcat": [accuracy, difference],
        "spacing": 24,
        "config": {"view": {"stroke": None}, "axis": {"labelFontSize": 11, "titleFontSize": 11},
                   "font": "sans-serif"},
    }


# Loads Vega and Vega-Lite once per page (through require.js where the page has it, since
# their UMD builds register as AMD modules there), then draws the chart into the holder.
_LOADER = """(function () {
  var holder = document.getElementById(%(id)s);
  var spec = JSON.parse(document.getElementById(%(id)s + "-spec").textContent);
  function script(url) {
    return new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = url; tag.onload = resolve;
      tag.onerror = function () { reject(new Error("could not load " + url)); };
      document.head.appendChild(tag);
    });
  }
  function libraries() {
    if (!window.cbamVegaLibraries) {
      var root = document.documentElement.getAttribute("data-content_root");
      var files = root !== null
        ? {vega: new URL(root + "_static/vendor/vega/vega.min", document.baseURI).href,
           "vega-lite": new URL(root + "_static/vendor/vega/vega-lite.min", document.baseURI).href}
        : {vega: "https://cdn.jsdelivr.net/npm/vega@%(vega)s/build/vega.min",
           "vega-lite": "https://cdn.jsdelivr.net/npm/vega-lite@%(vega_lite)s/build/vega-lite.min"};
      window.cbamVegaLibraries = new Promise(function (resolve, reject) {
        if (typeof window.define === "function" && window.define.amd && window.require) {
          window.require.config({paths: files});
          window.require(["vega", "vega-lite"], function (vega, vegaLite) {
            resolve({vega: vega, vegaLite: vegaLite});
          }, reject);
        } else {
          script(files.vega + ".js").then(function () { return script(files["vega-lite"] + ".js"); })
            .then(function () { resolve({vega: window.vega, vegaLite: window.vegaLite}); }, reject);
        }
      });
    }
    return window.cbamVegaLibraries;
  }
  libraries().then(function (lib) {
    holder.textContent = "";
    var view = new lib.vega.View(lib.vega.parse(lib.vegaLite.compile(spec).spec),
                                 {renderer: "svg", container: holder, hover: true});
    holder.cbamView = view;
    return view.runAsync();
  }).then(function () { holder.setAttribute("data-ready", "true"); })
    .catch(function (error) {
      holder.textContent = "The grid explorer could not start: " + error;
      console.error(error);
    });
})();"""


_STYLE = (".cbam-grid-explorer-controls{margin:0.3em 0 0.6em;font-size:0.9em}"
          ".cbam-grid-explorer-controls .vega-bind{display:inline-block;margin:0 1.2em 0.3em 0}"
          ".cbam-grid-explorer-controls .vega-bind-name{margin-right:0.3em}")


@dataclass
class GridExplorer:
    """The explorer of one grid: its tables, Vega-Lite spec and the HTML that shows it."""

    tables: dict
    spec: dict
    title: str
    element: str  # the id of the chart's element; its controls go in "<element>-controls"

    def html(self) -> str:
        element = self.element
        # "</" inside a script element would end it early
        spec = json.dumps(self.spec, separators=(",", ":")).replace("</", "<\\/")
        loader = _LOADER % {"id": json.dumps(element), "vega": VEGA_VERSION, "vega_lite": VEGA_LITE_VERSION}
        return (f"<style>{_STYLE}</style>\n"
                f'<div class="cbam-grid-explorer" aria-label="{html.escape(self.title)}">'
                f'<div id="{element}-controls" class="cbam-grid-explorer-controls"></div>'
                f'<div id="{element}" class="cbam-grid-explorer-chart">'
                f"<p>Loading the grid explorer (it needs JavaScript)...</p></div></div>\n"
                f'<script type="application/json" id="{element}-spec">{spec}</script>\n'
                f"<script>{loader}</script>")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self.html(),
                "text/plain": f"{self.title}: an interactive chart (open the notebook in Jupyter or read the book's "
                              "web page to use it)"}


def grid_explorer(records: list[dict], metric: str = "val", reference: str = "baseline",
                  order: list[str] | None = None, title: str = "grid explorer") -> GridExplorer:
    """An explorer of `records` (a grid's results): `reference` is the row compared with
    at first; `order` the configurations in the order shown."""
    tables = explorer_tables(records, metric, order)
    element = f"cbam-grid-explorer-{next(_ids)}"
    return GridExplorer(tables, explorer_spec(tables, reference, f"#{element}-controls"), title, element)
