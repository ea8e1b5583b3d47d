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
  function when(t) {
    const tz = (S.config && S.config.province.timezone) || "Asia/Ho_Chi_Minh";
    return new Intl.DateTimeFormat("en-GB", {  // 22:05, 03/12 in either language
      timeZone: tz, hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", hourCycle: "h23",
    }).format(new Date(t * 1000));
  }
  function status(text, error) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", !!error);
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
    status(err.status === 401 ? L().refused(err.message) : L().failed(err.message), true);
  }

  // -- the team's table

  function spark(series, target) {
    if (!series || series.length < 2) return '<svg class="spark" aria-hidden="true"></svg>';
    const vals = series.map((p) => p[1]);
    let lo = Math.min(...vals);
    let hi = Math.max(...vals);
    if (target) { lo = Math.min(lo, target.value); hi = Math.max(hi, target.value); }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const t0 = series[0][0];
    const span = Math.max(1, series[series.length - 1][0] - t0);
    const x = (t) => ((t - t0) / span) * 100;
    const y = (v) => 28 - ((v - lo) / (hi - lo)) * 26;
    const d = series.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    const tl = target ? `<line x1="0" x2="100" y1="${y(target.value).toFixed(1)}" y2="${y(target.value).toFixed(1)}"/>` : "";
    return `<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true">${tl}<path d="${d}"/></svg>`;
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
    if (k.change === null || k.change === undefined) return "–";
    const arrow = k.change > 0 ? "▲" : k.change < 0 ? "▼" : "=";
    if (k.change_pct === null) return `${arrow} ${fmt(k.change)}`;
    return `${arrow} ${k.change_pct > 0 ? "+" : ""}${fmt(k.change_pct, 1)}%`;
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
      rows.push(`<tr data-kpi="${esc(k.kpi)}" data-value="${k.value === null ? "" : k.value}" class="${k.kpi === S.kpi ? "selected" : ""}">
        <td><button type="button" class="kpi-name" data-kpi="${esc(k.kpi)}">${esc(name(k))}</button></td>
        <td class="value">${fmt(k.value)} <span class="muted">${esc(k.unit)}</span></td>
        <td>${esc(targetText(k))} ${chip(k.met)}</td>
        <td>${k.on_target_share === null ? "–" : fmt(k.on_target_share * 100, 0) + "%"}</td>
        <td>${esc(change(k))}</td>
        <td>${spark(k.series, k.target)}</td></tr>`);
    }
    $("kpi-rows").innerHTML = rows.join("");
    const team = s.team;
    $("leader").textContent = L().leader(S.lang === "vi" ? team.leader_vi : team.leader_en);
  }

  // -- one KPI in detail

  function renderChart(d) {
    const el = $("chart");
    if (S.chart) { S.chart.destroy(); S.chart = null; }
    el.innerHTML = "";
    const xs = d.series.map((p) => p[0]);
    const prev = new Map(d.previous_series.map((p) => [p[0], p[1]]));
    const data = [xs, d.series.map((p) => p[1]), xs.map((t) => (prev.has(t) ? prev.get(t) : null))];
    const series = [
      { label: L().col_time, value: (u, v) => (v === null || v === undefined ? "–" : when(v)) },
      { label: L().current, stroke: "#0b57d0", width: 2, points: { size: 6 } },
      { label: L().previous, stroke: "#8a8f98", width: 1.5, dash: [6, 4] },
    ];
    if (d.target) {
      data.push(xs.map(() => d.target.value));
      series.push({ label: L().target, stroke: "#b3261e", width: 1.5, dash: [3, 3], points: { show: false } });
    }
    const width = Math.max(320, el.clientWidth || 600);
    const tz = S.config.province.timezone;
    const daily = d.bucket === "1d";
    const tick = new Intl.DateTimeFormat("en-GB", daily
      ? { timeZone: tz, day: "2-digit", month: "2-digit" }
      : { timeZone: tz, hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", hourCycle: "h23" });
    const opts = {
      width, height: 320, series,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
      axes: [
        { values: (u, splits) => splits.map((s) => tick.format(new Date(s * 1000))), space: 90 },
        { label: d.unit, size: 60 },
      ],
      cursor: { points: { size: 8 } },
      legend: { live: true },
    };
    S.chart = new uPlot(opts, data, el);
    el.setAttribute("aria-label", `${name(d)} · ${d.unit}`);
    S.chart.over.addEventListener("click", () => {
      const idx = S.chart.cursor.idx;
      if (idx !== null && idx !== undefined) drill(xs[idx]);
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
      $("area-rows").innerHTML = "";
      $("map-legend").innerHTML = "";
      return;
    }
    block.hidden = false;
    const byCode = Object.fromEntries(d.areas.map((a) => [a.code, a]));
    $("map").style.gridTemplateColumns = `repeat(${map.columns}, auto)`;
    const label = (st) => (st.startsWith("level") ? L().levels[Number(st.slice(5))] : L()[st]);
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
    $("detail-sub").textContent = `${L().detail_sub(L().bucket[d.bucket] || d.bucket, d.series.length)} · ${targetText(d)}`;
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
    status(L().loading);
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
      status(L().loaded(when(s.as_of)));
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
      status(L().no_token, true);
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
