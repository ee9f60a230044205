// Technician console: meters first (10 Hz over a WebSocket), routing picture, alarms, controls.
// Exposed for tests: window.tech = { levels, status, connected }.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const METER_MIN_DB = -60;
  const PEAK_HOLD_MS = 2000;
  const CLIP_HOLD_MS = 3000;
  const SILENT_LUFS = -60;
  const state = { token: null, ws: null, status: null, levels: {}, holds: {}, connected: false, logSeq: 0, monitor: null };
  window.tech = state;

  const params = new URLSearchParams(location.search);
  state.token = params.get("token") || sessionStorage.getItem("techToken");

  function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.json);
    }
    return fetch(path, { ...options, headers }).then(async (r) => {
      const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
      if (!r.ok) throw new Error(body.detail || `HTTP ${r.status}`);
      return body;
    });
  }

  function setConn(text, cls) {
    const el = $("conn");
    el.textContent = text;
    el.className = `pill ${cls || ""}`;
  }

  // --- WebSocket ---------------------------------------------------------------------------
  let backoff = 500;
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/tech/ws`);
    state.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ token: state.token }));
    ws.onmessage = (ev) => {
      const frame = JSON.parse(ev.data);
      if (!state.connected) {
        state.connected = true;
        backoff = 500;
        setConn("connected", "ok");
        $("login").hidden = true;
        $("console").hidden = false;
      }
      if (frame.type === "levels") onLevels(frame);
      else if (frame.type === "status") onStatus(frame.status);
    };
    ws.onclose = (ev) => {
      state.connected = false;
      if (ev.code === 1008) {
        setConn("token refused", "bad");
        sessionStorage.removeItem("techToken");
        showLogin();
        return;
      }
      setConn("reconnecting…", "bad");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 8000);
    };
  }

  function showLogin() {
    $("console").hidden = true;
    $("login").hidden = false;
    $("token").focus();
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("techToken", state.token);
    connect();
  });

  // --- meters ------------------------------------------------------------------------------
  const meterEls = {};
  function meterRow(name) {
    if (meterEls[name]) return meterEls[name];
    const [kind, ident] = name.split(/:(.*)/s);
    const row = document.createElement("div");
    row.className = "meter";
    row.dataset.name = name;
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = kind === "ch" ? channelName(ident) : ident;
    label.title = name;
    const canvas = document.createElement("canvas");
    canvas.width = 300;
    canvas.height = 16;
    canvas.setAttribute("role", "meter");
    canvas.setAttribute("aria-label", `${label.textContent} level`);
    canvas.setAttribute("aria-valuemin", String(METER_MIN_DB));
    canvas.setAttribute("aria-valuemax", "0");
    const lufs = document.createElement("span");
    lufs.className = "lufs";
    const lamp = document.createElement("span");
    lamp.className = "lamp off";
    row.append(label, canvas, lufs, lamp);
    (kind === "ch" ? $("meters-ch") : $("meters-in")).append(row);
    meterEls[name] = { row, canvas, lufs, lamp };
    return meterEls[name];
  }

  function x(db, width) {
    return Math.max(0, Math.min(1, (db - METER_MIN_DB) / -METER_MIN_DB)) * width;
  }

  function drawMeter(name, level, now) {
    const m = meterRow(name);
    const hold = (state.holds[name] ||= { peak: -120, at: 0, clipAt: -Infinity });
    if (level.peak_db >= hold.peak || now - hold.at > PEAK_HOLD_MS) {
      hold.peak = level.peak_db;
      hold.at = now;
    }
    if (level.clipped) hold.clipAt = now;
    const ctx = m.canvas.getContext("2d");
    const w = m.canvas.width, h = m.canvas.height;
    ctx.clearRect(0, 0, w, h);
    const grad = ctx.createLinearGradient(0, 0, w, 0);
    grad.addColorStop(0, "#2fbf71");
    grad.addColorStop(x(-18, 1), "#2fbf71");
    grad.addColorStop(x(-6, 1), "#f2b233");
    grad.addColorStop(1, "#ff4d4f");
    ctx.fillStyle = grad;
    ctx.globalAlpha = 0.45;
    ctx.fillRect(0, 0, x(level.peak_db, w), h);
    ctx.globalAlpha = 1;
    ctx.fillRect(0, 3, x(level.rms_db, w), h - 6);
    ctx.fillStyle = "#fff";
    ctx.fillRect(x(hold.peak, w) - 1, 0, 2, h);
    m.canvas.setAttribute("aria-valuenow", String(Math.round(level.peak_db)));
    m.canvas.dataset.peak = String(level.peak_db);
    m.lufs.textContent = level.lufs <= -120 ? "–∞" : level.lufs.toFixed(1);
    if (now - hold.clipAt < CLIP_HOLD_MS) {
      m.lamp.className = "lamp clip";
      m.lamp.textContent = "CLIP";
    } else if (level.lufs < SILENT_LUFS) {
      m.lamp.className = "lamp silent";
      m.lamp.textContent = "silent";
    } else {
      m.lamp.className = "lamp off";
      m.lamp.textContent = "";
    }
  }

  function onLevels(frame) {
    state.levels = frame.levels;
    const now = performance.now();
    for (const [name, level] of Object.entries(frame.levels)) drawMeter(name, level, now);
    for (const name of Object.keys(meterEls)) {
      if (!(name in frame.levels)) {
        meterEls[name].row.remove();
        delete meterEls[name];
      }
    }
    renderAlarms(frame.alarms);
    renderLog(frame.log);
  }

  // --- status ------------------------------------------------------------------------------
  function channelName(id) {
    const ch = state.status?.channels.find((c) => c.id === id);
    return ch ? `${ch.name}` : id;
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
    return td;
  }

  function onStatus(status) {
    state.status = status;
    $("event-name").textContent = `Technician console — ${status.event}`;
    $("floor-language").textContent = status.floor_language;
    renderSeats(status.seats);
    if (status.booths) renderBooths(status.booths);
    renderInputs(status.inputs);
    renderConnections(status.connections);
    renderRouting(status);
    renderRecording(status.recording);
    const e = status.engine;
    $("engine").textContent = `Engine: ${e.ticks} ticks, ${e.late_ticks} late, ${e.errors} errors, ` +
      `tick CPU mean ${e.tick_cpu_ms_mean} ms, max ${e.tick_cpu_ms_max} ms`;
    renderMonitorChoices(status);
    refreshMedia().catch(() => {});
  }

  // Channels and every connected input; values "ch:<id>" or "in:<source>".
  function renderMonitorChoices(status) {
    const select = $("monitor-channel");
    const wanted = ["", ...status.channels.map((c) => `ch:${c.id}`), ...status.inputs.map((i) => `in:${i.id}`)];
    const have = [...select.options].map((o) => o.value);
    if (wanted.join() === have.join()) return;
    const value = select.value;
    select.replaceChildren(new Option("off", ""),
      ...status.channels.map((c) => new Option(`channel: ${c.name}`, `ch:${c.id}`)),
      ...status.inputs.map((i) => new Option(`input: ${i.id}`, `in:${i.id}`)));
    select.value = wanted.includes(value) ? value : "";
  }

  // --- floor language and media -----------------------------------------------------------
  async function setupFloorControls() {
    $("auto-relay").onchange = (e) => api("/api/tech/auto-relay", { method: "POST", json: { on: e.target.checked } })
      .catch((err) => alert(err.message));
    const event = await fetch("/api/event").then((r) => r.json());
    const select = $("floor-lang");
    const languages = event.channels.filter((c) => c.language);
    for (const c of languages) select.append(new Option(`${c.name} (${c.language})`, c.language));
    select.value = event.floor_language;
    select.onchange = () => api("/api/floor/language", { method: "PUT", json: { language: select.value } })
      .then((f) => { $("floor-language").textContent = f.language; })
      .catch((e) => alert(e.message));
    $("media-play").onclick = () => api("/api/media/play", {
      method: "POST", json: { file: $("media-file").value, loop: $("media-loop").checked },
    }).then(showMedia).catch((e) => alert(e.message));
    $("media-stop").onclick = () => api("/api/media/stop", { method: "POST" }).then(showMedia).catch((e) => alert(e.message));
  }

  function showMedia(p) {
    const pos = (x) => (x == null ? "–" : `${Math.floor(x / 60)}:${String(Math.floor(x % 60)).padStart(2, "0")}`);
    $("media-state").textContent = p.state === "playing"
      ? `▶ ${p.file} ${pos(p.position)} / ${pos(p.duration)}${p.loop ? " (loop)" : ""}`
      : `stopped${p.file ? ` (${p.file})` : ""}`;
  }

  async function refreshMedia() {
    const overview = await api("/api/media");
    const select = $("media-file");
    if (select.options.length !== overview.files.length) {
      select.replaceChildren(...overview.files.map((f) => new Option(f, f)));
    }
    showMedia(overview.playback);
  }

  function renderSeats(seats) {
    const body = $("seats");
    body.replaceChildren();
    for (const s of seats) {
      const tr = document.createElement("tr");
      cell(tr, s.booth); cell(tr, s.seat); cell(tr, s.channel);
      cell(tr, s.connected ? "yes" : "no");
      const live = cell(tr, s.live ? "LIVE" : "off");
      if (s.live) live.className = "live";
      const td = cell(tr, "");
      if (s.live) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Force off";
        b.setAttribute("aria-label", `Force seat ${s.seat} off air`);
        b.onclick = () => api(`/api/tech/seats/${s.booth}/${s.seat}/off`, { method: "POST" }).catch(alert);
        td.append(b);
      }
      body.append(tr);
    }
  }

  // Per booth: slow-down and handover requests, the last chat lines and a reply box. The box
  // is built once per booth so that typing survives the 1 Hz status refresh.
  function renderBooths(booths) {
    const root = $("booth-chat");
    $("auto-relay").checked = Object.values(booths).every((b) => b.auto_relay);
    for (const [id, b] of Object.entries(booths)) {
      let box = root.querySelector(`[data-booth="${id}"]`);
      if (!box) {
        box = document.createElement("div");
        box.dataset.booth = id;
        box.className = "booth-box";
        const title = document.createElement("h4");
        title.textContent = `Booth ${id.toUpperCase()}`;
        const flags = document.createElement("p");
        flags.className = "booth-flags";
        const list = document.createElement("ol");
        list.className = "log";
        const form = document.createElement("form");
        const input = document.createElement("input");
        input.type = "text";
        input.maxLength = 500;
        input.setAttribute("aria-label", `Message to booth ${id}`);
        const send = document.createElement("button");
        send.type = "submit";
        send.textContent = "Send";
        form.append(input, send);
        form.onsubmit = (e) => {
          e.preventDefault();
          const text = input.value.trim();
          if (!text) return;
          api(`/api/booths/${id}/chat`, { method: "POST", json: { text } })
            .then(() => { input.value = ""; })
            .catch((err) => alert(err.message));
        };
        box.append(title, flags, list, form);
        root.append(box);
      }
      const flags = [];
      if (b.slow_down) flags.push(`SLOW DOWN requested by ${b.slow_down.seat}`);
      if (b.handover) flags.push(`handover ${b.handover.from_live ? "offered" : "requested"} by ${b.handover.from}`);
      flags.push(b.live_seat ? `live: ${b.live_seat}` : "nobody live");
      const p = box.querySelector(".booth-flags");
      p.textContent = flags.join(" · ");
      p.className = `booth-flags${b.slow_down ? " warn" : ""}`;
      box.querySelector("ol").replaceChildren(...b.chat.slice(-5).map((m) => {
        const li = document.createElement("li");
        li.textContent = `${new Date(m.at * 1000).toLocaleTimeString()} ${m.from}: ${m.text}`;
        return li;
      }));
    }
  }

  function renderInputs(inputs) {
    const body = $("inputs");
    if (document.activeElement && body.contains(document.activeElement)) return; // don't fight the user
    body.replaceChildren();
    for (const inp of inputs) {
      const tr = document.createElement("tr");
      cell(tr, inp.id);
      const g = document.createElement("input");
      g.type = "number"; g.min = "-60"; g.max = "20"; g.step = "1"; g.value = String(inp.gain_db);
      g.setAttribute("aria-label", `Gain of ${inp.id} in dB`);
      const m = document.createElement("input");
      m.type = "checkbox"; m.checked = inp.muted;
      m.setAttribute("aria-label", `Mute ${inp.id}`);
      const send = () => api(`/api/tech/inputs/${encodeURIComponent(inp.id)}/gain`,
        { method: "POST", json: { gain_db: Number(g.value), muted: m.checked } }).catch(alert);
      g.onchange = send; m.onchange = send;
      cell(tr, "").append(g); cell(tr, "").append(m);
      cell(tr, String(inp.depth));
      cell(tr, `${inp.underruns}/${inp.overruns}`);
      body.append(tr);
    }
  }

  function renderConnections(conns) {
    const body = $("connections");
    body.replaceChildren();
    for (const c of conns) {
      const tr = document.createElement("tr");
      cell(tr, c.kind); cell(tr, c.source || c.channel || ""); cell(tr, c.state);
      cell(tr, String(c.packets_lost ?? c.remote_packets_lost ?? "–"));
      cell(tr, String(c.jitter_ms ?? c.remote_jitter_ms ?? "–"));
      cell(tr, String(c.rtt_ms ?? "–"));
      body.append(tr);
    }
  }

  function svg(tag, attrs, text) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // Inputs on the left, the floor in the middle, channels on the right; live seats in red.
  function renderRouting(status) {
    const root = $("routing");
    root.replaceChildren();
    const floorInputs = status.inputs.filter((i) => !i.id.startsWith("seat:"));
    const seats = status.seats.filter((s) => s.connected);
    const left = [...floorInputs.map((i) => ({ id: i.id, label: i.id })),
      ...seats.map((s) => ({ id: `seat:${s.booth}:${s.seat}`, label: `${s.seat} (${s.booth})`, seat: s }))];
    const rows = Math.max(left.length, status.channels.length, 1);
    const height = Math.max(300, rows * 34 + 20);
    root.setAttribute("viewBox", `0 0 720 ${height}`);
    const y = (i, n) => 20 + (i + 0.5) * ((height - 40) / Math.max(n, 1));
    const floorY = height / 2;
    const chY = {};
    status.channels.forEach((c, i) => { chY[c.id] = y(i, status.channels.length); });
    left.forEach((node, i) => {
      const ny = y(i, left.length);
      if (node.seat) {
        if (node.seat.live) root.append(svg("path", { class: "wire live", d: `M170 ${ny} C 400 ${ny}, 400 ${chY[node.seat.channel]}, 520 ${chY[node.seat.channel]}` }));
      } else {
        root.append(svg("path", { class: "wire", d: `M170 ${ny} C 220 ${ny}, 220 ${floorY}, 280 ${floorY}` }));
      }
      root.append(svg("rect", { class: `node ${node.seat?.live ? "live" : ""}`, x: 10, y: ny - 12, width: 160, height: 24, rx: 4 }));
      root.append(svg("text", { x: 18, y: ny + 4 }, node.label));
    });
    root.append(svg("rect", { class: "node", x: 280, y: floorY - 14, width: 90, height: 28, rx: 4 }));
    root.append(svg("text", { x: 290, y: floorY + 4 }, "floor mix"));
    for (const c of status.channels) {
      const cy = chY[c.id];
      const cls = c.id === "floor" || c.auto_floor ? "wire" : "wire bed";
      root.append(svg("path", { class: cls, d: `M370 ${floorY} C 440 ${floorY}, 440 ${cy}, 520 ${cy}` }));
      root.append(svg("rect", { class: `node ${c.live_seat ? "live" : ""}`, x: 520, y: cy - 12, width: 195, height: 24, rx: 4 }));
      const tag = c.auto_floor ? "auto-floor" : c.live_seat ? `live: ${c.live_seat}` : "";
      const label = `${c.name} · ${c.listeners} ${c.listeners === 1 ? "listener" : "listeners"}`;
      root.append(svg("text", { x: 526, y: cy + 4 }, tag ? `${label} · ${tag}` : label));
    }
  }

  function renderAlarms(alarms) {
    const list = $("alarms");
    list.replaceChildren();
    if (!alarms.length) {
      const li = document.createElement("li");
      li.textContent = "none";
      li.style.color = "var(--ok)";
      list.append(li);
    }
    for (const a of alarms) {
      const li = document.createElement("li");
      li.className = a.severity;
      li.textContent = `${a.severity.toUpperCase()}: ${a.message}`;
      list.append(li);
    }
  }

  function renderLog(entries) {
    const list = $("log");
    for (const e of entries) {
      if (e.seq <= state.logSeq) continue;
      state.logSeq = e.seq;
      const li = document.createElement("li");
      li.className = e.severity;
      li.textContent = `${new Date(e.at * 1000).toLocaleTimeString()} ${e.message}`;
      list.prepend(li);
    }
    while (list.children.length > 200) list.lastChild.remove();
  }

  async function renderRecording(rec) {
    const btn = $("rec-toggle");
    btn.setAttribute("aria-pressed", String(rec.on));
    btn.textContent = rec.on ? "Stop recording" : "Start recording";
    $("rec-state").textContent = rec.on ? `● recording ${rec.name}` : "not recording";
  }

  async function refreshRecordings() {
    const sessions = await api("/api/tech/recordings");
    const list = $("recordings");
    list.replaceChildren();
    for (const s of sessions.slice(0, 10)) {
      const li = document.createElement("li");
      li.textContent = `${s.name}: `;
      for (const f of s.files) {
        const a = document.createElement("a");
        a.textContent = f.name;
        a.href = "#";
        a.onclick = async (ev) => {
          ev.preventDefault();
          const r = await fetch(`/api/tech/recordings/${s.name}/${f.name}`, { headers: { Authorization: `Bearer ${state.token}` } });
          const url = URL.createObjectURL(await r.blob());
          Object.assign(document.createElement("a"), { href: url, download: `${s.name}-${f.name}` }).click();
        };
        li.append(a, " ");
      }
      list.append(li);
    }
  }

  $("rec-toggle").addEventListener("click", async () => {
    const on = $("rec-toggle").getAttribute("aria-pressed") !== "true";
    try {
      renderRecording(await api("/api/tech/recording", { method: "POST", json: { on } }));
      refreshRecordings();
    } catch (e) { alert(e.message); }
  });

  // --- monitor: listen to a channel over WHEP, like a listener -------------------------------
  $("monitor-channel").addEventListener("change", async (ev) => {
    const choice = ev.target.value;
    if (state.monitor) {
      fetch(state.monitor.location, { method: "DELETE" }).catch(() => {});
      state.monitor.pc.close();
      state.monitor = null;
    }
    if (!choice) return;
    const [kind, id] = choice.split(/:(.*)/s);
    const path = kind === "in" ? `/whep/monitor/${encodeURIComponent(id)}` : `/whep/${id}`;
    const event = await fetch("/api/event").then((r) => r.json());
    const pc = new RTCPeerConnection({ iceServers: event.ice_servers });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (e) => { $("monitor-audio").srcObject = e.streams[0] || new MediaStream([e.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, 2000);
    });
    const r = await fetch(path, { method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${state.token}` } });
    if (r.status !== 201) { alert(`monitor: HTTP ${r.status}`); pc.close(); return; }
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    state.monitor = { pc, location: r.headers.get("location") };
  });

  setInterval(() => { $("clock").textContent = new Date().toLocaleTimeString(); }, 1000);
  if (state.token) connect(); else showLogin();
  if (state.token) refreshRecordings().catch(() => {});
  setupFloorControls().catch(() => {});
})();
