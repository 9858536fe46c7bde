"""The plots are server-rendered SVG: their geometry follows the data, and no text in them
comes from anywhere but numbers and escaped ids."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from oa_node.plugins.web.data import Latency, RelaySampler
from oa_node.plugins.web.pages import latency_plot, rate_plot

SVG = "{http://www.w3.org/2000/svg}"


def test_latency_bars_are_proportional_and_stacked() -> None:
    jobs = [Latency("a" * 64, publish=0.1, provider=0.5, sandbox=1.0, verify=0.2, payment=0.2),
            Latency("<b>" * 20, publish=0.1, provider=0.4)]
    svg = ET.fromstring(latency_plot(jobs))
    bars = [r for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 7
    first = [float(r.get("width", 0)) for r in bars[:5]]
    # widths in the ratio of the seconds, the longest job filling the plot width
    assert abs(first[2] / first[1] - 2.0) < 0.01
    assert abs(sum(first) - (720 - 110 - 60)) < 1
    xs = [float(r.get("x", 0)) for r in bars[:5]]
    assert all(abs(xs[i] + first[i] - xs[i + 1]) < 0.2 for i in range(4))  # stacked
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "<b><b><b><b>" in labels  # the id, escaped in the markup, literal as text
    assert latency_plot([Latency("x")]).startswith("<p")  # nothing measured: no plot


def test_rate_plot_follows_the_samples() -> None:
    sampler = RelaySampler(every=10.0)
    for i in range(7):  # 10 s apart: 0, 10, 30, 60, ... new events
        sampler.samples.append((1000.0 + 10 * i, 5 * i * (i + 1), 2 * i))
    rates = sampler.rates()
    assert [round(r[1], 2) for r in rates] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert all(round(r[2], 2) == 0.2 for r in rates)
    svg = ET.fromstring(rate_plot(rates))
    ingest, fanout = svg.iter(f"{SVG}polyline")
    points = [tuple(map(float, p.split(","))) for p in ingest.get("points", "").split()]
    assert len(points) == 6 and points[-1][1] < points[0][1]  # rising (y grows downwards)
    assert len({p.split(",")[1] for p in fanout.get("points", "").split()}) == 1  # flat
    assert rate_plot(rates[:1]).startswith("<p")


def test_a_timestamp_no_clock_can_show_is_shown_as_a_number() -> None:
    from oa_node.plugins.web.pages import when

    assert when(2**62) == str(2**62) and when(float("nan")) == "nan"
    assert when(-(2**62)) == str(-(2**62))
    assert when("1") == "" and when(True) == ""
    assert when(0).startswith("1970-01-01") or when(0).startswith("1969-12-31")
