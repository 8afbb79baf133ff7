"""The open-data portal page, ``public/index.html``: static, in Chinese, works from file://.

Built from the same :class:`catalog.dcat.PublicEntry` list as the DCAT catalogue: every
public dataset with its description, fields, update time, row count, download links and
lineage summary, and charts of the statistics drawn by Apache ECharts, vendored under
``catalog/vendor/echarts/`` (Apache-2.0, licence beside it) and copied next to the page:
no CDN, no network, no server.
"""

from __future__ import annotations

import json
from datetime import date
from html import escape
from pathlib import Path

from catalog.dcat import PublicEntry

VENDOR_DIR = Path(__file__).parent / "vendor" / "echarts"
ECHARTS_FILE = "echarts.common.min.js"  # ECharts 6.1.0 from the npm registry, unmodified
ASSET_DIR = "assets/echarts"

# chart element id → (title, statistics table, how to draw it)
CHARTS = {
    "chart-district": ("各区县办件量", "stats/cases_by_district"),
    "chart-month": ("每月办件量", "stats/cases_by_month"),
    "chart-bands": ("办结用时分布", "stats/processing_time_bands"),
    "chart-online": ("网上办结与零跑动占比", "stats/online_service"),
    "chart-satisfaction": ("满意度评价", "stats/satisfaction"),
}


def vendored_assets() -> dict[str, bytes]:
    """The chart library and its licence, as files to place under ``public/``."""
    return {
        f"{ASSET_DIR}/{name}": (VENDOR_DIR / name).read_bytes()
        for name in (ECHARTS_FILE, "LICENSE", "NOTICE")
    }


def _series(entries: dict[str, PublicEntry], name: str, x: str, y: str) -> dict:
    entry = entries.get(name)
    rows = entry.data if entry and entry.data else []
    return {"x": [r[x] for r in rows], "y": [r[y] for r in rows]}


def chart_data(entries: list[PublicEntry]) -> dict[str, dict]:
    """What each chart draws, from the published statistics tables (suppressed cells NULL)."""
    by_name = {e.name: e for e in entries}
    return {
        "chart-district": _series(by_name, "stats/cases_by_district", "district_name", "cases"),
        "chart-month": _series(by_name, "stats/cases_by_month", "month", "cases"),
        "chart-bands": _series(by_name, "stats/processing_time_bands", "band", "cases"),
        "chart-online": _series(by_name, "stats/online_service", "measure", "share"),
        "chart-satisfaction": _series(by_name, "stats/satisfaction", "satisfaction", "cases"),
    }


def _headline(entries: list[PublicEntry]) -> str:
    by_type = next((e for e in entries if e.name == "stats/cases_by_applicant_type"), None)
    if not by_type or not by_type.data:
        return ""
    counts = {r["applicant_type"]: r["cases"] for r in by_type.data}
    total = sum(v for v in counts.values() if v is not None)
    parts = [f"累计办件 <b>{total:,}</b> 件"] + [
        f"{escape(str(k))} <b>{v:,}</b> 件" for k, v in counts.items() if v is not None
    ]
    return '<p class="headline">' + "，".join(parts) + "</p>"


def _dataset_section(entry: PublicEntry) -> str:
    fields = "".join(
        f"<tr><td><code>{escape(f.name)}</code></td><td>{escape(f.description)}</td>"
        f"<td>{escape(f.datatype)}</td></tr>"
        for f in entry.fields
    )
    links = " ".join(
        f'<a class="download" href="{escape(d["url"])}">'
        f"{'Parquet' if d['file'].endswith('.parquet') else 'CSV'} "
        f"({d['bytes']:,} 字节)</a>"
        for d in entry.distributions
    )
    kanon = ""
    if entry.kanon:
        k = entry.kanon
        levels = "，".join(f"{escape(q)}: {escape(v)}" for q, v in k["generalisation"].items())
        kanon = (
            f"<p class='kanon'>k-匿名: 要求 k={k['k']}，实际 k={k['achieved_k']}；"
            f"泛化: {levels or '无准标识符'}；压制 {k['suppressed_rows']:,} 行；"
            f"最高重识别风险 {k['highest_risk']:.3f}，平均 {k['average_risk']:.4f}</p>"
        )
    lineage = "".join(f"<li><code>{escape(line)}</code></li>" for line in entry.lineage)
    return f"""
<section class="dataset" id="{escape(entry.anchor)}" data-name="{escape(entry.name)}">
  <h3>{escape(entry.title)} <small>{escape(entry.title_en)}</small></h3>
  <p>{escape(entry.description)}</p>
  <p class="meta">更新日期 {entry.ds.isoformat()} · {entry.rows:,} 行 ·
     发布者 {escape(entry.publisher[0])} · 更新频率 {escape(entry.update_cycle)}</p>
  <p>下载: {links}</p>
  {kanon}
  <details><summary>字段 ({len(entry.fields)})</summary>
    <table><tr><th>字段</th><th>说明</th><th>类型</th></tr>{fields}</table></details>
  <details class="lineage"><summary>数据来源 (血缘)</summary><ul>{lineage}</ul></details>
</section>"""


