// The RSPP page: talk to a pipeline over WebRTC (WebSocket fallback), see each turn.
// Plain ES module, no build step, nothing from a CDN.
import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const timeline = new Timeline($("timeline"));
timeline.render();

// what happened, for the curious (and the browser tests): events, reply audio levels
const state = (window.rspp = {
  events: [], transport: null, clears: 0, clearedAt: null, errors: [],
  audio: { frames: 0, loud: 0, max: 0, loudAt: [] },
});
let config = { webrtc: false, tokens: false, tenant_id: "local" };
let call = null;

function status(text, kind = "") {
  const s = $("status");
  s.textContent = text;
  s.className = kind;
  if (kind === "error") state.errors.push(text);
}

async function jsonOrError(resp) {
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (resp.ok) return [data, null];
  const e = data && data.error;
  return [null, e ? `${e.message}${e.field ? ` (field: ${e.field})` : ""}` : `HTTP ${resp.status}`];
}

function keyHeaders() {
  const key = $("apikey").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : null;
}

async function loadPipelines() {
  const select = $("pipeline");
  const fill = (names) => {
    select.replaceChildren(...names.map(([name, label]) => {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = label;
      return o;
    }));
  };
  let resp;
  try {
    if (config.tokens) resp = await fetch("/web/pipelines");
    else if (keyHeaders()) resp = await fetch("/v1/pipelines", { headers: keyHeaders() });
    else return fill([["voice-assistant", "voice-assistant"]]);
  } catch (e) {
    return status(`Server unreachable: ${e.message}`, "error");
  }
  const [data, err] = await jsonOrError(resp);
  if (err) return status(`Cannot list pipelines: ${err}`, "error");
  const versions = new Map();
  for (const p of data.pipelines) {
    if (!versions.has(p.name)) versions.set(p.name, []);
    versions.get(p.name).push(p.version);
  }
  fill([...versions].map(([name, v]) => [name, `${name} (${v.join(", ")})`]));
}

async function newSession(pipeline) {
  const params = new URLSearchParams(location.search);
  if (params.get("session") && params.get("token")) {
    return { session_id: params.get("session"), token: params.get("token") };
  }
  let resp;
  const body = (extra) => JSON.stringify({ pipeline_name: pipeline, ...extra });
  try {
    if (config.tokens) {
      resp = await fetch("/web/session", {
        method: "POST", headers: { "content-type": "application/json" }, body: body({}),
      });
    } else if (keyHeaders()) {
      resp = await fetch("/v1/sessions/route", {
        method: "POST", headers: { ...keyHeaders(), "content-type": "application/json" },
        body: body({ tenant_id: config.tenant_id }),
      });
    } else {
      throw new Error("This server gives session tokens only to its own machine: enter an API key.");
    }
  } catch (e) {
    throw new Error(e instanceof TypeError ? `Server unreachable: ${e.message}` : e.message);
  }
  const [data, err] = await jsonOrError(resp);
  if (err) throw new Error(`Session refused: ${err}`);
  return data;
}

