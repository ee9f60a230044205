// Listener page: pick a language channel and listen to it over WHEP (WebRTC).
//
// Server contract:
//   GET    /api/event                 event info, ICE servers, channels
//   POST   /whep/{channel}            SDP offer (application/sdp) -> 201 answer + Location
//   POST   {Location}/channel         {"channel": id} -> 200 (switch, no renegotiation)
//   DELETE {Location}                 end the session
// Errors are JSON {"error": "...", "detail": "..."} with a 4xx status.
//
// Exposed for tests and meters: window.listener
//   { state, channel, analyser, audioContext, start(), switchTo(id), stop() }
"use strict";

(() => {
  // All page text lives here so that other languages can be added later.
  // "{name}" placeholders are filled in by t().
  const TEXT = {
    loadingTitle: "Interpretation",
    languageHeading: "Language",
    tokenLabel: "Listener token",
    tokenHint: "Provided by the organisers.",
    volumeLabel: "Volume",
    volumeValue: "{percent} per cent",
    start: "Start listening",
    stop: "Stop listening",
    retry: "Try again",
    statusLoading: "Loading event information…",
    statusIdle: "Not listening. Choose a language, then press Start listening.",
    statusConnecting: "Connecting to {channel}…",
    statusReconnecting: "Connection interrupted, trying to recover…",
    statusLive: "Live: {channel}",
    statusSwitching: "Switching to {channel}…",
    statusError: "Error: {detail}",
    errorEvent: "could not load the event information ({detail}).",
    errorTokenMissing: "please enter your listener token.",
    errorTokenInvalid: "the listener token is missing or not valid ({detail}).",
    errorConnect: "could not connect ({detail}).",
    errorSwitch: "could not switch to {channel} ({detail}). Still listening to {current}.",
    errorConnectionFailed: "the connection was lost.",
    errorTimeout: "the connection timed out.",
    errorNoWebRTC: "this browser does not support WebRTC audio.",
    errorHttp: "HTTP {status}",
    floorFallback: "Floor (original)",
  };

  const ICE_GATHERING_CAP_MS = 2000;
  const CONNECT_TIMEOUT_MS = 20000;
  const DEFAULT_CHANNEL = "floor";

  function t(key, vars = {}) {
    const template = TEXT[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  }

  const $ = (id) => document.getElementById(id);
  const el = {
    title: $("event-name"),
    venue: $("event-venue"),
    channels: $("channels"),
    tokenBlock: $("token-block"),
    token: $("token"),
    start: $("start"),
    status: $("status"),
    volume: $("volume"),
    audio: $("remote-audio"),
  };

  // ---------------------------------------------------------------- state --
  let event = null; // JSON from /api/event
  let eventPromise = null;
  let state = "idle"; // idle | connecting | live | error
  let channel = DEFAULT_CHANNEL; // selected channel (what the user asked for)
  let serverChannel = null; // channel the current session is on, per the server
  let pc = null;
  let sessionUrl = null; // absolute URL of the WHEP session (from Location)
  let connectTimer = null;
  let switchChain = Promise.resolve();
  let attempt = 0; // increments per start(); stale async work checks it

  let audioContext = null;
  let gainNode = null;
  let analyser = null;
  let sourceNode = null;

  // ------------------------------------------------------------- helpers --
  function channelInfo(id) {
    return event?.channels?.find((c) => c.id === id) ?? null;
  }

  function channelName(id) {
    const info = channelInfo(id);
    if (info) return info.name;
    return id === DEFAULT_CHANNEL ? t("floorFallback") : id;
  }

  function isValidChannel(id) {
    return typeof id === "string" && channelInfo(id) !== null;
  }

  function tokenValue() {
    return el.token.value.trim();
  }

  function authHeaders() {
    const token = tokenValue();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function errorDetail(response) {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // ignore: fall back to the status code
    }
    try {
      const body = JSON.parse(text);
      if (body && typeof body.detail === "string" && body.detail) return body.detail;
      if (body && typeof body.error === "string" && body.error) return body.error;
      if (body && body.detail) return JSON.stringify(body.detail).slice(0, 200);
    } catch {
      // not JSON
    }
    const plain = text.trim();
    if (plain && !plain.startsWith("<") && plain.length <= 200) return plain; // not an HTML page
    return t("errorHttp", { status: response.status });
  }

  function volumeGain() {
    return Number(el.volume.value) / 100;
  }

  // ------------------------------------------------------------ rendering --
  function applyStaticText() {
    for (const node of document.querySelectorAll("[data-text]")) {
      node.textContent = t(node.dataset.text);
    }
    updateVolumeText();
  }

  function updateVolumeText() {
    el.volume.setAttribute("aria-valuetext", t("volumeValue", { percent: el.volume.value }));
  }

  function setStatus(newState, message) {
    el.status.dataset.state = newState;
    el.status.textContent = message;
  }

  function setState(newState, message) {
    state = newState;
    if (message === undefined) {
      const name = channelName(serverChannel ?? channel);
      message = {
        idle: t("statusIdle"),
        connecting: t("statusConnecting", { channel: name }),
        live: t("statusLive", { channel: name }),
        error: t("statusError", { detail: "" }),
      }[newState];
    }
    setStatus(newState, message);
    const active = newState === "connecting" || newState === "live";
    el.start.textContent = active ? t("stop") : newState === "error" ? t("retry") : t("start");
    el.start.dataset.active = active ? "true" : "false";
    el.start.disabled = event === null && newState !== "error";
    document.body.dataset.state = newState;
  }

  function setError(detail) {
    setState("error", t("statusError", { detail }));
  }

  function renderChannels() {
    el.channels.replaceChildren();
    for (const c of event.channels) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "channel";
      button.dataset.channel = c.id;
      button.textContent = c.name;
      if (c.language) button.lang = c.language;
      button.setAttribute("aria-pressed", String(c.id === channel));
      button.addEventListener("click", () => {
        listener.switchTo(c.id).catch(() => {
          // errors are already shown in the status line
        });
      });
      el.channels.append(button);
    }
  }

  function markSelected() {
    for (const button of el.channels.querySelectorAll("button[data-channel]")) {
      button.setAttribute("aria-pressed", String(button.dataset.channel === channel));
    }
  }

  function updateUrl() {
    const url = new URL(window.location.href);
    url.searchParams.set("lang", channel);
    history.replaceState(history.state, "", url);
  }

  // ---------------------------------------------------------------- event --
  async function loadEvent() {
    setStatus("idle", t("statusLoading"));
    const response = await fetch("/api/event", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(await errorDetail(response));
    const data = await response.json();
    if (!data || !Array.isArray(data.channels) || data.channels.length === 0) {
      throw new Error("no channels");
    }
    event = data;

    document.title = event.name || t("loadingTitle");
    el.title.textContent = event.name || t("loadingTitle");
    if (event.venue) {
      el.venue.textContent = event.venue;
      el.venue.hidden = false;
    }

    const params = new URLSearchParams(window.location.search);
    const wanted = params.get("lang");
    if (isValidChannel(wanted)) channel = wanted;
    else if (!isValidChannel(channel)) channel = event.channels[0].id;

    el.tokenBlock.hidden = !event.listener_token_required;
    const urlToken = params.get("token");
    if (urlToken && !el.token.value) el.token.value = urlToken;

    renderChannels();
    setState("idle");
    return event;
  }

  function ensureEvent() {
    if (event) return Promise.resolve(event);
    if (!eventPromise) {
      eventPromise = loadEvent().catch((err) => {
        eventPromise = null; // allow a retry
        setError(t("errorEvent", { detail: err.message }));
        el.start.disabled = false; // "Try again" reloads the event information
        throw err;
      });
    }
    return eventPromise;
  }

  // ---------------------------------------------------------------- audio --
  // Must be called synchronously inside the user gesture (click) so that the
  // AudioContext is allowed to start.
  function ensureAudioGraph() {
    if (!audioContext) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioContext = new Ctx({ latencyHint: "interactive" });
      gainNode = audioContext.createGain();
      gainNode.gain.value = volumeGain();
      analyser = audioContext.createAnalyser();
      analyser.fftSize = 4096; // ~11.7 Hz bins at 48 kHz
      // No smoothing: each read reflects the current audio (tests read the
      // dominant frequency right after a switch); meters smooth on their own.
      analyser.smoothingTimeConstant = 0;
      gainNode.connect(analyser);
      analyser.connect(audioContext.destination);
    }
    if (audioContext.state === "suspended") {
      audioContext.resume().catch(() => {});
    }
  }

  function attachStream(stream) {
    // Chromium plays remote WebRTC audio into WebAudio only if the stream is
    // also attached to a media element; the element stays muted.
    el.audio.muted = true;
    el.audio.srcObject = stream;
    el.audio.play().catch(() => {});
    if (sourceNode) sourceNode.disconnect();
    sourceNode = audioContext.createMediaStreamSource(stream);
    sourceNode.connect(gainNode);
  }

  function detachStream() {
    if (sourceNode) {
      sourceNode.disconnect();
      sourceNode = null;
    }
    el.audio.srcObject = null;
  }

  // ---------------------------------------------------------------- WebRTC --
  function waitForIceGathering(peer) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        peer.removeEventListener("icegatheringstatechange", onState);
        peer.removeEventListener("icecandidate", onCandidate);
        resolve();
      };
      const onState = () => {
        if (peer.iceGatheringState === "complete") done();
      };
      const onCandidate = (e) => {
        if (!e.candidate) done();
      };
      const timer = setTimeout(done, ICE_GATHERING_CAP_MS);
      peer.addEventListener("icegatheringstatechange", onState);
      peer.addEventListener("icecandidate", onCandidate);
    });
  }

  function closePeer() {
    clearTimeout(connectTimer);
    connectTimer = null;
    if (pc) {
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.oniceconnectionstatechange = null;
      pc.close();
      pc = null;
    }
    detachStream();
  }

  function deleteSession(keepalive = false) {
    if (!sessionUrl) return;
    const url = sessionUrl;
    sessionUrl = null;
    serverChannel = null;
    fetch(url, { method: "DELETE", headers: authHeaders(), keepalive }).catch(() => {});
  }

  // Overall connection state; falls back to the ICE state on browsers
  // without RTCPeerConnection.connectionState.
  function peerState(peer) {
    if (typeof peer.connectionState === "string") return peer.connectionState;
    const ice = peer.iceConnectionState;
    return { completed: "connected", checking: "connecting" }[ice] ?? ice;
  }

  function onPeerState(peer, myAttempt) {
    if (myAttempt !== attempt || peer !== pc) return;
    const conn = peerState(peer);
    if (conn === "connected") {
      if (state !== "live") {
        clearTimeout(connectTimer);
        if (audioContext && audioContext.state === "suspended") {
          audioContext.resume().catch(() => {});
        }
        setState("live");
        updateUrl();
      }
    } else if (conn === "failed") {
      closePeer();
      deleteSession();
      setError(t("errorConnectionFailed"));
    } else if (conn === "disconnected" && state === "live") {
      setState("connecting", t("statusReconnecting"));
    }
  }

  async function connect(myAttempt) {
    const iceServers = Array.isArray(event.ice_servers) ? event.ice_servers : [];
    const peer = new RTCPeerConnection({ iceServers });
    pc = peer;
    peer.addTransceiver("audio", { direction: "recvonly" });
    peer.ontrack = (e) => {
      if (myAttempt !== attempt) return;
      const stream = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      attachStream(stream);
    };
    peer.onconnectionstatechange = () => onPeerState(peer, myAttempt);
    peer.oniceconnectionstatechange = () => onPeerState(peer, myAttempt);

    await peer.setLocalDescription(await peer.createOffer());
    await waitForIceGathering(peer);
    if (myAttempt !== attempt) return;

    const requested = channel;
    const response = await fetch(`/whep/${encodeURIComponent(requested)}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Accept: "application/sdp", ...authHeaders() },
      body: peer.localDescription.sdp,
    });
    if (myAttempt !== attempt) {
      // Stopped while the offer was in flight: end the session we just made.
      const loc = response.headers.get("Location");
      if (response.status === 201 && loc) {
        fetch(new URL(loc, response.url || window.location.href), {
          method: "DELETE",
          headers: authHeaders(),
        }).catch(() => {});
      }
      return;
    }
    if (response.status !== 201) {
      const detail = await errorDetail(response);
      const err = new Error(detail);
      err.status = response.status;
      throw err;
    }
    const location = response.headers.get("Location");
    if (location) sessionUrl = new URL(location, response.url || window.location.href).href;
    serverChannel = requested;
    const answer = await response.text();
    await peer.setRemoteDescription({ type: "answer", sdp: answer });

    // The user may have picked another language while we were connecting.
    if (channel !== serverChannel) queueSwitch();
  }

  // --------------------------------------------------------------- switch --
  async function postSwitch(target) {
    const response = await fetch(`${sessionUrl.replace(/\/+$/, "")}/channel`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...authHeaders() },
      body: JSON.stringify({ channel: target }),
    });
    if (!response.ok) throw new Error(await errorDetail(response));
    return response.json().catch(() => ({}));
  }

  // Switches are serialised; only the latest selection is sent.
  function queueSwitch() {
    const run = async () => {
      const target = channel;
      if (!sessionUrl || target === serverChannel) return;
      if (state === "live") setStatus("live", t("statusSwitching", { channel: channelName(target) }));
      try {
        await postSwitch(target);
        serverChannel = target;
        if (state === "live") {
          setState("live");
          updateUrl();
        }
      } catch (err) {
        if (channel === target) {
          channel = serverChannel ?? channel;
          markSelected();
        }
        if (state === "live") {
          setStatus(
            "live",
            t("errorSwitch", {
              channel: channelName(target),
              detail: err.message,
              current: channelName(serverChannel),
            }),
          );
        }
        throw err;
      }
    };
    const p = switchChain.then(run);
    switchChain = p.catch(() => {});
    return p;
  }

  // ------------------------------------------------------------ public API --
  async function start() {
    if (state === "connecting" || state === "live") return;
    // Create/resume the AudioContext while still inside the user gesture.
    try {
      ensureAudioGraph();
    } catch (err) {
      setError(t("errorNoWebRTC"));
      throw err;
    }
    const myAttempt = ++attempt;
    await ensureEvent(); // on failure the status line already shows the error
    if (myAttempt !== attempt) return;
    if (typeof RTCPeerConnection === "undefined") {
      setError(t("errorNoWebRTC"));
      throw new Error("no WebRTC");
    }
    if (event.listener_token_required && !tokenValue()) {
      setError(t("errorTokenMissing"));
      el.token.focus();
      throw new Error("listener token required");
    }

    setState("connecting");
    connectTimer = setTimeout(() => {
      if (myAttempt === attempt && state === "connecting") {
        attempt++; // abandon the connect() still in flight
        closePeer();
        deleteSession();
        setError(t("errorTimeout"));
      }
    }, CONNECT_TIMEOUT_MS);

    try {
      await connect(myAttempt);
    } catch (err) {
      if (myAttempt !== attempt) return;
      closePeer();
      deleteSession();
      if (err.status === 401 || err.status === 403) {
        el.tokenBlock.hidden = false;
        setError(t("errorTokenInvalid", { detail: err.message }));
        el.token.focus();
      } else {
        setError(t("errorConnect", { detail: err.message }));
      }
      throw err;
    }
  }

  function stop() {
    attempt++;
    closePeer();
    deleteSession();
    setState("idle");
    return Promise.resolve();
  }

  function switchTo(id) {
    if (!isValidChannel(id)) {
      return Promise.reject(new Error(`unknown channel: ${id}`));
    }
    channel = id;
    markSelected();
    if (!sessionUrl) {
      // Not started (or still connecting): just select; connect() picks it up.
      return Promise.resolve();
    }
    return queueSwitch();
  }

  const listener = {
    get state() {
      return state;
    },
    get channel() {
      return channel;
    },
    get analyser() {
      return analyser;
    },
    get audioContext() {
      return audioContext;
    },
    start,
    stop,
    switchTo,
  };
  window.listener = listener;

  // --------------------------------------------------------------- wiring --
  el.start.addEventListener("click", () => {
    const action = state === "connecting" || state === "live" ? stop : start;
    action().catch(() => {
      // errors are already shown in the status line
    });
  });

  el.volume.addEventListener("input", () => {
    updateVolumeText();
    if (gainNode && audioContext) {
      gainNode.gain.setTargetAtTime(volumeGain(), audioContext.currentTime, 0.02);
    }
  });

  window.addEventListener("pagehide", () => {
    attempt++;
    deleteSession(true);
    closePeer();
  });

  // Coming back from the back/forward cache: the session was ended on pagehide.
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && event && state !== "idle") setState("idle");
  });

  applyStaticText();
  setState("idle", t("statusLoading"));
  ensureEvent().catch(() => {});
})();
