// Listener page: pick a language channel and listen to it over WHEP (WebRTC).
//
// Server contract:
//   GET    /api/event                     event info, ICE servers, channels (native names)
//   GET    /api/status                    {started, channels: {id: {live_seat, listeners}}}
//   POST   /whep/{channel}?underneath=0|1 SDP offer with two recvonly audio m-lines
//                                         -> 201 answer + Location
//   POST   {Location}/channel             {"channel": id, "underneath": bool} (no renegotiation)
//   DELETE {Location}                     end the session
// When /api/event says "edges": true, the event fans out through Janus edges instead:
//   POST   /api/listen                    {"channel": id} -> 201 {mode: "edge", session, offer,
//                                         ice_servers}: the edge offers, this page answers
//   POST   {session}/answer               the complete SDP answer (application/sdp)
//   POST   {session}/channel              {"channel": id}: the edge switches, no renegotiation
//   DELETE {session}                      end it
// An edge carries the channel only (one track): the original underneath is not offered there.
// Track 1 carries the channel (with underneath on: the interpreter alone); track 2 carries the
// floor while an interpreter is live and underneath is on, nothing otherwise. Both are mixed
// here in WebAudio (volume, balance): iOS ignores a media element's volume.
// Errors are JSON {"error": "...", "detail": "..."} with a 4xx status.
//
// Exposed for tests: window.listener
//   { state, channel, underneath, started, sessionUrl, reconnects, uiLanguage, analyser,
//     audioContext, start(), stop(), switchTo(id), setUnderneath(on), setBalance(v),
//     setUiLanguage(code), refreshStatus() }
"use strict";

