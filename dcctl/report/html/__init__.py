"""The run as a self-contained HTML page with plots (matplotlib, inline SVG)."""

from dcctl.report.html.page import render_html

__all__ = ["render_html"]
