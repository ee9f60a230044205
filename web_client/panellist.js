// Remote panellist page: speak into the floor over WHIP and hear the floor without your own
// voice (or a language channel), on the same connection.
//
// Server contract:
//   GET  /api/event                          channels, ICE servers
//   GET  /api/panellists/{id}                (Bearer panellist token) name; checks the token
//   POST /whip/panellist/{id}?listen={ch}    SDP offer -> 201 answer + Location
//   POST {Location}/listen                   {"channel": ch} -> 200 (no renegotiation)
//   DELETE {Location}                        leave
//
// Exposed for tests: window.panellist
//   { state, channel, muted, micAnalyser, returnAnalyser, micSettings, join(), leave(),
//     setChannel(id), setMuted(bool) }
"use strict";

(() => {
  const P = window.Publisher;
  const RETRY_MS = 2000;
  // Echo cancellation stays on: the panellist's loudspeaker plays the floor back.
  const PROCESSING = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

  const $ = (id) => document.getElementById(id);
  const el = {
    title: $("event-name"),
    who: $("who"),
    tokenBlock: $("token-block"),
    token: $("token"),
    mic: $("mic"),
    micLevel: $("mic-level"),
    micLevelText: $("mic-level-text"),
    check: $("check"),
    mute: $("mute"),
    listen: $("listen"),
    speaker: $("speaker"),
    volume: $("volume"),
    join: $("join"),
    status: $("status"),
    audio: $("return-audio"),
  };

  const panellistId = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop() || "");
  let event = null;
  let state = "loading"; // loading | idle | connecting | live | error
  let channel = new URLSearchParams(window.location.search).get("listen") || "floor";
  let muted = false;
  let audioContext = null;
  let micMeter = null;
  let returnMeter = null;
  let stream = null; // the microphone

  function token() {
    return el.token.value.trim();
  }

  function setStatus(newState, message) {
    state = newState;
    el.status.dataset.state = newState;
    el.status.textContent = message;
    const active = newState === "connecting" || newState === "live";
    el.join.textContent = active ? "Leave the panel" : newState === "error" ? "Try again" : "Join the panel";
    el.join.dataset.active = String(active);
    el.join.disabled = event === null;
    document.body.dataset.state = newState;
  }

  function liveMessage() {
    const name = el.listen.selectedOptions[0]?.textContent ?? channel;
    return muted ? `Live, microphone MUTED. You hear: ${name}` : `Live: the panel hears you. You hear: ${name}`;
  }

  // ------------------------------------------------------------------ audio --
  function ensureAudioContext() {
    if (!audioContext) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioContext = new Ctx({ latencyHint: "interactive" });
      micMeter = new P.LevelMeter(audioContext, el.micLevel, el.micLevelText);
      returnMeter = new P.LevelMeter(audioContext, document.createElement("meter"), null);
    }
    if (audioContext.state === "suspended") audioContext.resume().catch(() => {});
  }

  async function openMic() {
    const next = await P.openInput(el.mic.value, PROCESSING);
    const track = next.getAudioTracks()[0];
    track.enabled = !muted;
    if (link.session) await link.session.sender.replaceTrack(track);
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = next;
    micMeter.attach(stream);
    el.mute.disabled = false;
    await P.listDevices(el.mic, "audioinput", "Default microphone");
    await P.listDevices(el.speaker, "audiooutput", "Default output");
  }

  async function ensureMic() {
    ensureAudioContext();
    if (!stream) await openMic();
  }

  function setMuted(on) {
    muted = Boolean(on);
    if (stream) stream.getAudioTracks().forEach((t) => (t.enabled = !muted));
    el.mute.setAttribute("aria-pressed", String(muted));
    el.mute.textContent = muted ? "Unmute" : "Mute";
    if (state === "live") setStatus("live", liveMessage());
  }

  // ----------------------------------------------------------------- WebRTC --
  function onReturn(remote) {
    el.audio.srcObject = remote;
    el.audio.volume = Number(el.volume.value) / 100;
    el.audio.play().catch(() => {});
    returnMeter.attach(remote);
  }

  // The microphone goes out; the chosen channel comes back (without the panellist's own voice).
  const link = new P.WhipLink({
    url: () => `/whip/panellist/${encodeURIComponent(panellistId)}?listen=${encodeURIComponent(channel)}`,
    token,
    stream: () => stream,
    iceServers: () => event.ice_servers,
    retryMs: RETRY_MS,
    onTrack: onReturn,
    onConnected: () => setStatus("live", liveMessage()),
    onInterrupted: () => setStatus("connecting", "Connection interrupted, recovering…"),
    onRetrying: () => setStatus("connecting", "Connection lost, reconnecting…"),
    onDropped: () => {
      returnMeter?.detach();
      el.audio.srcObject = null;
    },
  });

  // ------------------------------------------------------------- commands --
  async function join() {
    if (state === "connecting" || state === "live") return;
    ensureAudioContext(); // inside the click: allowed to start
    try {
      if (!token()) throw new P.HttpError(401, "enter the panellist token from your link");
      await ensureMic();
      setStatus("connecting", "Connecting…");
      await link.start();
    } catch (err) {
      link.stop();
      if (err.status === 401 || err.status === 403) el.tokenBlock.hidden = false;
      const what = err.name === "NotAllowedError" ? "the browser did not allow the microphone" : err.message;
      setStatus("error", `Could not join: ${what}`);
      throw err;
    }
  }

  function leave() {
    link.stop();
    setStatus("idle", "Not connected. Press Join the panel when you are ready.");
    return Promise.resolve();
  }

  async function setChannel(id) {
    if (![...el.listen.options].some((o) => o.value === id)) throw new Error(`unknown channel ${id}`);
    const previous = channel;
    channel = id;
    el.listen.value = id;
    const sessionUrl = link.session?.sessionUrl;
    if (!sessionUrl) return;
    try {
      await P.fetchJson(`${sessionUrl}/listen`, { token: token(), method: "POST", body: { channel: id } });
      if (state === "live") setStatus("live", liveMessage());
    } catch (err) {
      channel = previous;
      el.listen.value = previous;
      setStatus(state, `Could not switch: ${err.message}`);
      throw err;
    }
  }

  // ------------------------------------------------------------------ setup --
  async function load() {
    event = await P.fetchJson("/api/event");
    el.title.textContent = event.name;
    document.title = `Panellist – ${event.name}`;
    for (const c of event.channels) {
      if (c.id === "floor") continue;
      const option = document.createElement("option");
      option.value = c.id;
      option.textContent = c.name;
      if (c.language) option.lang = c.language;
      el.listen.append(option);
    }
    if (![...el.listen.options].some((o) => o.value === channel)) channel = "floor";
    el.listen.value = channel;
    if (!P.tokenFromPage(el.token)) {
      el.tokenBlock.hidden = false;
      setStatus("idle", "Enter your panellist token, then press Join the panel.");
      return;
    }
    await whoAmI();
  }

  async function whoAmI() {
    try {
      const me = await P.fetchJson(`/api/panellists/${encodeURIComponent(panellistId)}`, { token: token() });
      el.who.textContent = `Joining as ${me.name}`;
      setStatus("idle", "Not connected. Check your microphone, then press Join the panel.");
    } catch (err) {
      if (err.status === 401 || err.status === 403) el.tokenBlock.hidden = false;
      setStatus("error", `This link does not work: ${err.message}`);
    }
  }

  window.panellist = {
    get state() {
      return state;
    },
    get channel() {
      return channel;
    },
    get muted() {
      return muted;
    },
    get micAnalyser() {
      return micMeter?.analyser ?? null;
    },
    get returnAnalyser() {
      return returnMeter?.analyser ?? null;
    },
    get micSettings() {
      return stream?.getAudioTracks()[0]?.getSettings() ?? null;
    },
    join,
    leave,
    setChannel,
    setMuted,
  };

  el.join.addEventListener("click", () => {
    (state === "connecting" || state === "live" ? leave : join)().catch(() => {});
  });
  el.check.addEventListener("click", () => {
    ensureMic().catch((err) => setStatus("error", `Microphone: ${err.message}`));
  });
  el.mute.addEventListener("click", () => setMuted(!muted));
  el.mic.addEventListener("change", () => {
    if (stream) openMic().catch((err) => setStatus("error", `Microphone: ${err.message}`));
  });
  el.listen.addEventListener("change", () => setChannel(el.listen.value).catch(() => {}));
  el.speaker.addEventListener("change", () => {
    if (el.audio.setSinkId) el.audio.setSinkId(el.speaker.value).catch(() => {});
  });
  el.speaker.disabled = !("setSinkId" in HTMLMediaElement.prototype);
  el.volume.addEventListener("input", () => (el.audio.volume = Number(el.volume.value) / 100));
  el.token.addEventListener("change", () => whoAmI());
  window.addEventListener("pagehide", () => link.stop(true));

  load().catch((err) => setStatus("error", `Could not load the event: ${err.message}`));
})();