// ------------------------------------------------------------------ events
function replyLine(turnId) {
  let li = document.querySelector(`#reply li[data-turn="${CSS.escape(turnId || "")}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.turn = turnId || "";
    $("reply").append(li);
  }
  return li;
}

function onEvent(ev) {
  state.events.push(ev);
  switch (ev.type) {
    case "ready":
      status(`connected over ${state.transport === "webrtc" ? "WebRTC" : "WebSocket"}: speak`, "ok");
      break;
    case "transcript":
      if (ev.final) {
        const li = document.createElement("li");
        li.textContent = ev.text;
        $("transcript").append(li);
        $("partial").textContent = "";
      } else {
        $("partial").textContent = ev.text;
      }
      break;
    case "reply_text": {
      // deltas concatenate to the reply; the final event carries all of it
      const li = replyLine(ev.turn_id);
      li.textContent = ev.final ? ev.text : li.textContent + ev.text;
      break;
    }
    case "turn":
      if (ev.state === "open") $("barge").classList.remove("on");
      if (ev.state === "abort" && ev.reason) replyLine(ev.turn_id).classList.add("aborted");
      break;
    case "clear":
      state.clears += 1;
      state.clearedAt = performance.now();
      $("barge").classList.add("on");
      if (call && call.clearPlayback) call.clearPlayback();
      break;
    case "turn_row":
      timeline.update(ev.row);
      break;
    case "error":
      status(`${ev.fatal ? "Session error" : "Error"}: ${ev.message}${ev.field ? ` (field: ${ev.field})` : ""}`, "error");
      break;
    case "session_end":
      status(`session ended (${ev.reason})`);
      break;
    default:
      break; // stats and future event types
  }
}

// reply audio level (WebAudio): frames measured, loud frames, peak RMS
function meter(analyser) {
  const buf = new Float32Array(analyser.fftSize);
  return setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    state.audio.frames += 1;
    if (rms > 0.01) {
      state.audio.loud += 1;
      state.audio.loudAt.push(performance.now());
      if (state.audio.loudAt.length > 3000) state.audio.loudAt.shift();
    }
    state.audio.max = Math.max(state.audio.max, rms);
    $("level").style.width = `${Math.min(100, rms * 400)}%`;
  }, 20);
}

async function openMic() {
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (e) {
    throw new Error(`Microphone refused: ${e.message || e.name}. Allow the microphone for this page and try again.`);
  }
}

function waitFor(predicate, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = setInterval(() => {
      const got = predicate();
      if (got) { clearInterval(tick); resolve(got); } else if (Date.now() - t0 > timeoutMs) {
        clearInterval(tick);
        reject(new Error(what));
      }
    }, 25);
  });
}

// ------------------------------------------------------------------ WebRTC
async function rtcCall(session, ctx) {
  const signalling = `/v1/sessions/${encodeURIComponent(session.session_id)}/webrtc`;
  const auth = { Authorization: `Bearer ${session.token}` };
  let ice;
  try {
    ice = await fetch(signalling, { headers: auth });
  } catch (e) {
    throw new Error(`Server unreachable: ${e.message}`);
  }
  const [iceConfig, iceErr] = await jsonOrError(ice);
  if (iceErr) throw new Error(`Session refused: ${iceErr}`);
  const pc = new RTCPeerConnection({ iceServers: iceConfig.ice_servers });
  const transceiver = pc.addTransceiver("audio", { direction: "sendrecv" });
  const dc = pc.createDataChannel("rspp");
  dc.onmessage = (e) => onEvent(JSON.parse(e.data));
  const timers = [];
  pc.ontrack = (e) => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    // Chrome feeds WebRTC audio to WebAudio only while a media element plays the stream
    const sink = new Audio();
    sink.muted = true;
    sink.srcObject = stream;
    sink.play().catch(() => {});
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(analyser);
    analyser.connect(ctx.destination);
    timers.push(meter(analyser));
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") status("Connection failed: no network path to the server over WebRTC (ICE).", "error");
    else if (pc.connectionState === "disconnected") status("Connection interrupted.", "error");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitFor(() => pc.iceGatheringState === "complete", 5000, "ICE gathering timed out").catch(() => {});
  let resp;
  try {
    resp = await fetch(signalling, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, timeline: true }),
    });
  } catch (e) {
    pc.close();
    throw new Error(`Server unreachable: ${e.message}`);
  }
  const [answer, err] = await jsonOrError(resp);
  if (err) {
    pc.close();
    throw new Error(`Session refused: ${err}`);
  }
  await pc.setRemoteDescription(answer);
  state.transport = "webrtc";
  await waitFor(() => state.events.find((e) => e.type === "ready"), 20000, "the session did not become ready");
  // the microphone opens when the session is ready: nothing said is lost to the handshake
  let mic;
  try { mic = await openMic(); } catch (e) { pc.close(); throw e; }
  await transceiver.sender.replaceTrack(mic.getAudioTracks()[0]);
  return {
    hangup() {
      if (dc.readyState === "open") dc.send(JSON.stringify({ type: "end" }));
      setTimeout(() => pc.close(), 10000);
      mic.getTracks().forEach((t) => t.stop());
      timers.forEach(clearInterval);
    },
    close() { pc.close(); mic.getTracks().forEach((t) => t.stop()); timers.forEach(clearInterval); },
  };
}

// ------------------------------------------------------------------ WebSocket fallback
async function wsCall(session, ctx) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const url = `${proto}://${location.host}/v1/sessions/${encodeURIComponent(session.session_id)}/ws` +
    `?token=${encodeURIComponent(session.token)}`;
  const ws = new WebSocket(url, "rspp.v1.json");
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("Server unreachable: the WebSocket did not open"));
  });
  const rate = ctx.sampleRate;
  ws.send(JSON.stringify({ type: "start", sample_rate: rate, output_sample_rate: rate, timeline: true, client: "rspp-web" }));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  analyser.connect(ctx.destination);
  const timers = [meter(analyser)];
  const playing = new Set();
  let playAt = 0;
  const call = {
    clearPlayback() {
      for (const node of playing) node.stop();
      playing.clear();
      playAt = 0;
    },
  };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") return onEvent(JSON.parse(e.data));
    const pcm = new Int16Array(e.data);
    const buf = ctx.createBuffer(1, pcm.length, rate);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const node = ctx.createBufferSource();
    node.buffer = buf;
    node.connect(analyser);
    playAt = Math.max(playAt, ctx.currentTime + 0.06);
    node.start(playAt);
    playAt += buf.duration;
    playing.add(node);
    node.onended = () => playing.delete(node);
  };
  ws.onclose = (e) => {
    // a session that lost its lease sends nothing more of its epoch: drop what is buffered
    if ((e.reason || "").startsWith("authority_lost:")) call.clearPlayback();
    if (e.code !== 1000) status(`Session closed (${e.code}): ${e.reason || "connection lost"}`, "error");
    finish();
  };
  state.transport = "websocket";
  await waitFor(() => state.events.find((e) => e.type === "ready"), 20000, "the session did not become ready");
  let mic;
  try { mic = await openMic(); } catch (e) { ws.close(); throw e; }
  const src = ctx.createMediaStreamSource(mic);
  const proc = ctx.createScriptProcessor(1024, 1, 1);
  proc.onaudioprocess = (e) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const f = e.inputBuffer.getChannelData(0);
    const out = new Int16Array(f.length);
    for (let i = 0; i < f.length; i++) out[i] = Math.max(-1, Math.min(1, f[i])) * 32767;
    ws.send(out.buffer);
  };
  src.connect(proc);
  proc.connect(ctx.destination);
  call.hangup = () => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
    mic.getTracks().forEach((t) => t.stop());
    proc.disconnect();
  };
  call.close = () => { ws.close(); mic.getTracks().forEach((t) => t.stop()); timers.forEach(clearInterval); };
  return call;
}

