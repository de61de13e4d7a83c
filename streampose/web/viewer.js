// streampose view: one panel per stream, its newest preview with the skeleton drawn over it on a canvas.
// Everything from the stream goes into text nodes, attributes and canvas pixels: nothing is parsed as HTML.
"use strict";
(() => {
  const MIN_CONF = 0.3; // joints below this are left out with their limbs (as streampose.draw does)
  const MAX_WIDTH = 640; // the skeleton-only view's width
  const KEEP = 120; // poses kept per stream, to find the one of a preview's frame
  const token = new URLSearchParams(location.search).get("token");
  const connection = document.getElementById("connection");
  const panels = new Map();
  let skeletons = null;
  let received = 0;

  function setState(el, state) {
    el.textContent = state;
    el.className = "state " + state;
  }

  function element(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function panel(stream) {
    let p = panels.get(stream);
    if (p) return p;
    const root = element("section", "panel");
    root.dataset.stream = stream;
    const title = element("h2");
    const state = element("span", "state", "running");
    title.append(element("span", "name", stream), state);
    const canvas = element("canvas");
    canvas.width = MAX_WIDTH;
    canvas.height = Math.round(MAX_WIDTH * 9 / 16);
    const stats = element("div", "stats");
    const fps = element("span", "fps", "– fps");
    const latency = element("span", "latency", "latency –");
    const people = element("span", "people", "");
    const frame = element("span", "frame", "");
    stats.append(fps, latency, people, frame);
    const message = element("div", "message");
    root.append(title, canvas, stats, message);
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    document.getElementById("streams").append(root);
    p = { root, canvas, ctx: canvas.getContext("2d"), state, fps, latency, people, frame, message,
          poses: new Map(), latest: null, image: null, imageFrame: -1, imageSeq: 0, lag: null, queued: false,
          status: "running" };
    panels.set(stream, p);
    return p;
  }

  function schedule(p) {
    if (p.queued) return;
    p.queued = true;
    requestAnimationFrame(() => draw(p));
  }

  function ok(j) {
    return j && j[0] !== null && j[1] !== null && j[2] !== null && j[2] >= MIN_CONF;
  }

  function draw(p) {
    p.queued = false;
    const pose = (p.image && p.poses.get(p.imageFrame)) || p.latest;
    let w, h;
    if (p.image) {
      [w, h] = [p.image.width, p.image.height];
    } else {
      const size = pose ? pose.size : [16, 9];
      w = MAX_WIDTH;
      h = Math.max(1, Math.round(MAX_WIDTH * size[1] / size[0]));
    }
    const { canvas, ctx } = p;
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    if (p.image) ctx.drawImage(p.image, 0, 0);
    if (!pose || !skeletons) return;
    const js = skeletons.joint_sets[pose.joints];
    if (!js) return;
    const sx = w / pose.size[0];
    const sy = h / pose.size[1];
    const width = Math.max(2, Math.round(w / 160));
    const several = pose.people.length > 1;
    ctx.lineCap = "round";
    for (const person of pose.people) {
      const own = several ? skeletons.people_colors[person.id % skeletons.people_colors.length] : null;
      ctx.lineWidth = width;
      js.edges.forEach(([a, b], i) => {
        const pa = person.kp[a];
        const pb = person.kp[b];
        if (!ok(pa) || !ok(pb)) return;
        ctx.strokeStyle = own || js.edge_colors[i];
        ctx.beginPath();
        ctx.moveTo(pa[0] * sx, pa[1] * sy);
        ctx.lineTo(pb[0] * sx, pb[1] * sy);
        ctx.stroke();
      });
      person.kp.forEach((j, i) => {
        if (!ok(j)) return;
        ctx.fillStyle = own || js.joint_colors[i];
        ctx.beginPath();
        ctx.arc(j[0] * sx, j[1] * sy, width, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
  }

  function onPose(msg) {
    const p = panel(msg.stream);
    const lag = Date.now() / 1000 - msg.t_capture;
    p.lag = p.lag === null ? lag : 0.9 * p.lag + 0.1 * lag;
    p.latency.textContent = "latency " + Math.round(1000 * p.lag) + " ms";
    p.people.textContent = msg.people.length === 1 ? "1 person" : msg.people.length + " people";
    p.frame.textContent = "frame " + msg.frame;
    p.latest = msg;
    p.poses.set(msg.frame, msg);
    if (p.poses.size > KEEP) p.poses.delete(p.poses.keys().next().value);
    schedule(p);
  }

  function onStatus(msg) {
    const p = panel(msg.stream);
    if (msg.state === "running" && p.status !== "running") { // a new run: its frames count from 0 again
      p.poses.clear();
      p.latest = null;
      if (p.image) p.image.close();
      p.image = null;
      p.imageFrame = -1;
      schedule(p);
    }
    p.status = msg.state;
    setState(p.state, msg.state);
    if (typeof msg.fps === "number") { // the run's own figure, once a second
      p.fps.textContent = msg.fps.toFixed(1) + " fps";
      p.fps.dataset.updates = String(Number(p.fps.dataset.updates || 0) + 1);
    } else if (msg.state === "running") {
      p.fps.textContent = "– fps";
    }
    p.message.textContent = msg.message || "";
  }

  async function onPreview(buf) {
    const seq = ++received;
    const n = new DataView(buf).getUint32(0);
    const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    const bitmap = await createImageBitmap(new Blob([new Uint8Array(buf, 4 + n)], { type: "image/jpeg" }));
    const p = panel(head.stream);
    if (seq < p.imageSeq) { // a newer one was decoded first
      bitmap.close();
      return;
    }
    if (p.image) p.image.close();
    p.image = bitmap;
    p.imageFrame = head.frame;
    p.imageSeq = seq;
    schedule(p);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : ""));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => setState(connection, "connected");
    ws.onclose = () => {
      setState(connection, "disconnected");
      setTimeout(connect, 1000);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") {
        onPreview(ev.data).catch((e) => console.warn("preview", e));
        return;
      }
      const msg = JSON.parse(ev.data);
      if (msg.kind === "pose") onPose(msg);
      else if (msg.kind === "status") onStatus(msg);
    };
  }

  fetch("skeletons.json" + (token ? "?token=" + encodeURIComponent(token) : ""))
    .then((r) => r.json())
    .then((s) => {
      skeletons = s;
      panels.forEach(schedule);
    });
  connect();
})();
