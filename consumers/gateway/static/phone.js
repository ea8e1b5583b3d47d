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
  const S = { lang: localStorage.getItem("ioc.phone.lang") || "vi", data: null, alert: null, timeline: [], ws: null, requests: 0, pending: {}, closed: false };
  window.__phone = S;
  const $ = (id) => document.getElementById(id);
  const L = () => T[S.lang] || T.vi;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const vi = () => S.lang === "vi";
  const fmt = (v) => (v === null || v === undefined || !isFinite(v) ? "–" : v.toLocaleString(vi() ? "vi-VN" : "en-US", { maximumFractionDigits: Math.abs(v) >= 100 ? 0 : 1 }));
  const clock = (t) => new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", day: "2-digit", month: "2-digit", hourCycle: "h23",
  }).format(new Date(t * 1000));

  function notice(text, kind) {
    const el = $("notice");
    el.textContent = text || "";
    el.className = `notice ${kind || ""}`;
  }

  function chart(k) {
    if (!k || !k.series.length) return `<p class="muted">${esc(L().no_kpi)}</p>`;
    const pts = k.series;
    const vals = pts.map((p) => p[1]);
    let lo = Math.min(...vals);
    let hi = Math.max(...vals);
    if (k.target) { lo = Math.min(lo, k.target.value); hi = Math.max(hi, k.target.value); }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const t0 = pts[0][0];
    const span = Math.max(1, pts[pts.length - 1][0] - t0);
    const x = (t) => ((t - t0) / span) * 100;
    const y = (v) => 48 - ((v - lo) / (hi - lo)) * 46;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(2)},${y(p[1]).toFixed(2)}`).join("");
    const tl = k.target ? `<line class="target" x1="0" x2="100" y1="${y(k.target.value).toFixed(2)}" y2="${y(k.target.value).toFixed(2)}"/>` : "";
    const last = pts[pts.length - 1][1];
    return `<svg viewBox="0 0 100 50" preserveAspectRatio="none" role="img" aria-label="${esc(vi() ? k.name_vi : k.name_en)}: ${fmt(last)} ${esc(k.unit)}">${tl}<path class="line" d="${d}"/></svg>
      <div class="axis"><span>${esc(clock(t0))}</span><span>${fmt(lo)}–${fmt(hi)} ${esc(k.unit)}</span><span>${esc(clock(pts[pts.length - 1][0]))}</span></div>`;
  }

  function render() {
    document.documentElement.lang = S.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const text = L()[el.dataset.i18n];
      if (typeof text === "string") el.textContent = text;
    }
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
        if (m.ok) notice(L().done[action] || L().sent, "ok");
        else notice(L().refused(m.code), "bad");
      }
    };
    ws.onclose = (ev) => {
      S.connected = false;
      if (ev.code === 4401) {
        notice(L().expired, "bad");
        S.closed = true;
        for (const b of document.querySelectorAll(".actions button")) b.disabled = true;
        return;
      }
      notice(L().offline, "bad");
      setTimeout(connect, 2000);
    };
  }

  function act(action, extra) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) {
      notice(L().offline, "bad");
      return;
    }
    S.requests += 1;
    const request_id = `phone-${Date.now().toString(36)}-${S.requests}`;
    S.pending[request_id] = action;
    S.ws.send(JSON.stringify(Object.assign({ type: "action", request_id, action, fingerprint: S.data.fingerprint }, extra)));
    notice(L().sent, "ok");
  }

  $("act-ack").addEventListener("click", () => act("ack", {}));
  $("act-escalate").addEventListener("click", () => act("escalate", {}));
  $("act-assign").addEventListener("click", () => {
    const who = $("assignee-input").value.trim();
    if (!who) return notice(L().need_text, "bad");
    act("assign", { assignee: who });
  });
  $("act-note").addEventListener("click", () => {
    const text = $("note-input").value.trim();
    if (!text) return notice(L().need_text, "bad");
    act("note", { note: text });
    $("note-input").value = "";
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
    .catch((err) => notice(err.message === "link_expired" ? L().expired : L().refused(err.message), "bad"));
  render();
})();
