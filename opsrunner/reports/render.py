"""Pick the renderer of a format: every format comes from the one canonical document."""

from __future__ import annotations

from opsrunner.reports.document import Report

FORMATS = (
    "html",
    "md",
    "json",
    "junit",
    "sarif",
    "csv",
    "xccdf",
    "oscal",
    "oscal-catalog",
    "oscal-components",
    "text",
)


def render(report: Report, fmt: str, *, level: str = "auditor", lang: str = "en") -> str:
    """The report in one format, as text (every format is text: HTML, JSON, XML, CSV)."""
    if fmt == "json":
        return report.to_json()
    if fmt == "html":
        from opsrunner.reports import html

        return html.render(report, level=level, lang=lang)
    if fmt == "md":
        from opsrunner.reports import markdown

        return markdown.render(report, level=level, lang=lang)
    if fmt == "csv":
        from opsrunner.reports import csv

        return csv.render(report)
    if fmt == "junit":
        from opsrunner.reports import junit

        return junit.render(report)
    if fmt == "sarif":
        from opsrunner.reports import sarif

        return sarif.render(report)
    if fmt == "xccdf":
        from opsrunner.reports import xccdf

        return xccdf.render(report)
    if fmt == "oscal":
        from opsrunner.reports import oscal

        return oscal.render_assessment_results(report)
    if fmt == "oscal-catalog":
        from opsrunner.reports import oscal

        return oscal.render_catalog(report)
    if fmt == "text":
        from opsrunner.reports import text

        return text.render(report)
    if fmt == "oscal-components":
        from opsrunner.reports import oscal

        return oscal.render_components(report)
    raise ValueError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
