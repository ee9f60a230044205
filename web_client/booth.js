// Interpreter booth console: publish the seat's microphone over WHIP, hear the seat's return
// feed on the same connection, and drive the booth (mic, cough, handover, output, source,
// headphone settings, slow-down, chat). The booth's full state arrives on a WebSocket at
// every change; the page only renders it, so a reload shows the truth at once and never puts
// the seat on air by itself.
//
// Server contract:
//   GET  /api/event                                 channels, ICE servers
//   GET  /api/booths/{b}                            (Bearer booth token) the booth's state
//   WS   /api/booths/{b}/ws                          send {"token", "seat"}; receive {"type": "state", "state"}
//   POST /whip/booth/{b}/{s}                        SDP offer -> 201 answer + Location
//   POST /api/booths/{b}/seats/{s}/mic              {"on"}
//   POST /api/booths/{b}/seats/{s}/cough            {"held"}
//   POST /api/booths/{b}/seats/{s}/handover         {"action": request|accept|cancel|take_over}
//   POST /api/booths/{b}/seats/{s}/output           {"output": "A"|"B"}
//   POST /api/booths/{b}/seats/{s}/source           {"source"}
//   POST /api/booths/{b}/seats/{s}/return           {volume_db, bass_db, treble_db, partner_db}
//   POST /api/booths/{b}/seats/{s}/slow-down        {"on"}
//   POST /api/booths/{b}/chat                       {"text", "seat"}
//
// Exposed for tests: window.booth
//   { state, connection, live, micAnalyser, feedAnalyser, connect(), setMic(bool) }
"use strict";