(() => {
  // All page text, per page language. "{name}" placeholders are filled in by t().
  // Channel names are not here: they come from /api/event in their own language.
  const TEXT = {
    en: {
      pageLanguage: "Page language",
      loadingTitle: "Interpretation",
      languageHeading: "Choose a language",
      soundHeading: "Sound",
      tokenLabel: "Access code",
      tokenHint: "Given to you by the organisers when you registered.",
      volumeLabel: "Volume",
      volumeValue: "{percent} per cent",
      underneathLabel: "Hear the original underneath",
      underneathHint:
        "The speaker’s own voice, faintly, under the interpreter; set the balance yourself.",
      balanceLabel: "Balance",
      balanceInterp: "Interpretation",
      balanceOriginal: "Original",
      balanceValue: "Interpretation {interp} per cent, original {orig} per cent",
      start: "Start listening",
      stop: "Stop listening",
      retry: "Try again",
      floorName: "Floor (original)",
      notStarted:
        "The event has not started yet. You can start listening now: the sound begins when the event does.",
      statusLoading: "Loading the event information…",
      statusIdle: "Choose a language, then press Start listening.",
      statusConnecting: "Connecting to {channel}…",
      statusReconnecting: "Connection lost. Reconnecting to {channel}…",
      statusRetryIn: "Connection lost. Trying again in {seconds} s…",
      statusLive: "Live: {channel}",
      statusSwitching: "Switching to {channel}…",
      errorEvent: "Could not load the event information ({detail}).",
      errorTokenMissing: "Please enter your access code.",
      errorTokenInvalid: "The access code is not valid ({detail}).",
      errorConnect: "Could not connect ({detail}).",
      errorSwitch: "Could not switch to {channel} ({detail}). Still listening to {current}.",
      errorNoWebRTC: "This browser cannot play WebRTC audio.",
      errorHttp: "HTTP {status}",
    },
    fr: {
      pageLanguage: "Langue de la page",
      loadingTitle: "Interprétation",
      languageHeading: "Choisissez une langue",
      soundHeading: "Son",
      tokenLabel: "Code d’accès",
      tokenHint: "Fourni par les organisateurs lors de votre inscription.",
      volumeLabel: "Volume",
      volumeValue: "{percent} pour cent",
      underneathLabel: "Entendre aussi l’original en fond",
      underneathHint:
        "La voix de l’orateur, discrète, sous l’interprétation\u00a0; réglez vous-même l’équilibre.",
      balanceLabel: "Équilibre",
      balanceInterp: "Interprétation",
      balanceOriginal: "Original",
      balanceValue: "Interprétation {interp} pour cent, original {orig} pour cent",
      start: "Commencer l’écoute",
      stop: "Arrêter l’écoute",
      retry: "Réessayer",
      floorName: "Original (salle)",
      notStarted:
        "L’événement n’a pas encore commencé. Vous pouvez déjà lancer l’écoute\u00a0: le son arrivera dès le début.",
      statusLoading: "Chargement des informations de l’événement…",
      statusIdle: "Choisissez une langue, puis appuyez sur «\u00a0Commencer l’écoute\u00a0».",
      statusConnecting: "Connexion à {channel}…",
      statusReconnecting: "Connexion perdue. Reconnexion à {channel}…",
      statusRetryIn: "Connexion perdue. Nouvel essai dans {seconds}\u00a0s…",
      statusLive: "En direct\u00a0: {channel}",
      statusSwitching: "Passage à {channel}…",
      errorEvent: "Impossible de charger les informations de l’événement ({detail}).",
      errorTokenMissing: "Veuillez saisir votre code d’accès.",
      errorTokenInvalid: "Le code d’accès n’est pas valide ({detail}).",
      errorConnect: "Connexion impossible ({detail}).",
      errorSwitch:
        "Impossible de passer à {channel} ({detail}). Vous écoutez toujours {current}.",
      errorNoWebRTC: "Ce navigateur ne sait pas lire l’audio WebRTC.",
      errorHttp: "HTTP {status}",
    },
    ne: {
      pageLanguage: "पृष्ठको भाषा",
      loadingTitle: "भाषान्तर",
      languageHeading: "भाषा छान्नुहोस्",
      soundHeading: "आवाज",
      tokenLabel: "पहुँच कोड",
      tokenHint: "दर्ता गर्दा आयोजकहरूले दिएको कोड।",
      volumeLabel: "आवाजको मात्रा",
      volumeValue: "{percent} प्रतिशत",
      underneathLabel: "मूल वक्ताको आवाज पनि मधुरो सुन्नुहोस्",
      underneathHint: "भाषान्तरको पछाडि वक्ताको आफ्नै आवाज; सन्तुलन आफैं मिलाउनुहोस्।",
      balanceLabel: "सन्तुलन",
      balanceInterp: "भाषान्तर",
      balanceOriginal: "मूल आवाज",
      balanceValue: "भाषान्तर {interp} प्रतिशत, मूल आवाज {orig} प्रतिशत",
      start: "सुन्न सुरु गर्नुहोस्",
      stop: "सुन्न बन्द गर्नुहोस्",
      retry: "फेरि प्रयास गर्नुहोस्",
      floorName: "मूल आवाज (सभाकक्ष)",
      notStarted:
        "कार्यक्रम अझै सुरु भएको छैन। तपाईं अहिले नै सुन्न सुरु गर्न सक्नुहुन्छ; कार्यक्रम सुरु भएपछि आवाज आउनेछ।",
      statusLoading: "कार्यक्रमको जानकारी लोड हुँदैछ…",
      statusIdle: "भाषा छानेर “सुन्न सुरु गर्नुहोस्” थिच्नुहोस्।",
      statusConnecting: "{channel} मा जोडिँदैछ…",
      statusReconnecting: "सम्पर्क टुट्यो। {channel} मा फेरि जोडिँदैछ…",
      statusRetryIn: "सम्पर्क टुट्यो। {seconds} सेकेन्डमा फेरि प्रयास गरिनेछ…",
      statusLive: "प्रत्यक्ष: {channel}",
      statusSwitching: "{channel} मा बदलिँदैछ…",
      errorEvent: "कार्यक्रमको जानकारी लोड गर्न सकिएन ({detail})।",
      errorTokenMissing: "कृपया आफ्नो पहुँच कोड लेख्नुहोस्।",
      errorTokenInvalid: "पहुँच कोड मान्य छैन ({detail})।",
      errorConnect: "जोडिन सकिएन ({detail})।",
      errorSwitch: "{channel} मा बदल्न सकिएन ({detail})। अझै {current} सुनिँदैछ।",
      errorNoWebRTC: "यो ब्राउजरले WebRTC अडियो बजाउन सक्दैन।",
      errorHttp: "HTTP {status}",
    },
    es: {
      pageLanguage: "Idioma de la página",
      loadingTitle: "Interpretación",
      languageHeading: "Elija un idioma",
      soundHeading: "Sonido",
      tokenLabel: "Código de acceso",
      tokenHint: "Se lo dieron los organizadores al inscribirse.",
      volumeLabel: "Volumen",
      volumeValue: "{percent} por ciento",
      underneathLabel: "Oír también el original de fondo",
      underneathHint:
        "La voz del orador, suave, bajo la interpretación; ajuste usted mismo el equilibrio.",
      balanceLabel: "Equilibrio",
      balanceInterp: "Interpretación",
      balanceOriginal: "Original",
      balanceValue: "Interpretación {interp} por ciento, original {orig} por ciento",
      start: "Empezar a escuchar",
      stop: "Dejar de escuchar",
      retry: "Reintentar",
      floorName: "Original (sala)",
      notStarted:
        "El evento aún no ha comenzado. Puede empezar a escuchar ya: el sonido llegará cuando comience.",
      statusLoading: "Cargando la información del evento…",
      statusIdle: "Elija un idioma y pulse «Empezar a escuchar».",
      statusConnecting: "Conectando con {channel}…",
      statusReconnecting: "Se perdió la conexión. Reconectando con {channel}…",
      statusRetryIn: "Se perdió la conexión. Nuevo intento en {seconds} s…",
      statusLive: "En directo: {channel}",
      statusSwitching: "Cambiando a {channel}…",
      errorEvent: "No se pudo cargar la información del evento ({detail}).",
      errorTokenMissing: "Escriba su código de acceso.",
      errorTokenInvalid: "El código de acceso no es válido ({detail}).",
      errorConnect: "No se pudo conectar ({detail}).",
      errorSwitch: "No se pudo cambiar a {channel} ({detail}). Sigue escuchando {current}.",
      errorNoWebRTC: "Este navegador no puede reproducir audio WebRTC.",
      errorHttp: "HTTP {status}",
    },
  };
  const UI_LANGUAGES = Object.keys(TEXT);

  const ICE_GATHERING_CAP_MS = 2000;
  const CONNECT_TIMEOUT_MS = 15000; // one attempt; then the next attempt, with backoff
  const DISCONNECTED_GRACE_MS = 3000; // "disconnected" often heals by itself
  const STALL_MS = 3000; // live but no packet for this long: reconnect
  const STATS_EVERY_MS = 1000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_CAP_MS = 8000;
  const STABLE_MS = 10000; // live this long: the next loss starts the backoff from the beginning
  const STATUS_POLL_MS = 8000;
  const DEFAULT_CHANNEL = "floor";
  const STORE = "listener."; // localStorage prefix: the choices survive a reload

  const $ = (id) => document.getElementById(id);
  const el = {
    uiLang: $("ui-lang"),
    title: $("event-name"),
    venue: $("event-venue"),
    notice: $("notice"),
    channels: $("channels"),
    tokenBlock: $("token-block"),
    token: $("token"),
    start: $("start"),
    status: $("status"),
    volume: $("volume"),
    underneath: $("underneath"),
    balanceBlock: $("balance-block"),
    balance: $("balance"),
    remoteMain: $("remote-main"),
    remoteUnder: $("remote-under"),
    player: $("player"),
    underneathBlock: $("underneath-block"),
    underneathHint: $("underneath-hint"),
  };

  // ---------------------------------------------------------------- state --
  let uiLang = "en";
  let event = null; // JSON from /api/event
  let eventPromise = null;
  let started = null; // from /api/status: a floor source is connected (null: not known yet)
  // loading | idle | connecting | live | reconnecting | error
  let state = "loading";
  let status = { key: "statusLoading", vars: {} }; // what the status line says, re-rendered per language
  let wanted = false; // the user wants sound: keep (re)connecting until they stop
  let channel = DEFAULT_CHANNEL; // what the user chose
  let underneath = false;
  let server = null; // {channel, underneath} of the current session, per the server
  let session = null; // {pc, url, main, under, attempt}
  let attempt = 0; // increments per connection attempt; stale async work checks it
  let failures = 0; // consecutive failed attempts: the backoff exponent
  let reconnects = 0;
  let retryTimer = null;
  let retryAt = 0;
  let connectTimer = null;
  let graceTimer = null;
  let stableTimer = null;
  let statsTimer = null;
  let pollTimer = null;
  let switchChain = Promise.resolve();
  let wakeLock = null;

  let audioContext = null;
  let mainGain = null;
  let underGain = null;
  let volumeGain = null;
  let analyser = null;
  let mainSource = null;
  let underSource = null;

  // ------------------------------------------------------------- helpers --
  function t(key, vars = {}) {
    const template = TEXT[uiLang][key] ?? TEXT.en[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  }

  function stored(name, fallback) {
    try {
      const v = window.localStorage.getItem(STORE + name);
      return v === null ? fallback : v;
    } catch {
      return fallback; // storage blocked (private mode): defaults
    }
  }

  function store(name, value) {
    try {
      window.localStorage.setItem(STORE + name, String(value));
    } catch {
      // not kept: fine
    }
  }

  function pickUiLanguage() {
    const chosen = stored("ui", null);
    if (UI_LANGUAGES.includes(chosen)) return chosen;
    const prefs = navigator.languages?.length ? navigator.languages : [navigator.language || ""];
    for (const tag of prefs) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (UI_LANGUAGES.includes(base)) return base;
    }
    return "en";
  }

  function channelInfo(id) {
    return event?.channels?.find((c) => c.id === id) ?? null;
  }

  function channelName(id) {
    // The floor has no language of its own: its name is page text. Languages keep their own.
    if (id === DEFAULT_CHANNEL) return t("floorName");
    return channelInfo(id)?.name ?? id;
  }

  // Listeners of this event connect through a Janus edge the server picks (see the top).
  function viaEdge() {
    return event?.edges === true;
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
      // fall back to the status code
    }
    try {
      const body = JSON.parse(text);
      if (body && typeof body.detail === "string" && body.detail) return body.detail;
      if (body && typeof body.error === "string" && body.error) return body.error;
    } catch {
      // not JSON
    }
    const plain = text.trim();
    if (plain && !plain.startsWith("<") && plain.length <= 200) return plain;
    return t("errorHttp", { status: response.status });
  }

  const dbToGain = (db) => 10 ** (db / 20);

  // Balance 0..100: 0 = interpretation only, 50 = both at full level, 100 = original only.
  // Each side fades over 40 dB; the default 25 puts the original 20 dB under the interpreter.
  function balanceGains() {
    const v = Number(el.balance.value);
    const orig = v <= 0 ? 0 : v >= 50 ? 1 : dbToGain(-40 + 0.8 * v);
    const interp = v >= 100 ? 0 : v <= 50 ? 1 : dbToGain(-0.8 * (v - 50));
    return { interp, orig };
  }

  function rampTo(param, value) {
    if (!audioContext) return;
    param.setTargetAtTime(value, audioContext.currentTime, 0.02);
  }

  // ------------------------------------------------------------ rendering --
  function renderText() {
    document.documentElement.lang = uiLang;
    el.uiLang.value = uiLang;
    for (const node of document.querySelectorAll("[data-text]")) {
      node.textContent = t(node.dataset.text);
    }
    if (!event) document.title = t("loadingTitle");
    if (event) {
      for (const button of el.channels.querySelectorAll("button[data-channel]")) {
        button.textContent = channelName(button.dataset.channel);
      }
    }
    renderVolume();
    renderBalance();
    renderStatus();
    renderNotice();
    renderStart();
  }

  // Live regions re-announce rewritten text: only write what changed.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function renderVolume() {
    el.volume.setAttribute("aria-valuetext", t("volumeValue", { percent: el.volume.value }));
  }

  function renderBalance() {
    const { interp, orig } = balanceGains();
    el.balance.setAttribute(
      "aria-valuetext",
      t("balanceValue", { interp: Math.round(interp * 100), orig: Math.round(orig * 100) }),
    );
    el.underneath.checked = underneath;
    el.balanceBlock.hidden = !underneath;
  }

  function renderStatus() {
    const vars = { ...status.vars };
    if ("channel" in vars) vars.channel = channelName(vars.channel);
    if ("current" in vars) vars.current = channelName(vars.current);
    if (status.key === "statusRetryIn") {
      vars.seconds = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
    }
    el.status.dataset.state = status.state ?? state;
    setText(el.status, t(status.key, vars));
  }

  function renderNotice() {
    const show = started === false;
    el.notice.hidden = !show;
    setText(el.notice, show ? t("notStarted") : "");
    document.body.dataset.started = started === null ? "unknown" : String(started);
  }

  function renderStart() {
    el.start.textContent = wanted ? t("stop") : state === "error" ? t("retry") : t("start");
    el.start.dataset.active = wanted ? "true" : "false";
    el.start.disabled = state === "loading";
  }

  function setStatus(key, vars = {}, shownState = undefined) {
    status = { key, vars, state: shownState };
    renderStatus();
  }

  function setState(newState, key, vars) {
    state = newState;
    document.body.dataset.state = newState;
    const defaults = {
      loading: ["statusLoading", {}],
      idle: ["statusIdle", {}],
      connecting: ["statusConnecting", { channel }],
      live: ["statusLive", { channel: server?.channel ?? channel }],
      reconnecting: ["statusReconnecting", { channel }],
    };
    if (key === undefined) [key, vars] = defaults[newState] ?? ["statusIdle", {}];
    setStatus(key, vars ?? {});
    renderStart();
    updateMediaSession();
    if (newState === "live") holdWakeLock();
    else releaseWakeLock();
    schedulePoll();
  }

  function setError(key, vars = {}) {
    wanted = false;
    setState("error", key, vars);
  }

  function renderChannels() {
    el.channels.replaceChildren();
    for (const c of event.channels) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "channel";
      button.dataset.channel = c.id;
      button.textContent = channelName(c.id);
      if (c.language) button.lang = c.language;
      button.setAttribute("aria-pressed", String(c.id === channel));
      button.addEventListener("click", () => onChannelClick(c.id));
      el.channels.append(button);
    }
  }

  function markSelected() {
    for (const button of el.channels.querySelectorAll("button[data-channel]")) {
      button.setAttribute("aria-pressed", String(button.dataset.channel === channel));
    }
  }

  // The choice lives in the URL, so the address bar is a link to share.
  function updateUrl() {
    const url = new URL(window.location.href);
    url.searchParams.set("lang", channel);
    history.replaceState(history.state, "", url);
  }

  // --------------------------------------------------------------- status --
  async function refreshStatus() {
    try {
      const response = await fetch("/api/status", { headers: { Accept: "application/json" } });
      if (!response.ok) return started;
      const data = await response.json();
      started = Boolean(data.started);
    } catch {
      // the reconnection logic reports network trouble; keep the last known value
    }
    renderNotice();
    schedulePoll();
    return started;
  }

  // Poll slowly, with jitter, while nobody is listening or the event has not started.
  function schedulePoll() {
    const needed = state !== "live" || started !== true;
    if (!needed) {
      clearTimeout(pollTimer);
      pollTimer = null;
      return;
    }
    if (pollTimer !== null) return;
    const delay = STATUS_POLL_MS * (0.75 + Math.random() * 0.5);
    pollTimer = setTimeout(() => {
      pollTimer = null;
      refreshStatus();
    }, delay);
  }

  // ---------------------------------------------------------------- event --
  async function loadEvent() {
    const response = await fetch("/api/event", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(await errorDetail(response));
    const data = await response.json();
    if (!data || !Array.isArray(data.channels) || data.channels.length === 0) {
      throw new Error("no channels");
    }
    event = data;

    document.title = event.name || t("loadingTitle");
    el.title.removeAttribute("data-text");
    el.title.textContent = event.name || t("loadingTitle");
    if (event.venue) {
      el.venue.textContent = event.venue;
      el.venue.hidden = false;
    }

    const params = new URLSearchParams(window.location.search);
    const fromUrl = params.get("lang");
    const fromStore = stored("channel", null);
    if (isValidChannel(fromUrl)) channel = fromUrl;
    else if (isValidChannel(fromStore)) channel = fromStore;
    else if (!isValidChannel(channel)) channel = event.channels[0].id;

    el.tokenBlock.hidden = !event.listener_token_required;
    if (viaEdge()) {
      underneath = false; // edges carry one track: the channel as the event mixes it
      // style, not `hidden`: the stylesheet's display:flex would win over the attribute
      el.underneathBlock.style.display = "none";
      el.underneathHint.style.display = "none";
      renderBalance();
    }
    const urlToken = params.get("token");
    if (urlToken && !el.token.value) el.token.value = urlToken;
    else if (event.listener_token_required && !el.token.value) el.token.value = stored("token", "");

    renderChannels();
    setState("idle");
    return event;
  }

  function ensureEvent() {
    if (event) return Promise.resolve(event);
    if (!eventPromise) {
      eventPromise = loadEvent().catch((err) => {
        eventPromise = null; // "Try again" loads it again
        setError("errorEvent", { detail: err.message });
        throw err;
      });
    }
    return eventPromise;
  }

  // ---------------------------------------------------------------- audio --
  // Called synchronously inside the user's tap: that is when phones allow sound to start.
  function ensureAudioGraph() {
    if (!audioContext) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioContext = new Ctx({ latencyHint: "interactive" });
      mainGain = audioContext.createGain();
      underGain = audioContext.createGain();
      volumeGain = audioContext.createGain();
      analyser = audioContext.createAnalyser();
      analyser.fftSize = 4096; // ~11.7 Hz bins at 48 kHz
      // No smoothing: each read reflects the current audio (tests read the dominant
      // frequency right after a switch).
      analyser.smoothingTimeConstant = 0;
      applyGains(true);
      mainGain.connect(volumeGain);
      underGain.connect(volumeGain);
      volumeGain.connect(analyser);
      if (typeof audioContext.createMediaStreamDestination === "function") {
        // Played by a media element: phones treat the page as media playback (lock screen,
        // Media Session controls) instead of suspending a bare AudioContext.
        const out = audioContext.createMediaStreamDestination();
        analyser.connect(out);
        el.player.srcObject = out.stream;
      } else {
        analyser.connect(audioContext.destination);
      }
      if (navigator.audioSession) {
        try {
          navigator.audioSession.type = "playback"; // Safari: keep playing when locked/silent
        } catch {
          // not supported here
        }
      }
    }
    if (audioContext.state !== "running") audioContext.resume().catch(() => {});
    if (el.player.srcObject && el.player.paused) el.player.play().catch(() => {});
  }

  function applyGains(now = false) {
    if (!audioContext) return;
    const { interp, orig } = underneath ? balanceGains() : { interp: 1, orig: 0 };
    const volume = Number(el.volume.value) / 100;
    if (now) {
      mainGain.gain.value = interp;
      underGain.gain.value = orig;
      volumeGain.gain.value = volume;
    } else {
      rampTo(mainGain.gain, interp);
      rampTo(underGain.gain, orig);
      rampTo(volumeGain.gain, volume);
    }
  }

  function attachTrack(which, event_) {
    // One stream per track, whatever the answer's msid says: a shared stream would feed
    // WebAudio whichever of its tracks sorts first. Chromium plays remote WebRTC audio into
    // WebAudio only if the stream is also attached to a media element; these stay muted.
    const stream = new MediaStream([event_.track]);
    const element = which === "main" ? el.remoteMain : el.remoteUnder;
    element.muted = true;
    element.srcObject = stream;
    element.play().catch(() => {});
    const node = audioContext.createMediaStreamSource(stream);
    if (which === "main") {
      mainSource?.disconnect();
      mainSource = node;
      node.connect(mainGain);
    } else {
      underSource?.disconnect();
      underSource = node;
      node.connect(underGain);
    }
  }

  function detachTracks() {
    mainSource?.disconnect();
    underSource?.disconnect();
    mainSource = null;
    underSource = null;
    el.remoteMain.srcObject = null;
    el.remoteUnder.srcObject = null;
  }

  // ------------------------------------------------------ phone behaviour --
  function updateMediaSession() {
    if (!("mediaSession" in navigator)) return;
    try {
      if (wanted && event && typeof MediaMetadata === "function") {
        navigator.mediaSession.metadata = new MediaMetadata({
          title: channelName(server?.channel ?? channel),
          artist: event.name || "",
          album: event.venue || "",
        });
      }
      navigator.mediaSession.playbackState = wanted ? "playing" : "paused";
    } catch {
      // partial support
    }
  }

  function stepChannel(step) {
    if (!event) return;
    const ids = event.channels.map((c) => c.id);
    const next = ids[(ids.indexOf(channel) + step + ids.length) % ids.length];
    switchTo(next).catch(() => {});
  }

  function installMediaSessionHandlers() {
    if (!("mediaSession" in navigator)) return;
    const handlers = {
      play: () => start().catch(() => {}),
      pause: () => stop(),
      stop: () => stop(),
      // Lock-screen "next/previous" steps through the languages.
      nexttrack: () => stepChannel(1),
      previoustrack: () => stepChannel(-1),
    };
    for (const [action, handler] of Object.entries(handlers)) {
      try {
        navigator.mediaSession.setActionHandler(action, handler);
      } catch {
        // action not supported by this browser
      }
    }
  }

  async function holdWakeLock() {
    if (!("wakeLock" in navigator) || wakeLock || document.visibilityState !== "visible") return;
    try {
      const lock = await navigator.wakeLock.request("screen");
      if (state !== "live") {
        lock.release().catch(() => {});
        return;
      }
      wakeLock = lock;
      lock.addEventListener("release", () => {
        if (wakeLock === lock) wakeLock = null;
      });
    } catch {
      // refused (battery saver, not visible): the Media Session keeps the sound going
    }
  }

  function releaseWakeLock() {
    const lock = wakeLock;
    wakeLock = null;
    lock?.release().catch(() => {});
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

  function clearConnectionTimers() {
    for (const timer of [connectTimer, graceTimer, stableTimer, retryTimer]) clearTimeout(timer);
    clearInterval(statsTimer);
    connectTimer = graceTimer = stableTimer = retryTimer = statsTimer = null;
  }

  // Ends the current session: closes the peer and DELETEs the WHEP resource (best effort).
  function endSession(keepalive = false) {
    const old = session;
    session = null;
    server = null;
    if (!old) return;
    if (old.pc) {
      old.pc.ontrack = null;
      old.pc.onconnectionstatechange = null;
      old.pc.oniceconnectionstatechange = null;
      old.pc.close();
    }
    detachTracks();
    if (old.url) {
      fetch(old.url, { method: "DELETE", headers: authHeaders(), keepalive }).catch(() => {});
    }
  }

  // Overall connection state; falls back to the ICE state on browsers without it.
  function peerState(peer) {
    if (typeof peer.connectionState === "string") return peer.connectionState;
    const ice = peer.iceConnectionState;
    return { completed: "connected", checking: "connecting" }[ice] ?? ice;
  }

  function onPeerState(s) {
    if (session !== s || s.attempt !== attempt) return;
    const conn = peerState(s.pc);
    if (conn === "connected") {
      clearTimeout(graceTimer);
      graceTimer = null;
      if (state !== "live" && s.url) onLive(s);
    } else if (conn === "failed" || conn === "closed") {
      reconnect();
    } else if (conn === "disconnected" && graceTimer === null) {
      graceTimer = setTimeout(() => {
        graceTimer = null;
        if (session === s && peerState(s.pc) !== "connected") reconnect();
      }, DISCONNECTED_GRACE_MS);
    }
  }

  function onLive(s) {
    clearTimeout(connectTimer);
    connectTimer = null;
    ensureAudioGraph();
    setState("live");
    updateUrl();
    store("channel", channel);
    if (event.listener_token_required) store("token", tokenValue());
    clearTimeout(stableTimer);
    stableTimer = setTimeout(() => {
      failures = 0;
    }, STABLE_MS);
    watchPackets(s);
    // The user may have changed their choice while we were connecting.
    if (server && (server.channel !== channel || server.underneath !== underneath)) {
      queueSwitch().catch(() => {});
    }
  }

  // A silent failure (the server went away, a NAT dropped us) shows as packets that stop.
  function watchPackets(s) {
    clearInterval(statsTimer);
    let last = -1;
    let lastGrowth = Date.now();
    statsTimer = setInterval(async () => {
      if (session !== s || state !== "live") return;
      let packets = 0;
      try {
        const report = await s.main.receiver.getStats();
        report.forEach((r) => {
          if (r.type === "inbound-rtp") packets += r.packetsReceived ?? 0;
        });
      } catch {
        return;
      }
      if (session !== s || state !== "live") return;
      if (packets > last) {
        last = packets;
        lastGrowth = Date.now();
      } else if (Date.now() - lastGrowth >= STALL_MS) {
        reconnect();
      }
    }, STATS_EVERY_MS);
  }

  class HttpError extends Error {
    constructor(status, detail, retryAfter) {
      super(detail);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  // One connection attempt: a new peer and a new session on the chosen channel.
  async function connect(myAttempt) {
    if (viaEdge()) return connectEdge(myAttempt);
    return connectWhep(myAttempt);
  }

  // Through an edge: the router picks it and relays the handshake; the edge makes the offer.
  async function connectEdge(myAttempt) {
    const requested = { channel, underneath: false };
    const response = await fetch("/api/listen", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...authHeaders() },
      body: JSON.stringify({ channel: requested.channel }),
    });
    const body = response.status === 201 ? await response.json().catch(() => null) : null;
    const url = body?.session ? new URL(body.session, window.location.href).href : null;
    if (attempt !== myAttempt || !wanted) {
      if (url) fetch(url, { method: "DELETE", headers: authHeaders() }).catch(() => {});
      return;
    }
    if (response.status !== 201 || !body || body.mode !== "edge" || !url) {
      const retryAfter = Number(response.headers.get("Retry-After")) || 0;
      throw new HttpError(response.status, await errorDetail(response), retryAfter);
    }
    const iceServers = Array.isArray(body.ice_servers) ? body.ice_servers : event.ice_servers;
    const pc = new RTCPeerConnection({ iceServers: Array.isArray(iceServers) ? iceServers : [] });
    const s = { pc, main: null, under: null, url, attempt: myAttempt, edge: true };
    session = s;
    pc.ontrack = (e) => {
      if (session !== s) return;
      s.main = e.transceiver;
      attachTrack("main", e);
    };
    pc.onconnectionstatechange = () => onPeerState(s);
    pc.oniceconnectionstatechange = () => onPeerState(s);
    await pc.setRemoteDescription({ type: "offer", sdp: body.offer });
    s.main = s.main ?? pc.getTransceivers()[0];
    await pc.setLocalDescription(await pc.createAnswer());
    await waitForIceGathering(pc); // no trickle through the router: the answer is complete
    if (session !== s) return;
    const answered = await fetch(`${url}/answer`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Accept: "application/json", ...authHeaders() },
      body: pc.localDescription.sdp,
    });
    if (session !== s) return;
    if (!answered.ok) {
      const retryAfter = Number(answered.headers.get("Retry-After")) || 0;
      throw new HttpError(answered.status, await errorDetail(answered), retryAfter);
    }
    server = requested;
    const dtls = s.main?.receiver.transport;
    if (dtls) {
      dtls.onstatechange = () => {
        if (session === s && (dtls.state === "closed" || dtls.state === "failed")) reconnect();
      };
    }
    if (session === s && peerState(pc) === "connected") onLive(s);
  }

  // Local WHEP: this page offers, the server answers.
  async function connectWhep(myAttempt) {
    const iceServers = Array.isArray(event.ice_servers) ? event.ice_servers : [];
    const pc = new RTCPeerConnection({ iceServers });
    const main = pc.addTransceiver("audio", { direction: "recvonly" });
    const under = pc.addTransceiver("audio", { direction: "recvonly" });
    const s = { pc, main, under, url: null, attempt: myAttempt };
    session = s;
    pc.ontrack = (e) => {
      if (session !== s) return;
      attachTrack(e.transceiver === under ? "under" : "main", e);
    };
    pc.onconnectionstatechange = () => onPeerState(s);
    pc.oniceconnectionstatechange = () => onPeerState(s);

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    if (session !== s) return;

    const requested = { channel, underneath };
    const query = requested.underneath ? "?underneath=true" : "";
    const response = await fetch(`/whep/${encodeURIComponent(requested.channel)}${query}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Accept: "application/sdp", ...authHeaders() },
      body: pc.localDescription.sdp,
    });
    const location = response.headers.get("Location");
    const url = location ? new URL(location, response.url || window.location.href).href : null;
    if (session !== s) {
      // Abandoned while the offer was in flight: end the session we just made.
      if (response.status === 201 && url) {
        fetch(url, { method: "DELETE", headers: authHeaders() }).catch(() => {});
      }
      return;
    }
    if (response.status !== 201) {
      const retryAfter = Number(response.headers.get("Retry-After")) || 0;
      throw new HttpError(response.status, await errorDetail(response), retryAfter);
    }
    s.url = url;
    server = requested;
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    // A server that ends the session closes DTLS: Chromium says so on the transport long
    // before the peer connection notices.
    const dtls = main.receiver.transport;
    if (dtls) {
      dtls.onstatechange = () => {
        if (session === s && (dtls.state === "closed" || dtls.state === "failed")) reconnect();
      };
    }
    if (session === s && peerState(pc) === "connected") onLive(s);
  }

  // Starts an attempt now; transient failures schedule the next one.
  function attemptConnection() {
    clearConnectionTimers();
    endSession();
    if (!wanted) return;
    const myAttempt = ++attempt;
    connectTimer = setTimeout(() => {
      if (attempt === myAttempt && state !== "live") reconnect();
    }, CONNECT_TIMEOUT_MS);
    connect(myAttempt).catch((err) => {
      if (attempt !== myAttempt || !wanted) return;
      if (err instanceof HttpError && [400, 401, 403, 404].includes(err.status)) {
        // Not something a retry fixes: say what is wrong.
        clearConnectionTimers();
        endSession();
        if (err.status === 401 || err.status === 403) {
          el.tokenBlock.hidden = false;
          setError("errorTokenInvalid", { detail: err.message });
          el.token.focus();
        } else {
          setError("errorConnect", { detail: err.message });
        }
        return;
      }
      reconnect(err instanceof HttpError ? err.retryAfter * 1000 : 0);
    });
  }

  // After a loss: a new session after an exponential backoff with jitter, keeping the choice.
  function reconnect(atLeastMs = 0) {
    if (!wanted) return;
    clearConnectionTimers();
    endSession();
    attempt++;
    reconnects++;
    const step = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** failures);
    failures++;
    // Jitter spreads thousands of listeners who lost the same server over time.
    const delay = Math.max(atLeastMs, step * (0.5 + Math.random() * 0.5));
    retryAt = Date.now() + delay;
    setState("reconnecting", failures > 1 ? "statusRetryIn" : "statusReconnecting", {
      channel,
    });
    retryTimer = setTimeout(() => {
      retryTimer = null;
      setStatus("statusReconnecting", { channel });
      attemptConnection();
    }, delay);
  }

  // Network back or page visible again: do not wait out the backoff.
  function retrySoon() {
    if (wanted && state === "reconnecting" && retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
      attemptConnection();
    }
  }

  // --------------------------------------------------------------- switch --
  async function postSwitch(target) {
    const choice = session.edge ? { channel: target.channel } : target;
    const response = await fetch(`${session.url.replace(/\/+$/, "")}/channel`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...authHeaders() },
      body: JSON.stringify(choice),
    });
    if (!response.ok) throw new HttpError(response.status, await errorDetail(response), 0);
    return response.json();
  }

  // Switches are serialised; each sends the latest choice.
  function queueSwitch() {
    const run = async () => {
      const s = session;
      const target = { channel, underneath: s?.edge ? false : underneath };
      if (!s?.url || !server) return; // (re)connecting: the next session uses the choice
      if (target.channel === server.channel && target.underneath === server.underneath) return;
      const channelChanges = target.channel !== server.channel;
      if (state === "live" && channelChanges) {
        setStatus("statusSwitching", { channel: target.channel }, "live");
      }
      try {
        const now = await postSwitch(target);
        if (session !== s) return;
        server = { channel: now.channel, underneath: Boolean(now.underneath) };
        if (state === "live") {
          setState("live");
          updateUrl();
          store("channel", channel);
        }
      } catch (err) {
        if (session !== s) return;
        if (err instanceof HttpError && err.status === 404) {
          // The session is gone (the server restarted?): reconnect with the new choice.
          reconnect();
          return;
        }
        if (channel === target.channel && channelChanges) {
          channel = server.channel;
          markSelected();
        }
        if (underneath === target.underneath && target.underneath !== server.underneath) {
          underneath = server.underneath;
          renderBalance();
          applyGains();
        }
        if (state === "live") {
          setStatus(
            "errorSwitch",
            { channel: target.channel, detail: err.message, current: server.channel },
            "live",
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
    if (wanted) return;
    // Create/resume the audio output while still inside the user's tap.
    try {
      ensureAudioGraph();
    } catch (err) {
      setError("errorNoWebRTC");
      throw err;
    }
    await ensureEvent();
    if (wanted) return;
    if (typeof RTCPeerConnection === "undefined") {
      setError("errorNoWebRTC");
      throw new Error("no WebRTC");
    }
    if (event.listener_token_required && !tokenValue()) {
      setError("errorTokenMissing");
      el.tokenBlock.hidden = false;
      el.token.focus();
      throw new Error("listener token required");
    }
    wanted = true;
    failures = 0;
    setState("connecting");
    attemptConnection();
  }

  function stop() {
    wanted = false;
    attempt++;
    clearConnectionTimers();
    endSession();
    if (!el.player.paused) el.player.pause();
    setState(event ? "idle" : "loading");
  }

  function switchTo(id) {
    if (!isValidChannel(id)) return Promise.reject(new Error(`unknown channel: ${id}`));
    channel = id;
    markSelected();
    updateUrl();
    store("channel", channel);
    updateMediaSession();
    if (state === "reconnecting") setStatus(status.key, { ...status.vars, channel });
    return queueSwitch();
  }

  function setUnderneath(on) {
    underneath = Boolean(on) && !viaEdge(); // an edge has no second track to mix in
    store("underneath", underneath);
    renderBalance();
    applyGains();
    return queueSwitch();
  }

  function setBalance(value) {
    el.balance.value = String(value);
    store("balance", el.balance.value);
    renderBalance();
    applyGains();
  }

  function setUiLanguage(code) {
    if (!UI_LANGUAGES.includes(code)) return;
    uiLang = code;
    store("ui", code);
    renderText();
    updateMediaSession();
  }

  // A tap on a language: choose it, and start listening if not already (one tap to sound).
  function onChannelClick(id) {
    switchTo(id).catch(() => {
      // shown in the status line
    });
    if (!wanted && state !== "loading") {
      start().catch(() => {
        // shown in the status line
      });
    }
  }

  const listener = {
    get state() {
      return state;
    },
    get channel() {
      return channel;
    },
    get underneath() {
      return underneath;
    },
    get started() {
      return started;
    },
    get sessionUrl() {
      return session?.url ?? null;
    },
    get serverChoice() {
      return server ? { ...server } : null;
    },
    get reconnects() {
      return reconnects;
    },
    get uiLanguage() {
      return uiLang;
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
    setUnderneath,
    setBalance,
    setUiLanguage,
    refreshStatus,
  };
  window.listener = listener;

  // --------------------------------------------------------------- wiring --
  el.start.addEventListener("click", () => {
    if (wanted) stop();
    else start().catch(() => {});
  });

  el.uiLang.addEventListener("change", () => setUiLanguage(el.uiLang.value));

  el.volume.addEventListener("input", () => {
    store("volume", el.volume.value);
    renderVolume();
    applyGains();
  });

  el.underneath.addEventListener("change", () => {
    setUnderneath(el.underneath.checked).catch(() => {});
  });

  el.balance.addEventListener("input", () => setBalance(el.balance.value));

  // The system paused our output (headphones unplugged, a call): stop cleanly; the Media
  // Session's play button or the page's button starts again.
  el.player.addEventListener("pause", () => {
    if (wanted && state === "live") stop();
  });

  window.addEventListener("online", retrySoon);

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    retrySoon();
    if (state === "live") {
      holdWakeLock(); // the system releases it whenever the page is hidden
      if (audioContext && audioContext.state !== "running") audioContext.resume().catch(() => {});
    }
  });

  window.addEventListener("pagehide", () => {
    attempt++;
    clearConnectionTimers();
    endSession(true);
  });

  // Back from the back/forward cache: the session ended on pagehide; pick up again.
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && wanted) attemptConnection();
  });

  // Restore the listener's own settings.
  uiLang = pickUiLanguage();
  el.volume.value = stored("volume", el.volume.value);
  el.balance.value = stored("balance", el.balance.value);
  underneath = stored("underneath", "false") === "true";
  installMediaSessionHandlers();
  renderText();
  setState("loading");
  ensureEvent().catch(() => {});
  refreshStatus();
})();
