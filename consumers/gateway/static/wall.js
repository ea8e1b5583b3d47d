/* The video wall: connects to /ws with the page's ?token=, subscribes to every KPI channel,
   the alerts and the freshness records, and redraws at most a few times a second.
   Protocol (README, "The WebSocket gateway"): snapshot, then updates with a per-channel
   sequence; a gap asks for a resync; on reconnect it resumes from the last sequence seen.
   No build step, no external resources. */
"use strict";
(function () {
  const SEVERITY_ICON = { emergency: "⬢", critical: "▲", warning: "◆", info: "●" };
  const STATE_ORDER = { firing: 0, acknowledged: 1, pending: 2 };
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const MAX_TICKER = 6;
  const GAP_SHOWN_S = 3600;

  const T = {
    vi: {
      org: "Trung tâm Giám sát, điều hành thông minh",
      alerts: "Cảnh báo đang mở",
      map: "Cảnh báo theo địa bàn",
      area_ok: "✓",
      area_pending: "◔ chờ xác nhận",
      no_alerts: "✓ Không có cảnh báo nào đang mở",
      legend: "Tạm tính: cửa sổ chưa đóng · Chốt: số liệu cuối của cửa sổ · ≈: ước tính từ các huyện",
      lost: (t) => `⚠ Mất kết nối từ ${t}`,
      retry: (n, s) => `đang kết nối lại (lần ${n}, sau ${s} giây) · số liệu hiển thị là số liệu cuối cùng nhận được`,
      degraded: (t) => `⚠ Mất kết nối hệ thống dữ liệu từ ${t}`,
      degraded_sub: (what) => `số liệu hiển thị là số liệu cuối cùng nhận được, không phải số liệu hiện tại (${what})`,
      dependency: { broker: "luồng dữ liệu sự kiện", database: "cơ sở dữ liệu" },
      refused: (r) => `⛔ Mã truy cập bị từ chối (${r}). Xin cấp mã mới: ioc tokens create --role wall`,
      no_token: "⛔ Thiếu mã truy cập. Mở trang với ?token=… (ioc tokens create --role wall --url)",
      online: "● Đang kết nối trực tiếp",
      offline: "○ Mất kết nối",
      connecting: "○ Đang kết nối…",
      stale: (d) => `◷ dữ liệu cũ ${d}`,
      no_data: "◌ chưa có dữ liệu",
      quiet: "chưa ghi nhận sự kiện",
      gap: (a, b) => `⚠ thiếu dữ liệu ${a}–${b}`,
      overflow: "tràn số",
      status_title: { ok: "Bình thường", stale: "Dữ liệu cũ", alerts: "Cảnh báo đang mở" },
      sources: "Nguồn dữ liệu",
      sources_live: (n, total) => `● <b>${n}</b>/${total} nguồn đang gửi đúng hạn`,
      sources_stale: (n) => `◷ <b>${n}</b> nguồn chậm gửi:`,
      sources_all_ok: "✓ Không có nguồn nào chậm gửi",
      latest: (t) => `Số liệu mới nhất lúc ${t}`,
      normal: "✓",
      n_alerts: (n) => `${n}`,
      provisional: "tạm tính",
      final: "chốt",
      target: (op, v) => `mục tiêu ${op} ${v}`,
      met: "✓ đạt",
      missed: "✗ chưa đạt",
      just_now: "vừa xong",
      min: (m) => `${m} phút`,
      hour: (h, m) => (m ? `${h} giờ ${m} phút` : `${h} giờ`),
      day: (d, h) => (h ? `${d} ngày ${h} giờ` : `${d} ngày`),
      ack: "Tiếp nhận",
      acked_by: (who) => `bởi ${who}`,
      assignee: (who) => `giao: ${who}`,
      level: (n) => `leo thang cấp ${n}`,
      more: (n) => `+ ${n} cảnh báo khác`,
      stale_sectors: (n) => `◷ <b>${n}</b> lĩnh vực dữ liệu cũ`,
      sev_count: (icon, n, label) => `${icon} <b>${n}</b> ${label}`,
      who: (name, role) => `${name} · ${{ wall: "màn hình tường", officer: "cán bộ trực", leader: "lãnh đạo" }[role] || role}`,
      updated: (t) => `cập nhật ${t}`,
    },
    en: {
      org: "Intelligent Operations Center",
      alerts: "Open alerts",
      map: "Alerts by area",
      area_ok: "✓",
      area_pending: "◔ pending",
      no_alerts: "✓ No open alerts",
      legend: "Provisional: window still open · Final: the window's closing figure · ≈: estimated from districts",
      lost: (t) => `⚠ Connection lost since ${t}`,
      retry: (n, s) => `reconnecting (attempt ${n}, in ${s} s) · figures shown are the last received`,
      degraded: (t) => `⚠ Data systems unreachable since ${t}`,
      degraded_sub: (what) => `figures shown are the last received, not current ones (${what})`,
      dependency: { broker: "event stream", database: "database" },
      refused: (r) => `⛔ Access token refused (${r}). Ask for a new one: ioc tokens create --role wall`,
      no_token: "⛔ No access token. Open the page with ?token=… (ioc tokens create --role wall --url)",
      online: "● Live",
      offline: "○ Disconnected",
      connecting: "○ Connecting…",
      stale: (d) => `◷ stale data, ${d}`,
      gap: (a, b) => `⚠ missing data ${a}–${b}`,
      overflow: "overflow",
      no_data: "◌ no data yet",
      quiet: "no events yet",
      status_title: { ok: "Normal", stale: "Stale data", alerts: "Open alerts" },
      sources: "Data sources",
      sources_live: (n, total) => `● <b>${n}</b>/${total} sources sending on time`,
      sources_stale: (n) => `◷ <b>${n}</b> source${n === 1 ? "" : "s"} late:`,
      sources_all_ok: "✓ No source is late",
      latest: (t) => `Latest figures at ${t}`,
      normal: "✓",
      n_alerts: (n) => `${n}`,
      provisional: "provisional",
      final: "final",
      target: (op, v) => `target ${op} ${v}`,
      met: "✓ met",
      missed: "✗ missed",
      just_now: "just now",
      min: (m) => `${m} min`,
      hour: (h, m) => (m ? `${h} h ${m} min` : `${h} h`),
      day: (d, h) => (h ? `${d} d ${h} h` : `${d} d`),
      ack: "Acknowledge",
      acked_by: (who) => `by ${who}`,
      assignee: (who) => `assigned: ${who}`,
      level: (n) => `escalated, level ${n}`,
      more: (n) => `+ ${n} more alert${n === 1 ? "" : "s"}`,
      stale_sectors: (n) => `◷ <b>${n}</b> sector${n === 1 ? "" : "s"} with stale data`,
      sev_count: (icon, n, label) => `${icon} <b>${n}</b> ${label}`,
      who: (name, role) => `${name} · ${{ wall: "wall screen", officer: "duty officer", leader: "leader" }[role] || role}`,
      updated: (t) => `updated ${t}`,
    },
  };

  const params = new URLSearchParams(location.search);
  const PAGE_ID = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  const S = {
    config: null,
    lang: params.get("lang") || localStorage.getItem("ioc.wall.lang") || "vi",
    token: params.get("token"),
    ws: null,
    epoch: null,
    heartbeat: 10,
    seqs: {},
    resyncing: new Set(),
    series: new Map(), // series key -> {point, spark: [[t, v]…]}
    alerts: new Map(), // fingerprint -> open alert transition
    fresh: new Map(), // record key -> freshness / sector_seen record
    hello: null,
    connected: false,
    lostAt: null,
    degraded: null, // {since, down} while the gateway says its broker or database is down
    attempt: 0,
    retryAt: 0,
    fatal: null,
    lastMessageAt: 0,
    renderTimer: null,
    requests: 0,
  };
  window.__wall = S; // for the browser test and for curious operators

  const $ = (id) => document.getElementById(id);
  const esc = (s) =>
    String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const t = () => T[S.lang] || T.vi;
  const nowS = () => Date.now() / 1000;

  // -- formatting

  function fmtNumber(value, unit) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    const abs = Math.abs(value);
    const digits = abs >= 1000 || unit === "ca" || unit === "vụ" ? 0 : abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
    return value.toLocaleString(S.lang === "vi" ? "vi-VN" : "en-US", { maximumFractionDigits: digits });
  }

  function fmtDuration(seconds) {
    const L = t();
    const m = Math.floor(Math.max(0, seconds) / 60);
    if (m < 1) return L.just_now;
    if (m < 60) return L.min(m);
    const h = Math.floor(m / 60);
    if (h < 24) return L.hour(h, m % 60);
    return L.day(Math.floor(h / 24), h % 24);
  }

  function fmtHourMinute(date) {
    const tz = (S.config && S.config.province.timezone) || "Asia/Ho_Chi_Minh";
    return new Intl.DateTimeFormat("en-GB", { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);
  }

  function fmtClock(date, withDate) {
    const tz = (S.config && S.config.province.timezone) || "Asia/Ho_Chi_Minh";
    const locale = S.lang === "vi" ? "vi-VN" : "en-GB";
    const time = new Intl.DateTimeFormat("en-GB", {
      timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }).format(date);
    if (!withDate) return time;
    const day = new Intl.DateTimeFormat(locale, {
      timeZone: tz, weekday: "long", day: "2-digit", month: "2-digit", year: "numeric",
    }).format(date);
    return [time, day];
  }

  // -- applying messages

  function newer(a, b) {
    return a.window_start > b.window_start || (a.window_start === b.window_start && a.revision >= b.revision);
  }

  function pushSpark(entry, at, value) {
    if (value === null || value === undefined || !isFinite(value)) return;
    const spark = entry.spark;
    const last = spark[spark.length - 1];
    if (last && Math.floor(last[0] / 60) === Math.floor(at / 60)) last.splice(0, 2, at, value);
    else if (!last || at > last[0]) spark.push([at, value]);
    const horizon = nowS() - 3600;
    while (spark.length && spark[0][0] < horizon) spark.shift();
  }

  function applyKpi(item) {
    if (item.kind !== "kpi") return;
    const entry = S.series.get(item.series);
    if (item.spark) {
      const point = Object.assign({}, item);
      delete point.spark;
      S.series.set(item.series, { point, spark: item.spark.map((s) => s.slice()) });
      return;
    }
    if (!entry) {
      S.series.set(item.series, { point: item, spark: [] });
      pushSpark(S.series.get(item.series), item.emitted_at || item.window_end, item.value);
    } else if (newer(item, entry.point)) {
      entry.point = item;
      pushSpark(entry, item.emitted_at || item.window_end, item.value);
    }
  }

  function applyItem(channel, item) {
    const kind = channel.split(":")[0];
    if (kind === "kpi") applyKpi(item);
    else if (kind === "alerts") {
      if (item.state === "resolved") S.alerts.delete(item.fingerprint);
      else S.alerts.set(item.fingerprint, item);
    } else if (kind === "freshness") {
      const key = item.kind === "sector_seen" ? `sector|${item.sector}` : `freshness|${item.source}`;
      S.fresh.set(key, item);
    }
  }

  function clearChannel(channel) {
    const [kind, sector] = channel.split(":");
    const inScope = (s) => !sector || s === sector;
    if (kind === "kpi") {
      for (const [key, entry] of S.series) if (entry.point.sector === sector) S.series.delete(key);
    } else if (kind === "alerts") {
      for (const [key, a] of S.alerts) if (inScope(a.labels.sector)) S.alerts.delete(key);
    } else if (kind === "freshness") {
      for (const [key, r] of S.fresh) if (inScope(r.sector)) S.fresh.delete(key);
    }
  }

  function onMessage(m) {
    S.lastMessageAt = Date.now();
    switch (m.type) {
      case "hello": {
        S.hello = m;
        S.heartbeat = m.heartbeat || 10;
        S.connected = true;
        S.lostAt = null;
        S.degraded = null; // a `status` follows the hello when the gateway is degraded
        S.attempt = 0;
        if (S.epoch && Object.keys(S.seqs).length) {
          send({ type: "resume", epoch: S.epoch, channels: S.seqs });
        } else {
          send({ type: "subscribe", channels: ["kpi:*", "alerts", "freshness"] });
        }
        S.epoch = m.epoch;
        break;
      }
      case "snapshot":
      case "resync": {
        if (m.type === "snapshot" || !m.partial) clearChannel(m.channel);
        for (const item of m.items) applyItem(m.channel, item);
        S.seqs[m.channel] = m.seq;
        S.epoch = m.epoch || S.epoch;
        S.resyncing.delete(m.channel);
        break;
      }
      case "update": {
        const seen = S.seqs[m.channel];
        if (seen === undefined || S.resyncing.has(m.channel) || m.seq <= seen) break;
        if (m.from !== seen + 1) {
          S.resyncing.add(m.channel);
          send({ type: "resync", channel: m.channel });
          break;
        }
        for (const item of m.items) applyItem(m.channel, item);
        S.seqs[m.channel] = m.seq;
        break;
      }
      case "status":
        S.degraded = m.degraded ? { since: m.since, down: (m.down || []).map((d) => d.dependency) } : null;
        break;
      case "error":
        console.warn("gateway error", m.code, m.message);
        break;
      default:
        break;
    }
    scheduleRender();
  }

  function send(message) {
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(message));
  }

  // -- connection

  function connect() {
    if (!S.token) {
      S.fatal = t().no_token;
      render();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(S.token)}`);
    S.ws = ws;
    ws.onmessage = (event) => {
      try {
        onMessage(JSON.parse(event.data));
      } catch (err) {
        console.error("bad message", err);
      }
    };
    ws.onclose = (event) => lost(ws, event.code, event.reason);
    ws.onerror = () => {}; // onclose follows
  }

  function lost(ws, code, reason) {
    if (ws !== S.ws) return;
    ws.onclose = ws.onmessage = null;
    S.ws = null;
    S.connected = false;
    if (code === 4401 || code === 4403) {
      S.fatal = t().refused(reason || code);
      render();
      return;
    }
    if (!S.lostAt) S.lostAt = new Date();
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** S.attempt) * (0.8 + 0.4 * Math.random());
    S.attempt += 1;
    S.retryAt = Date.now() + delay;
    setTimeout(connect, delay);
    render();
  }

  function watchdog() {
    // No message (not even a heartbeat) for three heartbeats: the connection is dead.
    if (S.ws && S.connected && Date.now() - S.lastMessageAt > 3 * S.heartbeat * 1000) {
      const ws = S.ws;
      try {
        ws.close(4000, "heartbeat timeout");
      } catch (err) {
        /* already closing */
      }
      lost(ws, 4000, "heartbeat timeout");
    }
  }

  function ack(fingerprint) {
    S.requests += 1;
    // Unique per page load and click: the gateway derives the action's id from it, so a
    // resend of the same request is applied once.
    send({ type: "action", request_id: `wall-${PAGE_ID}-${S.requests}`, action: "ack", fingerprint });
  }

  // -- what the tiles show

  function aggregate(kpi, points) {
    if (!points.length) return null;
    const start = Math.max(...points.map((p) => p.window_start));
    const current = points.filter((p) => p.window_start === start && p.value !== null && isFinite(p.value));
    if (!current.length) return null;
    const values = current.map((p) => p.value);
    let value;
    let approx = false;
    switch (kpi.aggregation) {
      case "avg": {
        // Each value times its share: never beyond the largest value (a sum could overflow).
        const weight = current.reduce((s, p) => s + (p.count || 0), 0);
        value = weight > 0
          ? current.reduce((s, p) => s + p.value * ((p.count || 0) / weight), 0)
          : values.reduce((s, v) => s + v / values.length, 0);
        break;
      }
      case "min":
        value = Math.min(...values);
        break;
      case "max":
        value = Math.max(...values);
        break;
      case "p95":
        value = Math.max(...values);
        approx = current.length > 1;
        break;
      case "last":
        value = current.reduce((a, b) => ((b.emitted_at || 0) > (a.emitted_at || 0) ? b : a)).value;
        break;
      case "distinct_count":
        value = values.reduce((a, b) => a + b, 0);
        approx = current.length > 1;
        break;
      default: // count, sum, rate_per_min
        value = values.reduce((a, b) => a + b, 0);
    }
    return {
      value,
      approx,
      // A saturated sum (the worker marks it) or a sum of the groups beyond the float range.
      overflow: !isFinite(value) || current.some((p) => p.overflow === true),
      final: current.every((p) => p.final),
      emitted: Math.max(...current.map((p) => p.emitted_at || 0)),
    };
  }

  // How recently the sector must have been seen for its data to count as flowing.
  const FLOWING_S = 3600;

  function quietZero(kpi, sector, state, points) {
    // The current window of an additive KPI has had no event while the sector's data flows
    // (the wall is live, the sector seen within the window and the last hour, no stale
    // source): 0, rather than "–" or a closed window's figure.
    // An additive KPI's window with no event publishes no point, yet its value is 0.
    if (!kpi.additive || state.staleFor !== null || !(kpi.window > 0)) return null;
    if (!S.connected || S.degraded) return null; // the last figures received stand
    const now = nowS();
    const seen = S.fresh.get(`sector|${sector.id}`);
    if (!seen || !(now - seen.last_seen <= Math.min(kpi.window, FLOWING_S))) return null;
    if (points.length && Math.max(...points.map((p) => p.window_start)) + kpi.window > now) return null;
    return { value: 0, approx: false, overflow: false, final: false, emitted: now, quiet: true };
  }

  function combine(aggregation, values) {
    if (aggregation === "avg") return values.reduce((a, b) => a + b, 0) / values.length;
    if (aggregation === "min") return Math.min(...values);
    if (aggregation === "max" || aggregation === "p95") return Math.max(...values);
    if (aggregation === "last") return values[values.length - 1];
    return values.reduce((a, b) => a + b, 0);
  }

  function sparkPoints(kpi, entries) {
    // The tile's value over the last hour: at each minute where some series has a sample,
    // the combination of every series' latest sample (carried forward).
    const end = nowS();
    const out = [];
    const cursors = entries.map(() => -1);
    for (let b = 0; b < 60; b += 1) {
      const edge = end - 3600 + (b + 1) * 60;
      const values = [];
      let moved = false;
      entries.forEach((entry, i) => {
        while (cursors[i] + 1 < entry.spark.length && entry.spark[cursors[i] + 1][0] <= edge) {
          cursors[i] += 1;
          moved = true;
        }
        if (cursors[i] >= 0) values.push(entry.spark[cursors[i]][1]);
      });
      if (moved && values.length) out.push([edge, combine(kpi.aggregation, values)]);
    }
    return out;
  }

  function sparkSvg(points, target) {
    if (points.length < 2) return '<svg class="spark" viewBox="0 0 100 30" aria-hidden="true"></svg>';
    const values = points.map((p) => p[1]);
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const withTarget = target && target.value >= lo - (hi - lo + 1) && target.value <= hi + (hi - lo + 1);
    if (withTarget) {
      lo = Math.min(lo, target.value);
      hi = Math.max(hi, target.value);
    }
    if (hi - lo < 1e-9) {
      hi += 1;
      lo -= 1;
    }
    const t0 = points[0][0];
    const span = Math.max(1, points[points.length - 1][0] - t0);
    const x = (tt) => ((tt - t0) / span) * 100;
    const y = (v) => 28 - ((v - lo) / (hi - lo)) * 26;
    const line = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    const area = `${line}L100,30L0,30Z`;
    const targetLine = withTarget
      ? `<line class="target" x1="0" x2="100" y1="${y(target.value).toFixed(1)}" y2="${y(target.value).toFixed(1)}"/>`
      : "";
    return `<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true"><path class="area" d="${area}"/>${targetLine}<path class="line" d="${line}"/></svg>`;
  }

  function sectorState(sector) {
    const now = nowS();
    let staleSince = null;
    for (const record of S.fresh.values()) {
      if (record.kind === "freshness" && record.sector === sector.id && record.state === "stale") {
        staleSince = staleSince === null ? record.last_seen : Math.min(staleSince, record.last_seen);
      }
    }
    // Records the worker needed that the broker no longer had: shown for an hour after.
    let gap = null;
    for (const record of S.fresh.values()) {
      if (record.kind === "data_gap" && record.sector === sector.id && now - record.detected_at < GAP_SHOWN_S) {
        if (!gap || record.detected_at > gap.detected_at) gap = record;
      }
    }
    const alerts = [...S.alerts.values()].filter((a) => a.labels.sector === sector.id && a.state !== "pending");
    let worst = null;
    for (const a of alerts) {
      if (!worst || S.config.severity[a.severity].rank > S.config.severity[worst].rank) worst = a.severity;
    }
    return { staleFor: staleSince === null ? null : now - staleSince, alerts, worst, gap };
  }

  function valueSize(shown, unit) {
    // A long value with its unit (15.618 triệu đồng) is set smaller rather than cut.
    const length = shown.length + unit.length;
    return length > 17 ? " longer" : length > 13 ? " long" : "";
  }

  function renderTile(sector) {
    const L = t();
    const name = S.lang === "vi" ? sector.name_vi : sector.name_en;
    const state = sectorState(sector);
    let status;
    let statusClass;
    if (state.alerts.length) {
      status = `${SEVERITY_ICON[state.worst]} ${L.n_alerts(state.alerts.length)}`;
      statusClass = state.worst === "info" ? "warning" : state.worst;
    } else if (state.staleFor !== null) {
      status = "◷";
      statusClass = "stale";
    } else {
      status = L.normal;
      statusClass = "ok";
    }
    let anyData = false;
    const rows = sector.kpis.map((kpi) => {
      const entries = [];
      for (const entry of S.series.values()) {
        // A point's `kpi` is `<sector>.<kpi id>` (the contract), the config's id is the bare one.
        if (entry.point.sector === sector.id && entry.point.kpi === `${sector.id}.${kpi.id}`) entries.push(entry);
      }
      const points = entries.map((e) => e.point);
      const agg = quietZero(kpi, sector, state, points) || aggregate(kpi, points);
      const kpiName = S.lang === "vi" ? kpi.name_vi : kpi.name_en;
      if (!agg) {
        return `<div class="kpi" data-kpi="${esc(kpi.id)}"><div class="kpi-name" title="${esc(kpiName)}">${esc(kpiName)}</div>
          <div class="kpi-value none">–</div>${sparkSvg([], null)}<div class="kpi-meta"></div></div>`;
      }
      anyData = true;
      const meta = [];
      if (agg.quiet) meta.push(`<span class="chip prov">${L.quiet}</span>`);
      else meta.push(agg.final ? `<span class="chip final">■ ${L.final}</span>` : `<span class="chip prov">◔ ${L.provisional}</span>`);
      if (agg.overflow) {
        return `<div class="kpi overflow" data-kpi="${esc(kpi.id)}" data-value="overflow" data-final="${agg.final}">
          <div class="kpi-name" title="${esc(kpiName)}">${esc(kpiName)}</div>
          <div class="kpi-value">${esc(L.overflow)}<span class="unit">${esc(kpi.unit)}</span></div>
          ${sparkSvg([], null)}<div class="kpi-meta">${meta.join("")}</div></div>`;
      }
      if (kpi.target) {
        const op = kpi.target.direction === "at_most" ? "≤" : "≥";
        const met = kpi.target.direction === "at_most" ? agg.value <= kpi.target.value : agg.value >= kpi.target.value;
        meta.push(`<span class="target">${esc(L.target(op, fmtNumber(kpi.target.value, kpi.unit)))}</span>`);
        meta.push(`<span class="chip ${met ? "ok" : "bad"}">${met ? L.met : L.missed}</span>`);
      }
      const shown = `${agg.approx ? "≈" : ""}${fmtNumber(agg.value, kpi.unit)}`;
      return `<div class="kpi" data-kpi="${esc(kpi.id)}" data-value="${agg.value}" data-final="${agg.final}"${agg.quiet ? ' data-quiet="true"' : ""}>
        <div class="kpi-name" title="${esc(kpiName)}">${esc(kpiName)}</div>
        <div class="kpi-value${valueSize(shown, kpi.unit)}" title="${esc(`${shown} ${kpi.unit}`)}">${esc(shown)}<span class="unit">${esc(kpi.unit)}</span></div>
        ${sparkSvg(sparkPoints(kpi, entries), kpi.target)}
        <div class="kpi-meta">${meta.join("")}</div></div>`;
    });
    if (!state.alerts.length && !anyData) {
      status = "◌";
      statusClass = "stale";
    }
    const title = state.alerts.length ? L.status_title.alerts : statusClass === "ok" ? L.status_title.ok : L.status_title.stale;
    let stale = state.staleFor !== null ? `<div class="stale-note">${esc(L.stale(fmtDuration(state.staleFor)))}</div>` : "";
    if (!anyData && state.staleFor === null) stale = `<div class="stale-note">${esc(L.no_data)}</div>`;
    if (state.gap) {
      const from = fmtClock(new Date(state.gap.start * 1000), false);
      const to = fmtClock(new Date(state.gap.end * 1000), false);
      stale += `<div class="stale-note gap">${esc(L.gap(from, to))}</div>`;
    }
    const classes = ["tile"];
    if (state.alerts.length) classes.push(`sev-${state.worst}`);
    if (state.staleFor !== null) classes.push("stale");
    return `<article class="${classes.join(" ")}" data-sector="${esc(sector.id)}" data-stale="${state.staleFor !== null}" data-gap="${state.gap !== null}" data-alerts="${state.alerts.length}">
      <div class="tile-head"><div class="tile-name" title="${esc(name)}">${esc(name)}</div><div class="tile-status ${statusClass}" title="${esc(title)}">${esc(status)}</div></div>
      ${stale}${rows.join("")}</article>`;
  }

  function renderSources() {
    const L = t();
    const now = nowS();
    const names = {};
    let total = 0;
    for (const sector of S.config.sectors) {
      for (const source of sector.sources) {
        names[source.id] = S.lang === "vi" ? source.name_vi : source.name_en;
        total += 1;
      }
    }
    const stale = [...S.fresh.values()]
      .filter((r) => r.kind === "freshness" && r.state === "stale")
      .sort((a, b) => a.last_seen - b.last_seen);
    let latest = 0;
    for (const r of S.fresh.values()) if (r.kind === "sector_seen") latest = Math.max(latest, r.last_seen);
    for (const entry of S.series.values()) latest = Math.max(latest, entry.point.emitted_at || 0);
    const lines = [`<div class="line ok">${L.sources_live(total - stale.length, total)}</div>`];
    if (stale.length) {
      lines.push(`<div class="line">${L.sources_stale(stale.length)}</div>`);
      const shown = stale.slice(0, 4).map((r) => `<li>${esc(fmtDuration(now - r.last_seen))} · ${esc(names[r.source] || r.source)}</li>`);
      if (stale.length > 4) shown.push(`<li>…</li>`);
      lines.push(`<ul>${shown.join("")}</ul>`);
    } else {
      lines.push(`<div class="line ok">${esc(L.sources_all_ok)}</div>`);
    }
    if (latest) lines.push(`<div class="line muted">${esc(L.latest(fmtClock(new Date(latest * 1000), false)))}</div>`);
    return `<article class="tile sources" data-sector="_sources">
      <div class="tile-head"><div class="tile-name">${esc(L.sources)}</div></div>${lines.join("")}</article>`;
  }

  function sortedAlerts() {
    const rank = (a) => S.config.severity[a.severity].rank;
    return [...S.alerts.values()].sort(
      (a, b) =>
        rank(b) - rank(a) ||
        (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9) ||
        a.started_at - b.started_at,
    );
  }

  function renderAlerts() {
    const L = t();
    const alerts = sortedAlerts();
    const sectors = Object.fromEntries(S.config.sectors.map((s) => [s.id, s]));
    const canAct = S.hello && S.hello.may_act && S.connected;
    const items = alerts.slice(0, MAX_TICKER).map((a) => {
      const sev = S.config.severity[a.severity];
      const st = S.config.states[a.state];
      const sector = sectors[a.labels.sector];
      const sectorName = sector ? (S.lang === "vi" ? sector.name_vi : sector.name_en) : a.labels.sector;
      const stateText = [S.lang === "vi" ? st.vi : st.en];
      if (a.state === "acknowledged" && a.acknowledged_by) stateText.push(L.acked_by(a.acknowledged_by));
      if (a.assignee) stateText.push(L.assignee(a.assignee));
      if (a.escalation_level > 0) stateText.push(L.level(a.escalation_level));
      const button = canAct && a.state === "firing"
        ? `<button type="button" data-ack="${esc(a.fingerprint)}">${esc(L.ack)}</button>` : "";
      return `<li class="alert sev-${esc(a.severity)}${a.state === "acknowledged" ? " acked" : ""}" data-fingerprint="${esc(a.fingerprint)}" data-state="${esc(a.state)}">
        <div class="line1"><span class="sev">${SEVERITY_ICON[a.severity] || "●"} ${esc(S.lang === "vi" ? sev.vi : sev.en)} · ${esc(sectorName)}</span>
        <span class="elapsed">${esc(fmtDuration(nowS() - a.started_at))}</span></div>
        <div class="msg">${esc(S.lang === "vi" ? a.message_vi : a.message_en)}</div>
        <div class="line3"><span class="state">${a.state === "acknowledged" ? "✓" : "!"} ${esc(stateText.join(" · "))}</span>${button}</div></li>`;
    });
    if (alerts.length > MAX_TICKER) items.push(`<li class="more">${esc(L.more(alerts.length - MAX_TICKER))}</li>`);
    $("ticker").innerHTML = items.join("");
    $("alerts-empty").hidden = alerts.length > 0;
    const count = $("alert-count");
    count.textContent = String(alerts.length);
    count.classList.toggle("zero", alerts.length === 0);
    return alerts;
  }

  function renderMap() {
    // Each area of the catalog's map, coloured by the worst open alert that names it.
    const map = S.config.map;
    if (!map || !map.areas.length) return;
    const L = t();
    const rank = (sev) => S.config.severity[sev].rank;
    const worst = {};
    const pending = new Set(); // areas whose alerts wait for their condition to hold (`for`)
    for (const a of S.alerts.values()) {
      const area = a.labels && a.labels.district;
      if (!area) continue;
      if (a.state === "pending") pending.add(area);
      if (a.state !== "firing" && a.state !== "acknowledged") continue;
      if (!worst[area] || rank(a.severity) > rank(worst[area])) worst[area] = a.severity;
    }
    $("map-level").textContent = S.lang === "vi" ? map.level.name_vi : map.level.name_en;
    $("map").style.gridTemplateColumns = `repeat(${map.columns}, minmax(0, 1fr))`;
    $("map").innerHTML = map.areas.map((area) => {
      const sev = worst[area.code];
      const name = S.lang === "vi" ? area.short_vi : area.short_en;
      const waiting = !sev && pending.has(area.code);
      const label = sev ? `${SEVERITY_ICON[sev]} ${S.lang === "vi" ? S.config.severity[sev].vi : S.config.severity[sev].en}`
        : waiting ? L.area_pending : L.area_ok;
      const stClass = sev ? "" : waiting ? " pending" : " ok";
      return `<div class="area${sev ? " sev-" + sev : ""}" role="listitem" data-area="${esc(area.code)}" data-severity="${sev || ""}"
        style="grid-row:${area.row + 1};grid-column:${area.column + 1}" title="${esc(S.lang === "vi" ? area.name_vi : area.name_en)}"><span class="nm">${esc(name)}</span><span class="st${stClass}">${esc(label)}</span></div>`;
    }).join("");
  }

  function renderSummary(alerts, staleSectors) {
    const L = t();
    const pills = [];
    for (const level of ["emergency", "critical", "warning"]) {
      const n = alerts.filter((a) => a.severity === level).length;
      if (n) {
        const label = S.lang === "vi" ? S.config.severity[level].vi : S.config.severity[level].en;
        pills.push(`<span class="pill sev-${level}">${L.sev_count(SEVERITY_ICON[level], n, esc(label))}</span>`);
      }
    }
    if (staleSectors) pills.push(`<span class="pill">${L.stale_sectors(staleSectors)}</span>`);
    $("summary").innerHTML = pills.join("");
  }

  function renderBanner() {
    const L = t();
    const banner = $("banner");
    if (S.fatal) {
      banner.hidden = false;
      banner.className = "banner fatal";
      banner.textContent = S.fatal;
      return;
    }
    if (S.connected && S.degraded) {
      const since = S.degraded.since ? new Date(S.degraded.since * 1000) : new Date();
      const what = S.degraded.down.map((d) => L.dependency[d] || d).join(", ");
      banner.hidden = false;
      banner.className = "banner degraded";
      banner.innerHTML = `<span>${esc(L.degraded(fmtHourMinute(since)))}</span><span class="sub">${esc(L.degraded_sub(what))}</span>`;
      return;
    }
    if (S.connected || !S.lostAt) {
      banner.hidden = true;
      return;
    }
    const wait = Math.max(0, Math.round((S.retryAt - Date.now()) / 1000));
    banner.hidden = false;
    banner.className = "banner";
    banner.innerHTML = `<span>${esc(L.lost(fmtClock(S.lostAt, false)))}</span><span class="sub">${esc(L.retry(S.attempt, wait))}</span>`;
  }

  function render() {
    S.renderTimer = null;
    S.renderedAt = Date.now();
    const L = t();
    document.documentElement.lang = S.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const text = L[el.dataset.i18n];
      if (typeof text === "string") el.textContent = text;
    }
    for (const el of document.querySelectorAll(".lang span")) el.classList.toggle("on", el.dataset.lang === S.lang);
    const [time, day] = fmtClock(new Date(), true);
    $("clock-time").textContent = time;
    $("clock-date").textContent = day;
    renderBanner();
    // Values stay on screen while the data systems are down, but dimmed: not current.
    document.body.dataset.degraded = String(Boolean(S.degraded && S.connected));
    const conn = $("conn");
    conn.textContent = S.connected ? L.online : S.lostAt ? L.offline : L.connecting;
    conn.className = `conn ${S.connected ? "up" : "down"}`;
    if (S.hello) $("who").textContent = L.who(S.hello.name, S.hello.role);
    if (!S.config) return;
    $("province").textContent = S.lang === "vi" ? S.config.province.name_vi : S.config.province.name_en;
    $("tiles").innerHTML = S.config.sectors.map(renderTile).join("") + renderSources();
    const alerts = renderAlerts();
    renderMap();
    const staleSectors = document.querySelectorAll('.tile[data-stale="true"]').length;
    renderSummary(alerts, staleSectors);
  }

  // At most five redraws a second, and an update after a quiet spell is drawn at once.
  const RENDER_INTERVAL_MS = 200;
  function scheduleRender() {
    if (S.renderTimer !== null) return;
    const since = Date.now() - (S.renderedAt || 0);
    S.renderTimer = setTimeout(render, Math.max(0, RENDER_INTERVAL_MS - since));
  }

  // -- start

  $("lang").addEventListener("click", () => {
    S.lang = S.lang === "vi" ? "en" : "vi";
    localStorage.setItem("ioc.wall.lang", S.lang);
    render();
  });
  $("ticker").addEventListener("click", (event) => {
    const fingerprint = event.target && event.target.dataset && event.target.dataset.ack;
    if (fingerprint) ack(fingerprint);
  });
  setInterval(() => {
    watchdog();
    render();
  }, 1000);

  fetch("/config.json")
    .then((r) => r.json())
    .then((config) => {
      S.config = config;
      render();
      connect();
    })
    .catch((err) => {
      console.error("config", err);
      S.lostAt = new Date();
      render();
      setTimeout(() => location.reload(), 5000);
    });
  render();
})();