def portal_page(entries: list[PublicEntry], ds: date) -> str:
    """The whole page as HTML text (UTF-8)."""
    microdata = [e for e in entries if e.kind == "microdata"]
    statistics = [e for e in entries if e.kind == "statistics"]
    charts = "".join(
        f"<figure><figcaption>{escape(title)}</figcaption>"
        f'<div class="chart" id="{cid}"></div></figure>'
        for cid, (title, _) in CHARTS.items()
    )
    data = json.dumps(chart_data(entries), ensure_ascii=False).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>江门市政府开放数据 · 数字邑门式</title>
<style>
 body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 0 auto;
        max-width: 1100px; padding: 1em; color: #222; }}
 h1 {{ border-bottom: 3px solid #c7000b; padding-bottom: .3em; }}
 .charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr));
           gap: 1em; }}
 figure {{ margin: 0; border: 1px solid #ddd; padding: .5em; }}
 .chart {{ width: 100%; height: 320px; }}
 .dataset {{ border-top: 1px solid #ddd; padding: .5em 0; }}
 .meta, .kanon {{ color: #555; font-size: 90%; }}
 table {{ border-collapse: collapse; font-size: 90%; }}
 td, th {{ border: 1px solid #ddd; padding: 2px 6px; text-align: left; }}
 .headline {{ font-size: 120%; }}
</style>
</head>
<body>
<h1>江门市政府开放数据 · 数字邑门式</h1>
<p>数据日期 {ds.isoformat()}。所有数据均已去标识化: 微观数据不含姓名、证件号码、电话和令牌，
并通过 k-匿名检查; 统计表中小于 k 的单元格已压制。机器可读目录:
<a href="catalog.jsonld">catalog.jsonld (DCAT)</a>。许可: CC BY 4.0。</p>
{_headline(entries)}
<h2>数字邑门式统计</h2>
<div class="charts">{charts}</div>
<h2>微观数据 ({len(microdata)})</h2>
{"".join(_dataset_section(e) for e in microdata)}
<h2>统计表 ({len(statistics)})</h2>
{"".join(_dataset_section(e) for e in statistics)}
<script src="{ASSET_DIR}/{ECHARTS_FILE}"></script>
<script id="chart-data" type="application/json">{data}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var kinds = {{"chart-month": "line", "chart-satisfaction": "pie"}};
  Object.keys(data).forEach(function (id) {{
    var d = data[id], kind = kinds[id] || "bar";
    var chart = echarts.init(document.getElementById(id));
    var option = kind === "pie"
      ? {{ tooltip: {{}}, series: [{{ type: "pie", radius: "65%",
           data: d.x.map(function (x, i) {{ return {{ name: x, value: d.y[i] }}; }}) }}] }}
      : {{ tooltip: {{}}, grid: {{ left: 60, right: 20, bottom: 60 }},
           xAxis: {{ type: "category", data: d.x,
                    axisLabel: {{ rotate: d.x.length > 8 ? 45 : 0 }} }},
           yAxis: {{ type: "value" }}, series: [{{ type: kind, data: d.y }}] }};
    if (!d.x.length) {{ option.title = {{ text: "暂无数据", left: "center", top: "middle" }}; }}
    chart.setOption(option);
  }});
}})();
</script>
</body>
</html>
"""
