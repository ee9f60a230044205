// Floor station: the room computer wired to the sound desk. Sends the desk feed over WHIP with
// all browser voice processing off, and plays the room return (remote panellists and media,
// never the room itself) on the chosen output. Reconnects by itself until stopped.
//
// Server contract:
//   GET  /api/event          ICE servers
//   POST /whip/floor         SDP offer, Bearer floor token -> 201 answer (+ the room return)
//   DELETE {Location}        stop
//
// Exposed for tests: window.floorStation
//   { state, inputAnalyser, returnAnalyser, inputSettings, start(), stop() }
"use strict";

(() => {
  const P = window.Publisher;
  const RETRY_MS = 2000;
  // A line input from a desk: no echo cancellation, noise suppression or AGC.
  const PROCESSING = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

  const $ = (id) => document.getElementById(id);
  const el = {
    title: $("event-name"),
    tokenBlock: $("token-block"),
    token: $("token"),
    input: $("input"),
    inputLevel: $("input-level"),
    inputLevelText: $("input-level-text"),
    output: $("output"),
    returnLevel: $("return-level"),
    returnLevelText: $("return-level-text"),
    volume: $("volume"),
    start: $("start"),
    status: $("status"),
    audio: $("return-audio"),
  };

  let event = null;
  let state = "loading"; // loading | idle | connecting | live | error
  let audioContext = null;
  let inputMeter = null;
  let returnMeter = null;
  let stream = null;

  function token() {
    return el.token.value.trim();
  }

  function setStatus(newState, message) {
    state = newState;
    el.status.dataset.state = newState;
    el.status.textContent = message;
    const active = newState === "connecting" || newState === "live";
    el.start.textContent = active ? "Stop the floor" : newState === "error" ? "Try again" : "Start the floor";
    el.start.dataset.active = String(active);
    el.start.disabled = event === null;
    document.body.dataset.state = newState;
  }

  function ensureAudioContext() {
    if (!audioContext) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioContext = new Ctx({ latencyHint: "interactive" });
      inputMeter = new P.LevelMeter(audioContext, el.inputLevel, el.inputLevelText);
      returnMeter = new P.LevelMeter(audioContext, el.returnLevel, el.returnLevelText);
    }
    if (audioContext.state === "suspended") audioContext.resume().catch(() => {});
  }

  async function openInput() {
    const next = await P.openInput(el.input.value, PROCESSING);
    const track = next.getAudioTracks()[0];
    if (track.contentHint !== undefined) track.contentHint = "music"; // a desk mix, not a voice
    if (link.session) await link.session.sender.replaceTrack(track);
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = next;
    inputMeter.attach(stream);
    await P.listDevices(el.input, "audioinput", "Default input");
    await P.listDevices(el.output, "audiooutput", "Default output");
  }

  function onReturn(remote) {
    el.audio.srcObject = remote;
    el.audio.volume = Number(el.volume.value) / 100;
    if (el.output.value && el.audio.setSinkId) el.audio.setSinkId(el.output.value).catch(() => {});
    el.audio.play().catch(() => {});
    returnMeter.attach(remote);
  }

  // The desk feed goes out; the room return comes back. A failed connection is retried, and
  // so is a failed retry: the room computer has nobody watching it.
  const link = new P.WhipLink({
    url: () => "/whip/floor",
    token,
    stream: () => stream,
    iceServers: () => event.ice_servers,
    retryMs: RETRY_MS,
    retryOnError: true,
    onTrack: onReturn,
    onConnected: () => setStatus("live", "Live: the desk feed is on the floor; the room return is playing."),
    onInterrupted: () => setStatus("connecting", "Connection interrupted, recovering…"),
    onRetrying: (err) => setStatus("connecting", err ? `Reconnecting (${err.message})…` : "Connection lost, reconnecting…"),
    onDropped: () => {
      returnMeter?.detach();
      el.audio.srcObject = null;
    },
  });

  async function start() {
    if (state === "connecting" || state === "live") return;
    ensureAudioContext();
    try {
      if (!token()) throw new P.HttpError(401, "enter the floor token");
      if (!stream) await openInput();
      setStatus("connecting", "Connecting…");
      await link.start();
    } catch (err) {
      link.stop();
      if (err.status === 401 || err.status === 403) el.tokenBlock.hidden = false;
      setStatus("error", `Could not start: ${err.message}`);
      throw err;
    }
  }

  function stop() {
    link.stop();
    setStatus("idle", "Stopped. The floor carries no desk feed from this station.");
    return Promise.resolve();
  }

  async function load() {
    event = await P.fetchJson("/api/event");
    el.title.textContent = `Floor station – ${event.name}`;
    document.title = `Floor station – ${event.name}`;
    if (!P.tokenFromPage(el.token)) el.tokenBlock.hidden = false;
    setStatus("idle", "Choose the desk input, then press Start the floor.");
  }

  window.floorStation = {
    get state() {
      return state;
    },
    get inputAnalyser() {
      return inputMeter?.analyser ?? null;
    },
    get returnAnalyser() {
      return returnMeter?.analyser ?? null;
    },
    // what the browser applied to the input (echo cancellation etc.)
    get inputSettings() {
      return stream?.getAudioTracks()[0]?.getSettings() ?? null;
    },
    start,
    stop,
  };

  el.start.addEventListener("click", () => {
    (state === "connecting" || state === "live" ? stop : start)().catch(() => {});
  });
  el.input.addEventListener("change", () => {
    if (stream) openInput().catch((err) => setStatus("error", `Input: ${err.message}`));
  });
  el.output.addEventListener("change", () => {
    if (el.audio.setSinkId) {
      el.audio.setSinkId(el.output.value).catch((err) => setStatus(state, `Output: ${err.message}`));
    }
  });
  el.output.disabled = !("setSinkId" in HTMLMediaElement.prototype);
  el.volume.addEventListener("input", () => (el.audio.volume = Number(el.volume.value) / 100));
  window.addEventListener("pagehide", () => link.stop(true));

  load().catch((err) => setStatus("error", `Could not load the event: ${err.message}`));
})();
