"""The page's style sheet, inline in the page: dark on light, and a print layout."""

STYLE = """
:root { --fail: #f6c6c1; --error: #fbd9a6; --warn: #fff0a0; --pass: #dcefd6; --skip: #ececec; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #111; background: #fff; margin: 0 auto; padding: 16px 24px; max-width: 1500px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 18px; border-bottom: 2px solid #333; margin: 28px 0 8px; padding-bottom: 2px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dl.run dt { font-weight: 600; } dl.run dd { margin: 0; font-family: ui-monospace, monospace; }
.note { color: #333; font-size: 12px; margin: 2px 0 8px; }
.none { color: #333; font-style: italic; }
.counts { display: flex; gap: 10px; flex-wrap: wrap; }
.count { border: 1px solid #333; padding: 6px 14px; min-width: 90px; text-align: center; }
.count .n { display: block; font-size: 24px; font-weight: 700; }
.count .label { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.verdict-word { padding: 0 6px; border: 2px solid #111; }
table.data { border-collapse: collapse; margin: 6px 0 12px; font-size: 12px; }
table.data th, table.data td { border: 1px solid #999; padding: 3px 6px; text-align: left;
  vertical-align: top; }
table.data th { background: #f0f0f0; }
table.findings td:last-child { max-width: 900px; }
.s-fail { background: var(--fail); } .s-error { background: var(--error); }
.s-warn { background: var(--warn); } .s-pass { background: var(--pass); }
.s-skip { background: var(--skip); }
.s-text-fail, .s-text-error { color: #8a0015; } .s-text-pass { color: #14531d; }
.legend span { padding: 1px 6px; border: 1px solid #999; margin-right: 4px; font-size: 12px; }
.matrix-wrap { overflow-x: auto; max-width: 100%; }
table.matrix { border-collapse: collapse; font-size: 11px; }
table.matrix th, table.matrix td { border: 1px solid #aaa; padding: 1px 3px; text-align: center; }
table.matrix th.host { text-align: left; white-space: nowrap; background: #f0f0f0;
  position: sticky; left: 0; }
table.matrix th.check { vertical-align: bottom; padding: 4px 1px; background: #f7f7f7; }
table.matrix th.check span { writing-mode: vertical-rl; transform: rotate(180deg);
  white-space: nowrap; font-weight: 500; }
table.matrix td { min-width: 18px; cursor: default; }
table.matrix td.host-error { text-align: left; font-weight: 600; }
table.matrix td.absent, .legend .absent { color: #777; background: #fff; }
tr.host-failed th.host, tr.host-error th.host { color: #8a0015; }
figure.plot { margin: 10px 0 18px; }
figure.plot svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #333; }
pre.source { background: #f7f7f7; border: 1px solid #ccc; padding: 8px; font-size: 11px;
  overflow-x: auto; white-space: pre-wrap; }
footer { margin-top: 30px; border-top: 1px solid #999; padding-top: 6px; font-size: 12px; }
@page { size: A4 landscape; margin: 10mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  .matrix-wrap { overflow: visible; }
  table.matrix { font-size: 8px; }
  figure.plot, table.data tr, .counts { break-inside: avoid; }
  h2 { break-after: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
