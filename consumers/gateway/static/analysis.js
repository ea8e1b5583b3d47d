/* The analysis workspace: a team's KPIs over a range, one KPI in detail (uPlot chart with
   the target and the period before, areas on a map and in a table), the events behind a
   point, exports. Data from /api/analysis/… with the page's ?token= as a Bearer token.
   No build step, nothing from outside: uPlot is vendored under /vendor/uplot/. */
"use strict";
(function () {
  const T = {
    vi: {
      title: "Không gian phân tích dữ liệu",
      team: "Tổ phân tích",
      kpis: "Chỉ tiêu của tổ",
      col_kpi: "Chỉ số", col_value: "Giá trị", col_target: "Mục tiêu", col_share: "Tỷ lệ kỳ đạt",
      col_change: "So với kỳ trước", col_trend: "Xu hướng", col_result: "Kết quả",
      col_time: "Thời điểm", col_source: "Nguồn",
      hint: "Bấm vào một điểm của biểu đồ để xem các sự kiện của điểm đó.",
      map: "Bản đồ theo địa bàn", by_area: "So sánh theo địa bàn",
      ranges: { "24h": "24 giờ", "7d": "7 ngày", "30d": "30 ngày", quarter: "Quý", year: "Năm" },
      met: "Đạt", missed: "Chưa đạt", near: "Gần đạt", nodata: "Không có số liệu",
      levels: ["Thấp", "Trung bình thấp", "Trung bình cao", "Cao"],
      current: "Kỳ này", previous: "Kỳ trước", target: "Mục tiêu",
      no_data: "Chưa có dữ liệu trong khoảng thời gian này.",
      loading: "Đang tải số liệu…",
      loaded: (t) => `Số liệu lúc ${t}`,
      no_token: "Thiếu mã truy cập: mở trang với ?token=… (ioc tokens create --team … --analysis)",
      refused: (c) => `Mã truy cập bị từ chối (${c}). Xin cấp mã mới.`,
      failed: (c) => `Không tải được số liệu (${c}). Thử lại sau.`,
      events: (n, t) => `${n} sự kiện · ${t}`,
      no_areas: "Chỉ số này không tính theo địa bàn.",
      detail_sub: (b, n) => `mỗi điểm: ${b} · ${n} điểm có số liệu`,
      bucket: { "1h": "1 giờ", "1d": "1 ngày" },
      pick: "Chọn một chỉ số ở bảng bên trái",
      leader: (t) => (t ? `· ${t}` : ""),
    },
    en: {
      title: "Data analysis workspace",
      team: "Analysis team",
      kpis: "The team's targets",
      col_kpi: "KPI", col_value: "Value", col_target: "Target", col_share: "Periods on target",
      col_change: "vs previous period", col_trend: "Trend", col_result: "Result",
      col_time: "Time", col_source: "Source",
      hint: "Click a point of the chart to see its events.",
      map: "Map by area", by_area: "Comparison by area",
      ranges: { "24h": "24 h", "7d": "7 days", "30d": "30 days", quarter: "Quarter", year: "Year" },
      met: "Met", missed: "Missed", near: "Near", nodata: "No data",
      levels: ["Low", "Lower middle", "Upper middle", "High"],
      current: "This period", previous: "Previous period", target: "Target",
      no_data: "No data in this period yet.",
      loading: "Loading…",
      loaded: (t) => `Figures as of ${t}`,
      no_token: "No access token: open the page with ?token=… (ioc tokens create --team … --analysis)",
      refused: (c) => `Access token refused (${c}). Ask for a new one.`,
      failed: (c) => `Could not load the figures (${c}). Try again later.`,
      events: (n, t) => `${n} events · ${t}`,
      no_areas: "This KPI is not computed by area.",
      detail_sub: (b, n) => `one point per ${b} · ${n} points with data`,
      bucket: { "1h": "hour", "1d": "day" },
      pick: "Pick a KPI in the table",
      leader: (t) => (t ? `· ${t}` : ""),
    },
  };
  const params = new URLSearchParams(location.search);
  const S = {
    lang: params.get("lang") || localStorage.getItem("ioc.analysis.lang") || "vi",
    token: params.get("token"),
    config: null,
    teams: [],
    team: params.get("team"),
    range: params.get("range") || "24h",
    summary: null,
    kpi: params.get("kpi"),
    detail: null,
    chart: null,
    status: null,
    loads: 0,
  };
  window.__analysis = S;
  const $ = (id) => document.getElementById(id);
  const L = () => T[S.lang] || T.vi;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const name = (o) => (S.lang === "vi" ? o.name_vi : o.name_en);

  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const abs = Math.abs(v);
    const d = digits !== undefined ? digits : abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
    return v.toLocaleString(S.lang === "vi" ? "vi-VN" : "en-US", { maximumFractionDigits: d });
  }
  const zone = () => (S.config && S.config.province.timezone) || "Asia/Ho_Chi_Minh";
  function when(t) {
    return new Intl.DateTimeFormat("en-GB", {  // 22:05, 03/12 in either language
      timeZone: zone(), hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", hourCycle: "h23",
    }).format(new Date(t * 1000));
  }
  // The status line is kept as a function of the language, so that switching it rewrites the line.
  function status(text, error) {
    S.status = { text, error: !!error };
    renderStatus();
  }
  function renderStatus() {
    const el = $("status");
    el.textContent = S.status ? S.status.text(L()) : "";
    el.classList.toggle("error", !!(S.status && S.status.error));
  }

  // -- series as the charts draw them

  const WIDTH = { "15m": 900, "1h": 3600, "1d": 86400 };
  // A number that can be drawn, or null: one bad value is a gap, never NaN on the screen.
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const points = (series) => (series || []).filter((p) => Array.isArray(p) && num(p[0]) !== null && num(p[1]) !== null);

  /** The value axis for `values`: padded, never empty (one value or all equal), from 0 when nothing is negative. */
  function valueRange(values) {
    const finite = values.filter((v) => num(v) !== null);
    if (!finite.length) return [0, 1];
    const lo = Math.min(...finite);
    const hi = Math.max(...finite);
    const pad = hi - lo < 1e-9 ? Math.max(1, Math.abs(hi) * 0.1) : (hi - lo) * 0.08;
    return [lo >= 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad];
  }

  /** The series' own spacing: its closest two points, never under the bucket (a daily KPI in
      hourly buckets has a point a day, and that is no gap). A gap is more than 1.5 of it. */
  function cadence(ts, bucket) {
    let step = Infinity;
    for (let i = 1; i < ts.length; i++) if (ts[i] > ts[i - 1]) step = Math.min(step, ts[i] - ts[i - 1]);
    return Math.max(WIDTH[bucket] || 3600, isFinite(step) ? step : 0);
  }

  /** Indices of points with no neighbour: a line cannot show them, a dot must. */
  function isolated(ys) {
    const out = [];
    for (let i = 0; i < ys.length; i++) {
      if (ys[i] !== null && (i === 0 || ys[i - 1] === null) && (i === ys.length - 1 || ys[i + 1] === null)) out.push(i);
    }
    return out;
  }

  let tickParts = null;
  /** Time-axis labels for uPlot's splits: hours with the date where the day changes, days, or months with the year. */
  function tickLabels(splits, incr) {
    if (!tickParts || tickParts.resolvedOptions().timeZone !== zone()) {
      tickParts = new Intl.DateTimeFormat("en-GB", {
        timeZone: zone(), year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      });
    }
    const parts = (t) => Object.fromEntries(tickParts.formatToParts(new Date(t * 1000)).map((p) => [p.type, p.value]));
    let prev = null;
    return splits.map((t, i) => {
      const p = parts(t);
      let label;
      if (incr >= 28 * 86400) label = `${p.month}/${p.year}`;
      else if (incr >= 86400) label = `${p.day}/${p.month}${i === 0 || prev.year !== p.year ? "\n" + p.year : ""}`;
      else {
        const dated = i === 0 || i === splits.length - 1 || incr >= 6 * 3600 || prev.day !== p.day || prev.month !== p.month;
        label = `${p.hour}:${p.minute}${dated ? `\n${p.day}/${p.month}` : ""}`;
      }
      prev = p;
      return label;
    });
  }

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${S.token}` } });
    if (!r.ok) {
      let code = String(r.status);
      try { code = (await r.json()).error || code; } catch (e) { /* not JSON */ }
      const err = new Error(code);
      err.status = r.status;
      throw err;
    }
    return r;
  }
  const json = async (path) => (await api(path)).json();

  function fail(err) {
    console.error(err);
    status((l) => (err.status === 401 ? l.refused(err.message) : l.failed(err.message)), true);
  }

  // -- the team's table

  function spark(k) {
    const pts = points(k.series);
    if (!pts.length) return '<span class="muted">–</span>';
    const vals = pts.map((p) => p[1]);
    if (k.target) vals.push(k.target.value);
    const [lo, hi] = valueRange(vals);
    const t0 = num(k.from) !== null ? k.from : pts[0][0];
    const span = Math.max(1, (num(k.to) !== null ? k.to : pts[pts.length - 1][0]) - t0);
    const gap = cadence(pts.map((p) => p[0]), k.bucket) * 1.5;
    const x = (t) => Math.min(100, Math.max(0, ((t - t0) / span) * 100)).toFixed(1);
    const y = (v) => (28 - ((v - lo) / (hi - lo)) * 26).toFixed(1);
    const d = pts.map((p, i) => `${i && p[0] - pts[i - 1][0] <= gap ? "L" : "M"}${x(p[0])},${y(p[1])}`).join("");
    const alone = pts.filter((p, i) => (i === 0 || p[0] - pts[i - 1][0] > gap) && (i === pts.length - 1 || pts[i + 1][0] - p[0] > gap));
    const dots = alone.map((p) => `M${x(p[0])},${y(p[1])}l0,0`).join("");
    const tl = k.target ? `<line x1="0" x2="100" y1="${y(k.target.value)}" y2="${y(k.target.value)}"/>` : "";
    return `<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true">${tl}<path d="${d}"/>${dots ? `<path class="dot" d="${dots}"/>` : ""}</svg>`;
  }
  function targetText(k) {
    if (!k.target) return "–";
    return `${k.target.direction === "at_most" ? "≤" : "≥"} ${fmt(k.target.value)}`;
  }
  function chip(met) {
    if (met === null || met === undefined) return "";
    return `<span class="chip ${met ? "met" : "missed"}">${met ? "✓ " + L().met : "✗ " + L().missed}</span>`;
  }
  function change(k) {
    const c = num(k.change);
    if (c === null) return "–";
    const arrow = c > 0 ? "▲" : c < 0 ? "▼" : "=";
    const pct = num(k.change_pct);
    if (pct === null) return `${arrow} ${fmt(c)}`;
    return `${arrow} ${pct > 0 ? "+" : ""}${fmt(pct, 1)}%`;
  }

  function renderTable() {
    const s = S.summary;
    if (!s) return;
    const sectors = Object.fromEntries(S.config.sectors.map((x) => [x.id, x]));
    const rows = [];
    let last = null;
    for (const k of s.kpis) {
      if (k.sector !== last) {
        last = k.sector;
        rows.push(`<tr class="sector-row"><th colspan="6" scope="rowgroup">${esc(name(sectors[k.sector]))}</th></tr>`);
      }
      // data-label: the column's name, shown above each cell when a narrow screen stacks the row.
      const share = num(k.on_target_share);
      rows.push(`<tr data-kpi="${esc(k.kpi)}" data-value="${num(k.value) === null ? "" : k.value}" class="${k.kpi === S.kpi ? "selected" : ""}">
        <td><button type="button" class="kpi-name" data-kpi="${esc(k.kpi)}">${esc(name(k))}</button></td>
        <td class="value" data-label="${esc(L().col_value)}">${fmt(k.value)} <span class="muted">${esc(k.unit)}</span></td>
        <td data-label="${esc(L().col_target)}">${esc(targetText(k))} ${chip(k.met)}</td>
        <td data-label="${esc(L().col_share)}">${share === null ? "–" : fmt(share * 100, 0) + "%"}</td>
        <td data-label="${esc(L().col_change)}">${esc(change(k))}</td>
        <td data-label="${esc(L().col_trend)}">${spark(k)}</td></tr>`);
    }
    $("kpi-rows").innerHTML = rows.join("");
    const team = s.team;
    $("leader").textContent = L().leader(S.lang === "vi" ? team.leader_vi : team.leader_en);
  }

  // -- one KPI in detail

  /** The chart's columns: the period's bucket starts, a null row where a bucket is missing so lines break. */
  function chartData(d) {
    const rows = new Map();
    for (const [t, v] of points(d.series)) rows.set(t, [v, null]);
    for (const [t, v] of points(d.previous_series)) rows.set(t, [rows.has(t) ? rows.get(t)[0] : null, v]);
    const times = [...rows.keys()].sort((a, b) => a - b);
    const width = cadence(times, d.bucket);
    const xs = [];
    const cur = [];
    const prev = [];
    for (const t of times) {
      if (xs.length && t - xs[xs.length - 1] > width * 1.5) { xs.push(xs[xs.length - 1] + width); cur.push(null); prev.push(null); }
      xs.push(t);
      cur.push(rows.get(t)[0]);
      prev.push(rows.get(t)[1]);
    }
    return [xs, cur, prev];
  }

  /** The target as a dashed line across the whole plot, labelled at its right end. */
  function drawTarget(u, target) {
    const pr = uPlot.pxRatio;
    const { left, top, width, height } = u.bbox;
    const y = Math.round(u.valToPos(target.value, "y", true));
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#b3261e";
    ctx.fillStyle = "#b3261e";
    ctx.lineWidth = 1.5 * pr;
    ctx.setLineDash([6 * pr, 4 * pr]);
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + width, y);
    ctx.stroke();
    ctx.font = `bold ${12 * pr}px "DejaVu Sans", "Noto Sans", Arial, sans-serif`;
    ctx.textAlign = "right";
    const above = y - 16 * pr > top;
    ctx.textBaseline = above ? "bottom" : "top";
    ctx.fillText(`${L().target} ${targetText({ target })}`, left + width - 4 * pr, above ? y - 3 * pr : Math.min(y + 3 * pr, top + height - 14 * pr));
    ctx.restore();
  }

  function renderChart(d) {
    const el = $("chart");
    if (S.chart) { S.chart.destroy(); S.chart = null; }
    S.xTicks = null;
    el.innerHTML = "";
    const data = chartData(d);
    const [xs, cur, prev] = data;
    if (!cur.some((v) => v !== null) && !prev.some((v) => v !== null)) {
      el.innerHTML = `<p class="empty">${esc(L().no_data)}</p>`;
      return;
    }
    const target = d.target && num(d.target.value) !== null ? d.target : null;
    // The axis is the period the API answered for, whatever the points cover (one point, or none yet).
    const to = num(d.to) !== null ? d.to : Date.now() / 1000;
    const from = num(d.from) !== null && d.from < to ? d.from : Math.min(xs[0], to - 86400);
    const yRange = valueRange([...cur, ...prev, target ? target.value : null]);
    const dots = (u, si, shown) => (shown ? null : isolated(u.data[si]));
    const value = (u, v) => (num(v) === null ? "–" : `${fmt(v)} ${d.unit}`);
    const series = [
      { label: L().col_time, value: (u, v) => (num(v) === null ? "–" : when(v)) },
      { label: L().current, stroke: "#0b57d0", width: 2, value, points: { size: 7, fill: "#0b57d0", filter: dots } },
      { label: L().previous, stroke: "#8a8f98", width: 1.5, dash: [6, 4], value, points: { size: 5, filter: dots } },
    ];
    if (target) {
      // In the legend only: the line itself is drawn across the plot by drawTarget.
      data.push(xs.map(() => null));
      series.push({ label: L().target, stroke: "#b3261e", width: 1.5, dash: [3, 3], points: { show: false }, value: () => targetText(d) });
    }
    const narrow = el.clientWidth < 500;
    const opts = {
      width: Math.max(240, el.clientWidth || 600),
      height: narrow ? 260 : 320,
      series,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), zone()),
      scales: {
        x: { time: true, range: () => [from, to] },
        y: { range: () => yRange },
      },
      axes: [
        {
          space: narrow ? 55 : 70,
          size: 56,
          values: (u, splits, ai, space, incr) => {
            const labels = tickLabels(splits, incr);
            // The x ticks last drawn, as [time, label] (read by the browser tests).
            S.xTicks = splits.map((t, i) => [t, labels[i]]);
            return labels;
          },
        },
        {
          label: d.unit,
          // Wide enough for the longest label (1.000.000 and more), about 7 px a character.
          size: (u, values) => Math.max(narrow ? 44 : 56, 24 + 7 * Math.max(0, ...(values || []).map((v) => String(v).length))),
          values: (u, splits) => splits.map((v) => fmt(v)),
        },
      ],
      cursor: { points: { size: 8 } },
      legend: { live: true },
      hooks: target ? { draw: [(u) => drawTarget(u, target)] } : {},
    };
    S.chart = new uPlot(opts, data, el);
    el.setAttribute("aria-label", `${name(d)} · ${d.unit}`);
    S.chart.over.addEventListener("click", () => {
      const idx = S.chart.cursor.idx;
      if (idx !== null && idx !== undefined && cur[idx] !== null) drill(xs[idx]);
    });
  }

  function renderMap(d) {
    const block = $("areas-block");
    const map = S.config.map;
    const colHead = S.lang === "vi" ? map.level.name_vi : map.level.name_en;
    $("area-col").textContent = colHead;
    $("event-area-col").textContent = colHead;
    if (!d.areas) {
      $("map").innerHTML = `<p class="muted">${esc(L().no_areas)}</p>`;
      $("map").style.gridTemplateColumns = "";
      $("map").style.setProperty("--columns", 1);
      $("area-rows").innerHTML = "";
      $("map-legend").innerHTML = "";
      return;
    }
    block.hidden = false;
    const byCode = Object.fromEntries(d.areas.map((a) => [a.code, a]));
    $("map").style.gridTemplateColumns = `repeat(${map.columns}, auto)`;
    $("map").style.setProperty("--columns", map.columns);
    const label = (st) => (st.startsWith("level") ? L().levels[Number(st.slice(5))] : L()[st]) || st;
    $("map").innerHTML = map.areas.map((a) => {
      const f = byCode[a.code] || { status: "nodata", value: null };
      return `<div class="tile ${f.status}" role="listitem" data-area="${esc(a.code)}" data-status="${f.status}"
        style="grid-row:${a.row + 1};grid-column:${a.column + 1}" title="${esc(name(a))}: ${esc(label(f.status))}">
        <span>${esc(S.lang === "vi" ? a.short_vi : a.short_en)}</span><b>${fmt(f.value)}</b></div>`;
    }).join("");
    const shown = [...new Set(d.areas.map((a) => a.status))];
    $("map-legend").innerHTML = shown.map((st) => `<li><i class="tile ${st}" style="width:.8rem;height:.8rem;padding:0"></i>${esc(label(st))}</li>`).join("");
    const names = Object.fromEntries(map.areas.map((a) => [a.code, name(a)]));
    $("area-rows").innerHTML = d.areas
      .slice()
      .sort((a, b) => (b.value ?? -Infinity) - (a.value ?? -Infinity))
      .map((a) => `<tr data-area="${esc(a.code)}"><td>${esc(names[a.code] || a.code)}</td><td class="value">${fmt(a.value)}</td><td>${chip(a.met)}</td></tr>`)
      .join("");
  }

  function renderDetail() {
    const d = S.detail;
    if (!d) {
      $("detail-title").textContent = L().pick;
      return;
    }
    $("detail-title").textContent = `${name(d)} (${d.unit})`;
    $("detail-sub").textContent = `${L().detail_sub(L().bucket[d.bucket] || d.bucket, points(d.series).length)} · ${targetText(d)}`;
    renderChart(d);
    renderMap(d);
  }

  async function drill(start) {
    try {
      const q = new URLSearchParams({ kpi: S.kpi, range: S.range, start: String(start) });
      const r = await json(`/api/analysis/events?${q}`);
      $("events").hidden = false;
      $("events-title").textContent = L().events(r.events.length, when(r.start));
      const areas = Object.fromEntries(S.config.map.areas.map((a) => [a.code, name(a)]));
      $("event-rows").innerHTML = r.events.map((e) => `<tr><td>${esc(when(e.occurred_at))}</td><td>${esc(e.source)}</td>
        <td>${esc(areas[e.district] || e.district || "–")}</td><td class="value">${fmt(e.value)}</td><td class="muted">${esc(e.kafka)}</td></tr>`).join("");
    } catch (err) {
      fail(err);
    }
  }

  // -- loading

  async function loadSummary() {
    status((l) => l.loading);
    const load = ++S.loads;
    try {
      const q = new URLSearchParams({ team: S.team, range: S.range });
      const s = await json(`/api/analysis/summary?${q}`);
      if (load !== S.loads) return;
      S.summary = s;
      if (!S.kpi || !s.kpis.some((k) => k.kpi === S.kpi)) {
        const first = s.kpis.find((k) => k.target) || s.kpis[0];
        S.kpi = first ? first.kpi : null;
      }
      renderTable();
      await loadDetail();
      status((l) => l.loaded(when(s.as_of)));
    } catch (err) {
      fail(err);
    }
  }

  async function loadDetail() {
    if (!S.kpi) return;
    const q = new URLSearchParams({ kpi: S.kpi, range: S.range });
    S.detail = await json(`/api/analysis/kpi?${q}`);
    $("events").hidden = true;
    renderTable();
    renderDetail();
  }

  async function exportAs(format) {
    try {
      const q = new URLSearchParams({ team: S.team, range: S.range, format });
      if (S.kpi) q.set("kpi", S.kpi);
      const r = await api(`/api/analysis/export?${q}`);
      const blob = await r.blob();
      const disposition = r.headers.get("Content-Disposition") || "";
      const m = disposition.match(/filename="([^"]+)"/);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = m ? m[1] : `ioc.${format}`;
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (err) {
      fail(err);
    }
  }

  function renderChrome() {
    document.documentElement.lang = S.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const text = L()[el.dataset.i18n];
      if (typeof text === "string") el.textContent = text;
    }
    document.title = `IOC · ${L().title}`;
    if (S.config) $("province").textContent = `IOC ${name(S.config.province)}`;
    $("ranges").innerHTML = (S.config ? S.config.ranges : []).map((r) =>
      `<button type="button" data-range="${r}" aria-pressed="${r === S.range}">${esc(L().ranges[r] || r)}</button>`).join("");
    $("team").innerHTML = S.teams.map((t) => `<option value="${esc(t.id)}"${t.id === S.team ? " selected" : ""}>${esc(name(t))}</option>`).join("");
  }

  $("lang").addEventListener("click", () => {
    S.lang = S.lang === "vi" ? "en" : "vi";
    localStorage.setItem("ioc.analysis.lang", S.lang);
    renderChrome();
    renderStatus();
    renderTable();
    renderDetail();
  });
  $("ranges").addEventListener("click", (ev) => {
    const r = ev.target.dataset && ev.target.dataset.range;
    if (r && r !== S.range) {
      S.range = r;
      renderChrome();
      loadSummary();
    }
  });
  $("team").addEventListener("change", (ev) => {
    S.team = ev.target.value;
    S.kpi = null;
    loadSummary();
  });
  $("kpi-rows").addEventListener("click", (ev) => {
    const row = ev.target.closest("tr[data-kpi]");
    if (row && row.dataset.kpi !== S.kpi) {
      S.kpi = row.dataset.kpi;
      loadDetail().catch(fail);
    }
  });
  $("export-csv").addEventListener("click", () => exportAs("csv"));
  $("export-xlsx").addEventListener("click", () => exportAs("xlsx"));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => S.detail && renderChart(S.detail), 200);
  });

  async function start() {
    renderChrome();
    if (!S.token) {
      status((l) => l.no_token, true);
      return;
    }
    try {
      S.config = await (await fetch("/analysis/config.json")).json();
      const t = await json("/api/analysis/teams");
      S.teams = t.teams;
      if (!S.team || !S.teams.some((x) => x.id === S.team)) S.team = S.teams.length ? S.teams[0].id : null;
      renderChrome();
      if (S.team) await loadSummary();
    } catch (err) {
      fail(err);
    }
  }
  start();
})();
