// Shared by the panellist page, the floor station and the booth console: microphone, level
// meter, WHIP publishing with a return feed (one session that reconnects: WhipLink), and
// output device choice. Plain JS, no framework.
//
// Server contract (WHIP, RFC 9725, no trickle ICE):
//   POST   /whip/...            SDP offer (application/sdp), Bearer token -> 201 answer + Location
//   DELETE {Location}           end the session
// Errors are JSON {"error": "...", "detail": "..."}.
"use strict";

window.Publisher = (() => {
  const ICE_GATHERING_CAP_MS = 2000;

  async function errorDetail(response) {
    let text = "";
    try {
      text = await response.text();
    } catch {
      // fall back to the status code
    }
    try {
      const body = JSON.parse(text);
      if (body && typeof body.detail === "string" && body.detail) return body.detail;
    } catch {
      // not JSON
    }
    const plain = text.trim();
    if (plain && !plain.startsWith("<") && plain.length <= 200) return plain;
    return `HTTP ${response.status}`;
  }

  class HttpError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function fetchJson(url, { token, method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new HttpError(response.status, await errorDetail(response));
    return response.json();
  }

  function waitForIceGathering(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", onState);
        resolve();
      };
      const onState = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, ICE_GATHERING_CAP_MS);
      pc.addEventListener("icegatheringstatechange", onState);
    });
  }

  // The microphone (or line input) as a MediaStream. `processing` false turns off echo
  // cancellation, noise suppression and AGC: a sound desk's line feed must arrive untouched.
  async function openInput(deviceId, processing) {
    const audio = {
      echoCancellation: processing.echoCancellation,
      noiseSuppression: processing.noiseSuppression,
      autoGainControl: processing.autoGainControl,
    };
    if (deviceId) audio.deviceId = { exact: deviceId };
    return navigator.mediaDevices.getUserMedia({ audio, video: false });
  }

  // Fill a <select> with devices of one kind; keeps the current choice when it still exists.
  async function listDevices(select, kind, defaultLabel) {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === kind);
    const current = select.value;
    select.replaceChildren();
    const first = document.createElement("option");
    first.value = "";
    first.textContent = defaultLabel;
    select.append(first);
    devices.forEach((d, i) => {
      if (!d.deviceId || d.deviceId === "default") return;
      const option = document.createElement("option");
      option.value = d.deviceId;
      option.textContent = d.label || `${kind === "audioinput" ? "Input" : "Output"} ${i + 1}`;
      select.append(option);
    });
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  // Peak level of a stream in dBFS, shown in a <meter> and as text; the analyser is exposed
  // for tests. WebAudio reads the stream only: nothing is played from here.
  class LevelMeter {
    constructor(audioContext, meterEl, textEl) {
      this.context = audioContext;
      this.meter = meterEl;
      this.text = textEl;
      this.analyser = audioContext.createAnalyser();
      this.analyser.fftSize = 4096; // ~11.7 Hz bins at 48 kHz, for frequency checks
      this.analyser.smoothingTimeConstant = 0;
      this.samples = new Float32Array(this.analyser.fftSize);
      this.source = null;
      this.db = -Infinity;
      this.timer = setInterval(() => this.update(), 100);
    }

    attach(stream) {
      this.detach();
      this.source = this.context.createMediaStreamSource(stream);
      this.source.connect(this.analyser);
    }

    detach() {
      if (this.source) this.source.disconnect();
      this.source = null;
    }

    update() {
      let peak = 0;
      if (this.source) {
        this.analyser.getFloatTimeDomainData(this.samples);
        for (const v of this.samples) peak = Math.max(peak, Math.abs(v));
      }
      this.db = peak > 0 ? 20 * Math.log10(peak) : -Infinity;
      const shown = Math.max(-60, Math.min(0, this.db));
      this.meter.value = shown;
      const label = this.db === -Infinity ? "silent" : `${Math.round(shown)} dBFS`;
      this.meter.textContent = label;
      if (this.text) this.text.textContent = label;
      this.meter.dataset.state = this.db > -1 ? "clip" : this.db < -55 ? "silent" : "ok";
    }
  }

  // Publish one track over WHIP; the answer's return feed arrives through onTrack(stream).
  async function whipConnect({ url, token, track, stream, iceServers, onTrack, onState }) {
    const pc = new RTCPeerConnection({ iceServers: iceServers || [] });
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
    pc.ontrack = (e) => onTrack(e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]));
    pc.onconnectionstatechange = () => onState(pc.connectionState);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "Content-Type": "application/sdp",
          Accept: "application/sdp",
          Authorization: `Bearer ${token}`,
        },
        body: pc.localDescription.sdp,
      });
      if (response.status !== 201) throw new HttpError(response.status, await errorDetail(response));
      const location = response.headers.get("Location");
      const sessionUrl = location ? new URL(location, response.url || window.location.href).href : null;
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      return { pc, sender: transceiver.sender, sessionUrl };
    } catch (err) {
      pc.close();
      throw err;
    }
  }

  function whipDelete(sessionUrl, token, keepalive = false) {
    if (!sessionUrl) return;
    fetch(sessionUrl, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${token}` },
      keepalive,
    }).catch(() => {});
  }

  // One WHIP publishing session that a page starts and stops, and starts again `retryMs` after
  // its connection fails. Every start is an attempt: the answer or a state change of an older
  // attempt is stale and closed, so a slow answer never revives a session the user has since
  // stopped. The page shows what happens through the callbacks:
  //   url(), token(), stream(), iceServers()   what to publish where
  //   onTrack(stream)                          the return feed arrived
  //   onConnected(), onInterrupted()           the connection is up, or recovering
  //   onRetrying(err)                          it failed (err null) or a retry failed: retrying
  //   onDropped()                              the session was closed
  //   retryOnError                             retry again when a retry itself fails
  class WhipLink {
    constructor(options) {
      this.options = options;
      this.session = null; // { pc, sender, sessionUrl }
      this.wanted = false;
      this.attempt = 0;
      this.retryTimer = null;
    }

    async start() {
      this.wanted = true;
      clearTimeout(this.retryTimer);
      const o = this.options;
      const myAttempt = ++this.attempt;
      const stream = o.stream();
      const made = await whipConnect({
        url: o.url(),
        token: o.token(),
        track: stream.getAudioTracks()[0],
        stream,
        iceServers: o.iceServers(),
        onTrack: o.onTrack,
        onState: (state) => this.#onState(myAttempt, state),
      });
      if (myAttempt !== this.attempt || !this.wanted) {
        made.pc.close();
        whipDelete(made.sessionUrl, o.token());
        return;
      }
      this.session = made;
    }

    // The user is done (or the page goes away): no retry, and nothing in flight revives it.
    stop(keepalive = false) {
      this.wanted = false;
      this.attempt++;
      clearTimeout(this.retryTimer);
      this.drop(keepalive);
    }

    drop(keepalive = false) {
      const session = this.session;
      if (!session) return;
      session.pc.onconnectionstatechange = null;
      session.pc.ontrack = null;
      session.pc.close();
      whipDelete(session.sessionUrl, this.options.token(), keepalive);
      this.session = null;
      this.options.onDropped?.();
    }

    #onState(myAttempt, state) {
      if (myAttempt !== this.attempt) return;
      if (state === "connected") this.options.onConnected?.();
      else if (state === "disconnected") this.options.onInterrupted?.();
      else if (state === "failed") this.#retry(null);
    }

    #retry(err) {
      this.drop();
      if (!this.wanted) return;
      this.options.onRetrying?.(err);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        this.start().catch((e) => {
          if (this.options.retryOnError) this.#retry(e);
        });
      }, this.options.retryMs);
    }
  }

  function tokenFromPage(input) {
    const params = new URLSearchParams(window.location.search);
    const token = params.get("token");
    if (token && !input.value) input.value = token;
    return input.value.trim();
  }

  return {
    HttpError,
    errorDetail,
    fetchJson,
    openInput,
    listDevices,
    LevelMeter,
    WhipLink,
    tokenFromPage,
  };
})();
