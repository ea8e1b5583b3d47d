/* The leader's phone page behind a notification's link (/m/<link>): the alert, its KPI's
   last 24 hours with the target, its timeline, and the actions. Data from /api/m/<link>;
   live state and actions over the gateway's WebSocket (/ws?link=<link>), which records each
   action under the recipient's name exactly as it does for an officer's token. */
"use strict";
(function () {
  const T = {
    vi: {
      state: "Trạng thái", since: "Bắt đầu", level: "Cấp xử lý", assignee: "Người được giao",
      actions: "Xử lý", ack: "Tiếp nhận", escalate: "Chuyển cấp trên", assign_label: "Giao cho",
      assign: "Giao việc", note_label: "Ghi chú", note: "Thêm ghi chú",
      kpi: "Chỉ số 24 giờ qua", timeline: "Diễn biến",
      who: (n) => `Người nhận: ${n}`,
      expires: (t) => `Đường dẫn có hiệu lực đến ${t}`,
      sent: "Đã ghi nhận, đang cập nhật…",
      done: { ack: "Đã tiếp nhận cảnh báo", assign: "Đã giao việc", note: "Đã thêm ghi chú", escalate: "Đã chuyển cấp trên" },
      refused: (c) => `Không thực hiện được (${c})`,
      offline: "Mất kết nối, đang kết nối lại…",
      expired: "Đường dẫn đã hết hạn. Vui lòng mở thông báo mới nhất.",
      gone: "Không tìm thấy cảnh báo này.",
      need_text: "Vui lòng nhập nội dung.",
      no_kpi: "Không có chỉ số cho cảnh báo này.",
      no_data: "Chưa có dữ liệu trong 24 giờ qua.",
      latest: (v, u) => `mới nhất: ${v} ${u}`,
      level_n: (n, name) => (n ? `${n} – ${name}` : `0 – ${name}`),
      ago: (m) => (m < 60 ? `${m} phút trước` : `${Math.floor(m / 60)} giờ ${m % 60} phút trước`),
      target: (op, v, u) => `mục tiêu ${op} ${v} ${u}`,
      kinds: { pending: "Chờ xác nhận điều kiện", fire: "Phát cảnh báo", refire: "Cảnh báo lặp lại", ack: "Tiếp nhận",
        assign: "Giao việc", note: "Ghi chú", escalate: "Chuyển cấp", resolve: "Đã xử lý", cancel: "Hủy",
        flapping: "Dao động", stale: "Dữ liệu cũ", silence: "Tạm im lặng" },
      by: (n) => ` · ${n}`,
    },
    en: {
      state: "State", since: "Started", level: "Escalation level", assignee: "Assigned to",
      actions: "Act", ack: "Acknowledge", escalate: "Escalate", assign_label: "Assign to",
      assign: "Assign", note_label: "Note", note: "Add note",
      kpi: "KPI, last 24 hours", timeline: "Timeline",
      who: (n) => `Recipient: ${n}`,
      expires: (t) => `Link valid until ${t}`,
      sent: "Recorded, updating…",
      done: { ack: "Alert acknowledged", assign: "Assigned", note: "Note added", escalate: "Escalated" },
      refused: (c) => `Not done (${c})`,
      offline: "Connection lost, reconnecting…",
      expired: "This link has expired. Open the latest notification.",
      gone: "This alert was not found.",
      need_text: "Please type something first.",
      no_kpi: "No KPI for this alert.",
      no_data: "No data in the last 24 hours yet.",
      latest: (v, u) => `latest: ${v} ${u}`,
      level_n: (n, name) => `${n} – ${name}`,
      ago: (m) => (m < 60 ? `${m} min ago` : `${Math.floor(m / 60)} h ${m % 60} min ago`),
      target: (op, v, u) => `target ${op} ${v} ${u}`,
      kinds: { pending: "Pending", fire: "Fired", refire: "Fired again", ack: "Acknowledged", assign: "Assigned",
        note: "Note", escalate: "Escalated", resolve: "Resolved", cancel: "Cancelled", flapping: "Flapping",
        stale: "Stale data", silence: "Silenced" },
      by: (n) => ` · ${n}`,
    },
  };
  const STATES = {
    pending: ["chờ xác nhận điều kiện", "pending"], firing: ["đang cảnh báo", "firing"],
    acknowledged: ["đã tiếp nhận", "acknowledged"], resolved: ["đã xử lý", "resolved"],
  };
  const SEVERITY = { info: ["thông tin", "info"], warning: ["cảnh báo", "warning"], critical: ["nghiêm trọng", "critical"], emergency: ["khẩn cấp", "emergency"] };
  const link = decodeURIComponent(location.pathname.replace(/^\/m\//, "").replace(/\/$/, ""));
  const S = { lang: localStorage.getItem("ioc.phone.lang") || "vi", data: null, alert: null, timeline: [], ws: null, requests: 0, pending: {}, closed: false, notice: null };
  window.__phone = S;
  const $ = (id) => document.getElementById(id);
  const L = () => T[S.lang] || T.vi;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const vi = () => S.lang === "vi";
  const fmt = (v) => (v === null || v === undefined || !isFinite(v) ? "–" : v.toLocaleString(vi() ? "vi-VN" : "en-US", { maximumFractionDigits: Math.abs(v) >= 100 ? 0 : 1 }));
  const clock = (t) => new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", hourCycle: "h23",
  }).format(new Date(t * 1000));

  // The notice is kept as a function of the language: switching it rewrites the notice too.
  function notice(text, kind) {
    S.notice = text ? { text, kind } : null;
    renderNotice();
  }
  function renderNotice() {
    const el = $("notice");
    el.textContent = S.notice ? S.notice.text(L()) : "";
    el.className = `notice ${S.notice ? S.notice.kind : ""}`;
  }

  // -- the KPI's last 24 hours: an SVG in the chart's own pixels, so dots stay round and text sharp

  const DAY = 86400;
  const BUCKET = 900;  // /api/m/ answers 15-minute buckets
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const hourOf = new Intl.DateTimeFormat("en-GB", { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

  /** The value axis: padded, never empty (one value or all equal), from 0 when nothing is
      negative, its ends rounded to a step of 1, 2 or 5 × 10ⁿ so that they read well. */
  function valueRange(values) {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const pad = hi - lo < 1e-9 ? Math.max(1, Math.abs(hi) * 0.1) : (hi - lo) * 0.08;
    lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad;
    hi += pad;
    const unit = 10 ** Math.floor(Math.log10((hi - lo) / 4));
    const step = unit * ([1, 2, 5].find((m) => (hi - lo) / (unit * m) <= 8) || 10);
    return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step, step];
  }

  function chart(k) {
    if (!k) return `<p class="muted">${esc(L().no_kpi)}</p>`;
    const now = Date.now() / 1000;
    const all = (k.series || []).filter((p) => Array.isArray(p) && num(p[0]) !== null && num(p[1]) !== null).sort((a, b) => a[0] - b[0]);
    // The last 24 hours up to now (or to the newest point, should this phone's clock be behind).
    const end = Math.max(now, all.length ? all[all.length - 1][0] : now);
    const start = end - DAY;
    const pts = all.filter((p) => p[0] >= start - BUCKET);
    if (!pts.length) return `<p class="muted empty">${esc(L().no_data)}</p>`;
    const target = k.target && num(k.target.value) !== null ? k.target : null;
    const [lo, hi, step] = valueRange(pts.map((p) => p[1]).concat(target ? [target.value] : []));
    const axis = (v) => v.toLocaleString(vi() ? "vi-VN" : "en-US", { maximumFractionDigits: Math.min(6, Math.max(0, -Math.floor(Math.log10(step)))) });
    const W = Math.max(240, Math.round($("kpi-chart").clientWidth || 320));
    const H = 160;
    const left = 10 + 6.5 * Math.max(axis(hi).length, axis(lo).length, 2);  // room for the value labels
    const box = { left, right: W - 8, top: 8, bottom: H - 22 };
    const x = (t) => box.left + (Math.min(end, Math.max(start, t)) - start) / DAY * (box.right - box.left);
    const y = (v) => box.bottom - (v - lo) / (hi - lo) * (box.bottom - box.top);
    const f = (n) => n.toFixed(1);
    const parts = [`<rect class="plot" x="${box.left}" y="${box.top}" width="${box.right - box.left}" height="${box.bottom - box.top}"/>`];
    // Every 6 hours of the province's clock, away from the edges.
    for (let t = Math.ceil(start / 3600) * 3600; t <= end; t += 3600) {
      const label = hourOf.format(new Date(t * 1000));
      if (Number(label.slice(0, 2)) % 6 || x(t) - box.left < 18 || box.right - x(t) < 18) continue;
      parts.push(`<line class="grid" x1="${f(x(t))}" x2="${f(x(t))}" y1="${box.top}" y2="${box.bottom}"/>`,
        `<text class="tick" x="${f(x(t))}" y="${H - 6}" text-anchor="middle">${esc(label)}</text>`);
    }
    parts.push(`<text class="tick" x="${box.left - 4}" y="${box.top}" text-anchor="end" dominant-baseline="hanging">${esc(axis(hi))}</text>`,
      `<text class="tick" x="${box.left - 4}" y="${box.bottom}" text-anchor="end">${esc(axis(lo))}</text>`);
    if (target) {
      const op = target.direction === "at_most" ? "≤" : "≥";
      const ty = y(target.value);
      const above = ty - 14 > box.top;
      parts.push(`<line class="target" x1="${box.left}" x2="${box.right}" y1="${f(ty)}" y2="${f(ty)}"/>`,
        `<text class="target-label" x="${box.right - 3}" y="${f(above ? ty - 4 : ty + 13)}" text-anchor="end">${esc(`${op} ${fmt(target.value)}`)}</text>`);
    }
    // A missing point breaks the line (more than 1.5 of the series' own spacing: an hourly
    // KPI has a point an hour in these 15-minute buckets); a point with no neighbour, and the
    // newest, get a dot.
    let spacing = Infinity;
    for (let i = 1; i < pts.length; i++) if (pts[i][0] > pts[i - 1][0]) spacing = Math.min(spacing, pts[i][0] - pts[i - 1][0]);
    spacing = Math.max(BUCKET, isFinite(spacing) ? spacing : 0);
    const gap = (i) => i > 0 && pts[i][0] - pts[i - 1][0] > spacing * 1.5;
    const d = pts.map((p, i) => `${i === 0 || gap(i) ? "M" : "L"}${f(x(p[0]))},${f(y(p[1]))}`).join("");
    parts.push(`<path class="line" d="${d}"/>`);
    pts.forEach((p, i) => {
      const alone = (i === 0 || gap(i)) && (i === pts.length - 1 || gap(i + 1));
      if (alone || i === pts.length - 1) parts.push(`<circle class="dot" cx="${f(x(p[0]))}" cy="${f(y(p[1]))}" r="3.5"/>`);
    });
    const last = pts[pts.length - 1][1];
    const label = `${vi() ? k.name_vi : k.name_en}: ${fmt(last)} ${k.unit}`;
    return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(label)}" data-start="${start}" data-end="${end}">${parts.join("")}</svg>
      <div class="axis"><span class="from">${esc(clock(start))}</span><span class="latest">${esc(L().latest(fmt(last), k.unit))}</span><span class="to">${esc(clock(end))}</span></div>`;
  }

  function render() {
    document.documentElement.lang = S.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const text = L()[el.dataset.i18n];
      if (typeof text === "string") el.textContent = text;
    }
    renderNotice();
    const d = S.data;
    if (!d) return;
    $("who").textContent = L().who(d.recipient);
    $("expires").textContent = L().expires(clock(d.expires_at));
    const a = S.alert;
    if (!a) {
      $("message").textContent = L().gone;
      return;
    }
    const sev = SEVERITY[a.severity] || [a.severity, a.severity];
    const sector = d.sector_name ? (vi() ? d.sector_name.vi : d.sector_name.en) : d.sector;
    $("card").className = `alert-card ${a.severity}`;
    $("sev").className = `sev ${a.severity}`;
    $("sev").textContent = `${vi() ? sev[0] : sev[1]} · ${sector}`;
    $("message").textContent = vi() ? a.message_vi : a.message_en;
    const st = STATES[a.state] || [a.state, a.state];
    $("state").textContent = (vi() ? st[0] : st[1]) + (a.acknowledged_by ? L().by(a.acknowledged_by) : "");
    $("state").dataset.state = a.state;
    const minutes = Math.max(0, Math.floor((Date.now() / 1000 - a.started_at) / 60));
    $("since").textContent = `${clock(a.started_at)} (${L().ago(minutes)})`;
    const lvl = d.levels[a.escalation_level] || { vi: "", en: "" };
    $("level").textContent = L().level_n(a.escalation_level, vi() ? lvl.vi : lvl.en);
    $("assignee").textContent = a.assignee || "–";
    const open = a.state === "firing" || a.state === "acknowledged";
    $("act-ack").disabled = a.state !== "firing";
    $("act-escalate").disabled = !open || a.escalation_level >= Object.keys(d.levels).length - 1;
    $("act-assign").disabled = a.state === "resolved";
    const k = d.kpi;
    if (k) {
      const op = k.target ? (k.target.direction === "at_most" ? "≤" : "≥") : "";
      const area = k.area ? ` · ${vi() ? k.area.vi : k.area.en}` : "";
      $("kpi-name").textContent = `${vi() ? k.name_vi : k.name_en}${area}${k.target ? " · " + L().target(op, fmt(k.target.value), k.unit) : ""}`;
    }
    $("kpi-chart").innerHTML = chart(k);
    $("timeline").innerHTML = S.timeline.slice().reverse().map((t) => {
      const kind = L().kinds[t.transition] || t.transition;
      const who = t.actor ? L().by(t.actor) : "";
      const note = t.transition === "note" && t.note ? `<span class="note">“${esc(t.note)}”</span>` : "";
      const assignee = t.transition === "assign" && t.assignee ? ` → ${esc(t.assignee)}` : "";
      return `<li data-transition="${esc(t.transition)}"><span class="t">${esc(clock(t.at))}</span>${esc(kind)}${esc(who)}${assignee} ${note}</li>`;
    }).join("");
  }

  function apply(item) {
    if (!item || item.fingerprint !== S.data.fingerprint) return;
    if (S.alert && item.seq <= S.alert.seq) return;
    S.alert = item;
    if (!S.timeline.some((t) => t.seq === item.seq)) S.timeline.push(item);
    render();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?link=${encodeURIComponent(link)}`);
    S.ws = ws;
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "hello") {
        ws.send(JSON.stringify({ type: "subscribe", channels: ["alerts"] }));
        S.connected = true;
      } else if (m.type === "snapshot" || m.type === "update" || m.type === "resync") {
        for (const item of m.items) apply(item);
      } else if (m.type === "action_result") {
        const action = S.pending[m.request_id];
        delete S.pending[m.request_id];
        if (m.ok) notice((l) => l.done[action] || l.sent, "ok");
        else notice((l) => l.refused(m.code), "bad");
      }
    };
    ws.onclose = (ev) => {
      S.connected = false;
      if (ev.code === 4401) {
        notice((l) => l.expired, "bad");
        S.closed = true;
        for (const b of document.querySelectorAll(".actions button")) b.disabled = true;
        return;
      }
      notice((l) => l.offline, "bad");
      setTimeout(connect, 2000);
    };
  }

  function act(action, extra) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) {
      notice((l) => l.offline, "bad");
      return;
    }
    S.requests += 1;
    const request_id = `phone-${Date.now().toString(36)}-${S.requests}`;
    S.pending[request_id] = action;
    S.ws.send(JSON.stringify(Object.assign({ type: "action", request_id, action, fingerprint: S.data.fingerprint }, extra)));
    notice((l) => l.sent, "ok");
  }

  $("act-ack").addEventListener("click", () => act("ack", {}));
  $("act-escalate").addEventListener("click", () => act("escalate", {}));
  $("act-assign").addEventListener("click", () => {
    const who = $("assignee-input").value.trim();
    if (!who) return notice((l) => l.need_text, "bad");
    act("assign", { assignee: who });
  });
  $("act-note").addEventListener("click", () => {
    const text = $("note-input").value.trim();
    if (!text) return notice((l) => l.need_text, "bad");
    act("note", { note: text });
    $("note-input").value = "";
  });
  window.addEventListener("resize", () => {
    if (S.data) $("kpi-chart").innerHTML = chart(S.data.kpi);
  });
  $("lang").addEventListener("click", () => {
    S.lang = vi() ? "en" : "vi";
    localStorage.setItem("ioc.phone.lang", S.lang);
    render();
  });

  fetch(`/api/m/${encodeURIComponent(link)}`)
    .then(async (r) => {
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || String(r.status));
      S.data = body;
      S.alert = body.alert;
      S.timeline = body.timeline.slice();
      if (S.alert && !S.timeline.some((t) => t.seq === S.alert.seq)) S.timeline.push(S.alert);
      render();
      connect();
    })
    .catch((err) => notice((l) => (err.message === "link_expired" ? l.expired : l.refused(err.message)), "bad"));
  render();
})();