(() => {
  const P = window.Publisher;
  const RETRY_MS = 2000;
  // Headphones in a booth: no echo to cancel, and the voice must reach listeners untouched.
  const PROCESSING = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

  const $ = (id) => document.getElementById(id);
  const el = {
    title: $("title"),
    eventName: $("event-name"),
    clock: $("clock"),
    audience: $("audience"),
    tokenBlock: $("token-block"),
    token: $("token"),
    mic: $("mic"),
    connect: $("connect"),
    status: $("status"),
    live: $("live-indicator"),
    micButton: $("mic-button"),
    cough: $("cough"),
    micLevel: $("mic-level"),
    feedLevel: $("feed-level"),
    handoverText: $("handover-text"),
    request: $("handover-request"),
    accept: $("handover-accept"),
    cancel: $("handover-cancel"),
    takeOver: $("take-over"),
    partners: $("partners"),
    outputA: $("output-a"),
    outputB: $("output-b"),
    outputBLabel: $("output-b-label"),
    slowDown: $("slow-down"),
    source: $("source"),
    hears: $("hears"),
    chatLog: $("chat-log"),
    chatForm: $("chat-form"),
    chatText: $("chat-text"),
    chatSend: $("chat-send"),
    audio: $("feed-audio"),
  };
  const knobs = ["volume", "bass", "treble", "partner"].map((name) => ({
    name,
    input: $(name),
    out: $(`${name}-out`),
  }));

  const parts = window.location.pathname.split("/").filter(Boolean);
  const boothId = decodeURIComponent(parts[1] || "");
  const seatId = decodeURIComponent(parts[2] || "");
  const api = `/api/booths/${encodeURIComponent(boothId)}`;
  const seatApi = `${api}/seats/${encodeURIComponent(seatId)}`;

  let event = null;
  let channels = {};
  let state = null; // the booth's last state from the server
  let connection = "idle"; // idle | connecting | connected | error
  let audioContext = null;
  let micMeter = null;
  let feedMeter = null;
  let stream = null;
  let socket = null;
  let socketRetry = null;
  let coughHeld = false;
  let knobTimer = null;

  const token = () => el.token.value.trim();
  const me = () => state?.seats.find((s) => s.seat === seatId) || null;
  const channelName = (id) => channels[id]?.name || id;

  function setStatus(kind, message) {
    connection = kind;
    el.status.dataset.state = kind === "connected" ? "live" : kind;
    el.status.textContent = message;
    const active = kind === "connecting" || kind === "connected";
    el.connect.textContent = active ? "Disconnect" : kind === "error" ? "Try again" : "Connect the console";
    el.connect.dataset.active = String(active);
    el.connect.disabled = event === null;
    if (state) render(state);
  }

  async function command(path, body) {
    try {
      const next = await P.fetchJson(path, { token: token(), method: "POST", body });
      if (next && next.seats) render(next);
      return next;
    } catch (err) {
      setStatus(connection, `Refused: ${err.message}`);
      throw err;
    }
  }

  // ------------------------------------------------------------------ audio --
  function ensureAudioContext() {
    if (!audioContext) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioContext = new Ctx({ latencyHint: "interactive" });
      micMeter = new P.LevelMeter(audioContext, el.micLevel, null);
      feedMeter = new P.LevelMeter(audioContext, el.feedLevel, null);
    }
    if (audioContext.state === "suspended") audioContext.resume().catch(() => {});
  }

  async function openMic() {
    const next = await P.openInput(el.mic.value, PROCESSING);
    const track = next.getAudioTracks()[0];
    if (link.session) await link.session.sender.replaceTrack(track);
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = next;
    micMeter.attach(stream);
    await P.listDevices(el.mic, "audioinput", "Default microphone");
  }

  function onFeed(remote) {
    el.audio.srcObject = remote; // the interpreter hears it; WebAudio also needs it attached
    el.audio.play().catch(() => {});
    feedMeter.attach(remote);
  }

  // The interpreter's microphone goes out; the seat's return feed comes back.
  const link = new P.WhipLink({
    url: () => `/whip/booth/${encodeURIComponent(boothId)}/${encodeURIComponent(seatId)}`,
    token,
    stream: () => stream,
    iceServers: () => event.ice_servers,
    retryMs: RETRY_MS,
    onTrack: onFeed,
    onConnected: () => setStatus("connected", "Connected. Your microphone is OFF until you turn it on."),
    onInterrupted: () => setStatus("connecting", "Connection interrupted, recovering…"),
    // A new session starts off air: the server never puts a reconnected seat live.
    onRetrying: () => setStatus("connecting", "Connection lost, reconnecting (you are off air)…"),
    onDropped: () => {
      feedMeter?.detach();
      el.audio.srcObject = null;
    },
  });

  async function connect() {
    if (connection === "connecting" || connection === "connected") return;
    ensureAudioContext(); // inside the click: allowed to start
    try {
      if (!token()) throw new P.HttpError(401, "enter the booth token from your link");
      if (!stream) await openMic();
      setStatus("connecting", "Connecting…");
      await link.start();
      openSocket();
    } catch (err) {
      link.stop();
      if (err.status === 401 || err.status === 403) el.tokenBlock.hidden = false;
      const what = err.name === "NotAllowedError" ? "the browser did not allow the microphone" : err.message;
      setStatus("error", `Could not connect: ${what}`);
      throw err;
    }
  }

  function disconnect() {
    link.stop();
    setStatus("idle", "Not connected.");
  }

  // --------------------------------------------------------------- state feed --
  function openSocket() {
    if (socket) return;
    clearTimeout(socketRetry);
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${window.location.host}${api}/ws`);
    socket = ws;
    ws.onopen = () => ws.send(JSON.stringify({ token: token(), seat: seatId }));
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.type === "state") render(frame.state);
    };
    ws.onclose = () => {
      socket = null;
      socketRetry = setTimeout(openSocket, RETRY_MS);
    };
  }

  // ----------------------------------------------------------------- render --
  function render(next) {
    state = next;
    const mine = me();
    if (!mine) return;
    const live = mine.live;
    const coughing = mine.coughing;
    const ready = mine.connected && connection === "connected";
    const target = mine.output === "B" ? state.retour : state.channel;

    el.live.dataset.live = live ? (coughing ? "coughing" : "true") : "false";
    el.live.textContent = live
      ? coughing
        ? `COUGH – MUTED (still live on ${channelName(target)})`
        : `ON AIR – LIVE on ${channelName(target)} (${mine.output})`
      : mine.dropped
        ? "MIC OFF – connection lost, turn the mic on again when ready"
        : "MIC OFF";
    el.micButton.dataset.live = String(live);
    el.micButton.setAttribute("aria-pressed", String(live));
    el.micButton.firstChild.textContent = live ? "Microphone off " : "Microphone on ";
    el.micButton.disabled = !ready;
    el.cough.disabled = !ready;
    el.cough.setAttribute("aria-pressed", String(coughing));

    // handover
    const request = state.handover;
    const partnerLive = state.live_seat && state.live_seat !== seatId;
    el.request.textContent = live ? "Offer handover" : "Request handover";
    el.request.disabled = !ready || !(live || partnerLive) || Boolean(request);
    const mineRequest = request && request.from === seatId;
    const canAccept = request && !mineRequest && (request.from_live ? !live : live);
    el.accept.disabled = !ready || !canAccept;
    el.cancel.disabled = !request;
    el.cancel.textContent = mineRequest ? "Cancel" : "Decline";
    const partner = state.seats.find((s) => s.seat === state.live_seat);
    el.takeOver.disabled = !ready || !partnerLive || !(partner?.coughing || (request && request.from_live));
    el.handoverText.textContent = !request
      ? "No request."
      : mineRequest
        ? request.from_live
          ? "You offered the microphone: waiting for a partner."
          : "You asked to take over: waiting for the live partner."
        : request.from_live
          ? `${request.from} offers you the microphone: Accept (H) to go live.`
          : `${request.from} asks to take over: Accept (H) hands over.`;

    // partners
    el.partners.replaceChildren(
      ...state.seats
        .filter((s) => s.seat !== seatId)
        .map((s) => {
          const li = document.createElement("li");
          li.dataset.live = String(s.live);
          const what = !s.connected
            ? s.dropped
              ? "connection lost"
              : "not connected"
            : s.live
              ? s.coughing
                ? `live on ${channelName(s.channel)}, coughing`
                : `LIVE on ${channelName(s.channel)}`
              : "connected, off air";
          li.textContent = `${s.seat}: ${what}`;
          return li;
        }),
    );

    // outputs, source, audience
    el.outputA.textContent = `A – ${channelName(state.channel)}`;
    el.outputBLabel.hidden = !state.retour;
    if (state.retour) el.outputB.textContent = `B – ${channelName(state.retour)} (retour)`;
    for (const radio of document.querySelectorAll('input[name="output"]')) {
      radio.checked = radio.value === mine.output;
      radio.disabled = !ready;
    }
    el.source.value = mine.source;
    el.source.disabled = !ready;
    el.hears.textContent = `You hear: ${channelName(mine.hears)}${mine.source === "auto" ? " (auto)" : ""}`;
    const listeners = state.audience?.[target] ?? 0;
    el.audience.textContent = `Listeners on ${channelName(target)}: ${listeners}`;
    el.slowDown.disabled = !ready;
    const slow = state.slow_down && state.slow_down.seat === seatId;
    el.slowDown.setAttribute("aria-pressed", String(Boolean(slow)));
    el.slowDown.textContent = slow ? "Slow-down requested (withdraw)" : "Ask the speaker to slow down";

    // headphone settings: the server's values, unless the user is moving a knob now
    if (!knobTimer) {
      for (const k of knobs) {
        k.input.value = String(mine[`${k.name}_db`]);
        k.out.textContent = `${k.input.value} dB`;
      }
    }
    for (const k of knobs) k.input.disabled = !ready;
    el.chatText.disabled = !ready;
    el.chatSend.disabled = !ready;

    // chat
    el.chatLog.replaceChildren(
      ...state.chat.map((m) => {
        const li = document.createElement("li");
        const at = new Date(m.at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        li.textContent = `${at} ${m.from}: ${m.text}`;
        return li;
      }),
    );
    el.chatLog.scrollTop = el.chatLog.scrollHeight;
  }

  // ------------------------------------------------------------- commands --
  const setMic = (on) => command(`${seatApi}/mic`, { on }).then(() => refresh());

  async function refresh() {
    render(await P.fetchJson(api, { token: token() }));
  }

  function toggleMic() {
    const mine = me();
    if (!mine || el.micButton.disabled) return;
    setMic(!mine.live).catch(() => {});
  }

  function cough(held) {
    if (held === coughHeld || el.cough.disabled) return;
    coughHeld = held;
    el.cough.setAttribute("aria-pressed", String(held));
    command(`${seatApi}/cough`, { held }).catch(() => {});
  }

  function handover(action) {
    return command(`${seatApi}/handover`, { action }).catch(() => {});
  }

  function handoverKey() {
    // H: accept a partner's request, or make one (offer if live, ask if a partner is live)
    if (!el.accept.disabled) handover("accept");
    else if (!el.request.disabled) handover("request");
  }

  function sendKnobs() {
    clearTimeout(knobTimer);
    knobTimer = setTimeout(() => {
      const body = {};
      for (const k of knobs) body[`${k.name}_db`] = Number(k.input.value);
      command(`${seatApi}/return`, body)
        .catch(() => {})
        .finally(() => (knobTimer = null));
    }, 150);
  }

  // ------------------------------------------------------------------ setup --
  function wire() {
    el.connect.addEventListener("click", () => {
      if (connection === "connecting" || connection === "connected") disconnect();
      else connect().catch(() => {});
    });
    el.micButton.addEventListener("click", toggleMic);
    el.cough.addEventListener("pointerdown", (e) => {
      el.cough.setPointerCapture?.(e.pointerId);
      cough(true);
    });
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      el.cough.addEventListener(type, () => cough(false));
    }
    el.request.addEventListener("click", () => handover("request"));
    el.accept.addEventListener("click", () => handover("accept"));
    el.cancel.addEventListener("click", () => handover("cancel"));
    el.takeOver.addEventListener("click", () => handover("take_over"));
    for (const radio of document.querySelectorAll('input[name="output"]')) {
      radio.addEventListener("change", () => command(`${seatApi}/output`, { output: radio.value }).catch(() => refresh()));
    }
    el.source.addEventListener("change", () => command(`${seatApi}/source`, { source: el.source.value }).catch(() => {}));
    for (const k of knobs) {
      k.input.addEventListener("input", () => {
        k.out.textContent = `${k.input.value} dB`;
        sendKnobs();
      });
    }
    el.slowDown.addEventListener("click", () => {
      const on = el.slowDown.getAttribute("aria-pressed") !== "true";
      command(`${seatApi}/slow-down`, { on }).catch(() => {});
    });
    el.chatForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = el.chatText.value.trim();
      if (!text) return;
      command(`${api}/chat`, { text, seat: seatId })
        .then(() => (el.chatText.value = ""))
        .catch(() => {});
    });
    el.mic.addEventListener("change", () => {
      if (stream) openMic().catch((err) => setStatus(connection, `Microphone: ${err.message}`));
    });
    navigator.mediaDevices?.addEventListener?.("devicechange", () => {
      P.listDevices(el.mic, "audioinput", "Default microphone").catch(() => {});
    });
    // Keyboard: M mic, hold C cough, H handover; never while typing.
    document.addEventListener("keydown", (e) => {
      const typing = e.target.closest?.("input[type=text], textarea, select");
      if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
      const key = e.key.toLowerCase();
      if (key === "c") {
        e.preventDefault();
        cough(true);
      } else if (e.repeat) {
        return;
      } else if (key === "m") {
        e.preventDefault();
        toggleMic();
      } else if (key === "h") {
        e.preventDefault();
        handoverKey();
      }
    });
    document.addEventListener("keyup", (e) => {
      if (e.key.toLowerCase() === "c") cough(false);
    });
    window.addEventListener("blur", () => cough(false)); // a key held while leaving the window
    window.addEventListener("pagehide", () => link.stop(true));
    setInterval(() => {
      el.clock.textContent = new Date().toLocaleTimeString([], { hour12: false });
    }, 250);
  }

  async function load() {
    wire();
    event = await P.fetchJson("/api/event");
    channels = Object.fromEntries(event.channels.map((c) => [c.id, c]));
    el.eventName.textContent = event.name;
    el.title.textContent = `Booth ${boothId.toUpperCase()} – seat ${seatId}`;
    document.title = `Booth ${boothId} / ${seatId} – ${event.name}`;
    for (const c of event.channels) {
      if (c.id === "floor") continue;
      const option = document.createElement("option");
      option.value = c.id;
      option.textContent = `Relay: ${c.name}`;
      if (c.language) option.lang = c.language;
      el.source.append(option);
    }
    if (!P.tokenFromPage(el.token)) {
      el.tokenBlock.hidden = false;
      setStatus("idle", "Enter the booth token, then press Connect the console.");
      return;
    }
    try {
      await refresh();
      if (!me()) throw new P.HttpError(404, `no seat ${seatId} in booth ${boothId}`);
      openSocket();
      setStatus("idle", "Choose your microphone, then press Connect the console.");
    } catch (err) {
      if (err.status === 401 || err.status === 403) el.tokenBlock.hidden = false;
      setStatus("error", `Cannot open this booth: ${err.message}`);
    }
  }

  window.booth = {
    get state() {
      return state;
    },
    get connection() {
      return connection;
    },
    get live() {
      return Boolean(me()?.live);
    },
    get micAnalyser() {
      return micMeter?.analyser;
    },
    get feedAnalyser() {
      return feedMeter?.analyser;
    },
    connect,
    setMic,
  };

  load().catch((err) => setStatus("error", `Cannot load the event: ${err.message}`));
})();