// ------------------------------------------------------------------ buttons
function finish() {
  $("talk").disabled = false;
  $("hangup").disabled = true;
}

async function talk() {
  $("talk").disabled = true;
  $("transcript").replaceChildren();
  $("reply").replaceChildren();
  $("barge").classList.remove("on");
  timeline.clear();
  state.events = [];
  const ctx = new AudioContext({ sampleRate: 48000 });
  await ctx.resume();
  const pipeline = $("pipeline").value || "voice-assistant";
  const rtc = config.webrtc && "RTCPeerConnection" in window && !$("force-ws").checked;
  $("transport").hidden = false;
  try {
    status("connecting...");
    const session = await newSession(pipeline);
    try {
      $("transport").textContent = rtc ? "WebRTC" : "WebSocket";
      call = rtc ? await rtcCall(session, ctx) : await wsCall(session, ctx);
    } catch (e) {
      if (!rtc || e.message.startsWith("Microphone")) throw e;
      status(`WebRTC failed (${e.message}); trying the WebSocket`);
      $("transport").textContent = "WebSocket";
      state.events = [];
      call = await wsCall(await newSession(pipeline), ctx);
    }
    $("hangup").disabled = false;
  } catch (e) {
    status(e.message, "error");
    if (call) call.close();
    call = null;
    finish();
  }
}

$("talk").addEventListener("click", talk);
$("hangup").addEventListener("click", () => {
  if (call) call.hangup();
  status("hanging up: pending turns finish");
  finish();
});
$("apikey").addEventListener("change", loadPipelines);

(async () => {
  try {
    config = await (await fetch("/web/config")).json();
  } catch (e) {
    return status(`Server unreachable: ${e.message}`, "error");
  }
  $("keyrow").classList.toggle("on", !config.tokens);
  $("timelines-link").hidden = !config.timelines;
  await loadPipelines();
  status(config.webrtc ? "ready: press Talk (WebRTC)" : "ready: press Talk (WebSocket)");
})();
